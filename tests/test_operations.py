"""Operations: retries of transient errors, the run queue of the shipped dagster.yaml, metadata
a data engineer can act on, and failed syncs recorded on their assets."""

import shutil

import dagster as dg
import pytest
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.remote_origin import (
    InProcessCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.run_coordinator import SubmitRunContext
from dagster._core.run_coordinator.queued_run_coordinator import QueuedRunCoordinator
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
    QueuedRunCoordinatorDaemon,
)
from project_helpers import REPO, demo_project

from l2sync_dagster.orchestration.definitions import build_definitions
from l2sync_dagster.orchestration.operations import FAILURE_SENSOR, is_transient, retry_policy
from l2sync_dagster.providers.base import ProviderError
from l2sync_dagster.providers.file import FileProvider
from l2sync_dagster.providers.sql import SqlProvider

JOB = "customers_demo_job"
APPLY_RIGHT = dg.AssetKey(["customers_demo", "apply_right"])


def _run_job(defs: dg.Definitions, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def(JOB).execute_in_process(instance=instance, raise_on_error=False)


def _failing_reads(monkeypatch: pytest.MonkeyPatch, errors: list[Exception]) -> list[int]:
    """FileProvider.read raises ``errors`` one per call, then reads; returns the call counter."""
    calls = [0]
    real = FileProvider.read

    def read(self, query, cursor=None, window=None):
        calls[0] += 1
        if errors:
            raise errors.pop(0)
        return real(self, query, cursor, window)

    monkeypatch.setattr(FileProvider, "read", read)
    return calls


def test_transient_errors_are_retried_with_exponential_back_off(tmp_path, monkeypatch) -> None:
    defs = build_definitions(demo_project(tmp_path), retry=retry_policy(delay=0.05))
    calls = _failing_reads(monkeypatch, [
        ProviderError("server busy (429)", transient=True),
        ProviderError("connection reset", transient=True)])
    result = _run_job(defs, dg.DagsterInstance.ephemeral())
    assert result.success
    retries = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    waits = [e.event_specific_data.seconds_to_wait for e in retries]
    assert waits == pytest.approx([0.05, 0.15])  # (2**n - 1) * delay
    assert calls[0] == 4  # two failed attempts; the third reads, and the in_sync check re-reads


def test_configuration_errors_fail_without_retry(tmp_path, monkeypatch) -> None:
    defs = build_definitions(demo_project(tmp_path), retry=retry_policy(delay=0.05))
    calls = _failing_reads(monkeypatch, [
        ProviderError("`key: customer_no`: customers.csv has no column 'customer_no'")])
    result = _run_job(defs, dg.DagsterInstance.ephemeral())
    assert not result.success
    assert not [e for e in result.all_events
                if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    assert calls[0] == 1
    failure = result.failure_data_for_node("customers_demo_sync")
    assert "has no column 'customer_no'" in failure.user_failure_data.description


def test_what_counts_as_transient() -> None:
    assert is_transient(ProviderError("down", transient=True))
    assert is_transient(ConnectionResetError()) and is_transient(TimeoutError())
    assert not is_transient(ProviderError("bad key"))
    assert not is_transient(ValueError("mapping"))


def test_default_policy_is_three_exponential_retries(tmp_path) -> None:
    (assets,) = build_definitions(demo_project(tmp_path)).assets  # type: ignore[misc]
    policy = assets.op.retry_policy
    assert (policy.max_retries, policy.backoff) == (3, dg.Backoff.EXPONENTIAL)


def _sense_failure(defs: dg.Definitions, instance: dg.DagsterInstance, run_id: str) -> None:
    """Evaluate the failure sensor on a failed run, as the daemon does."""
    run = instance.get_run_by_id(run_id)
    (record,) = instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_FAILURE).records
    context = dg.build_run_status_sensor_context(
        sensor_name=FAILURE_SENSOR, dagster_event=record.event_log_entry.dagster_event,
        dagster_instance=instance, dagster_run=run).for_run_failure()
    defs.resolve_sensor_def(FAILURE_SENSOR)(context)


def test_failed_sync_is_recorded_on_the_asset(tmp_path, monkeypatch) -> None:
    defs = build_definitions(demo_project(tmp_path), retry=retry_policy(delay=0.05))
    _failing_reads(monkeypatch, [ProviderError("cannot parse customers.csv as csv: bad quote")])
    instance = dg.DagsterInstance.ephemeral()
    result = _run_job(defs, instance)
    assert not result.success
    _sense_failure(defs, instance, result.run_id)
    (obs,) = instance.fetch_observations(APPLY_RIGHT, limit=5).records
    meta = {k: v.value for k, v in obs.asset_observation.metadata.items()}
    assert meta["sync_status"] == "failed"
    assert "bad quote" in meta["failure_reason"] and "ProviderError" in meta["failure_reason"]
    assert meta["failed_run"] == result.run_id
    left = instance.fetch_observations(dg.AssetKey(["customers_demo", "apply_left"]), limit=5)
    assert len(left.records) == 1


def test_metadata_counts_links_requests_and_throttling(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(SqlProvider, "web_link",
                        lambda self, key: f"http://127.0.0.1:8080/crm/customers/{key}",
                        raising=False)
    monkeypatch.setattr(SqlProvider, "stats",
                        lambda self: {"requests": 7, "throttle_wait_s": 1.25}, raising=False)
    monkeypatch.setattr(SqlProvider, "capabilities",
                        SqlProvider.capabilities | {"web_link", "stats"})
    instance = dg.DagsterInstance.ephemeral()
    result = _run_job(build_definitions(demo_project(tmp_path)), instance)
    assert result.success
    (mat,) = [m for m in result.asset_materializations_for_node("customers_demo_sync")
              if m.asset_key == APPLY_RIGHT]
    meta = {k: v.value for k, v in mat.metadata.items()}
    assert meta["inserted"] == 3 and meta["conflicts"] == 1
    assert meta["right_requests"] == 7 and meta["right_throttle_wait_s"] == 1.25
    assert "left_requests" not in meta  # the file provider does not count requests
    # Grace's conflict: the CRM key links to the record, the CSV key has no link
    assert "](http://127.0.0.1:8080/crm/customers/" in meta["conflicts_table"]
    assert "| C-1002 |" in meta["conflicts_table"]
    tags = instance.get_run_by_id(result.run_id).tags
    assert tags["l2sync/right"] == "+3 ~0 -0 !0" and tags["l2sync/conflicts"] == "1"


def test_rejected_records_are_listed_with_reasons(tmp_path) -> None:
    conns = demo_project(tmp_path)
    csv_path = tmp_path / "data" / "demo" / "customers.csv"
    csv_path.write_text(csv_path.read_text() + "C-2000,Bad Date,bd@example.com,,X,not-a-date\n")
    result = _run_job(build_definitions(conns), dg.DagsterInstance.ephemeral())
    (mat,) = [m for m in result.asset_materializations_for_node("customers_demo_sync")
              if m.asset_key == dg.AssetKey(["customers_demo", "plan"])]
    meta = {k: v.value for k, v in mat.metadata.items()}
    assert meta["rejected"] == 1
    assert "C-2000" in meta["rejections_table"] and "since" in meta["rejections_table"]


def _mark(instance: dg.DagsterInstance, run: dg.DagsterRun, *types: DagsterEventType) -> None:
    for t in types:
        instance.report_dagster_event(DagsterEvent(event_type_value=t.value,
                                                   job_name=run.job_name), run_id=run.run_id)


def test_shipped_dagster_yaml_queues_a_second_run_of_the_same_connection(tmp_path) -> None:
    conns = demo_project(tmp_path)
    shutil.copy(conns / "customers_demo.yaml", conns / "other.yaml")
    defs = build_definitions(conns)
    defs_file = tmp_path / "definitions.py"
    defs_file.write_text("from l2sync_dagster.orchestration.definitions import build_definitions"
                         f"\ndefs = build_definitions({str(conns)!r})\n")
    location = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(python_file=str(defs_file), attribute="defs"),
        location_name="l2sync")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        runs = {}
        for name, job in (("first", JOB), ("second", JOB), ("other", "other_job")):
            job_def = defs.resolve_job_def(job)
            origin = RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"), job)
            run = instance.create_run_for_job(job_def, tags=dict(job_def.tags),
                                              remote_job_origin=origin)
            runs[name] = instance.run_coordinator.submit_run(SubmitRunContext(run, None))
            assert runs[name].status == dg.DagsterRunStatus.QUEUED
        assert runs["second"].tags["l2sync/connection"] == "customers_demo"

        daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)
        config = instance.get_concurrency_config()

        def dequeued() -> list[str]:
            ids = {r.run_id for r in daemon._get_runs_to_dequeue(instance, config, None)}
            return sorted(n for n, r in runs.items() if r.run_id in ids)

        assert dequeued() == ["first", "other"]  # one run per connection at a time
        # the daemon launches them: both in progress now
        _mark(instance, runs["first"], DagsterEventType.PIPELINE_STARTING,
              DagsterEventType.PIPELINE_START)
        _mark(instance, runs["other"], DagsterEventType.PIPELINE_STARTING)
        assert dequeued() == []  # the second run of customers_demo waits in the queue
        assert instance.get_run_by_id(runs["second"].run_id).status == \
            dg.DagsterRunStatus.QUEUED
        _mark(instance, runs["first"], DagsterEventType.PIPELINE_SUCCESS)
        assert dequeued() == ["second"]


def test_a_failed_untagged_materialization_is_recorded_too(tmp_path, monkeypatch) -> None:
    defs = build_definitions(demo_project(tmp_path), retry=retry_policy(delay=0.05))
    _failing_reads(monkeypatch, [ValueError("unexpected")])
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(list(defs.assets or []), resources=defs.resources,
                            instance=instance, raise_on_error=False)
    assert not result.success and "l2sync/connection" not in \
        instance.get_run_by_id(result.run_id).tags
    _sense_failure(defs, instance, result.run_id)
    (obs,) = instance.fetch_observations(APPLY_RIGHT, limit=5).records
    assert "ValueError: unexpected" in obs.asset_observation.metadata["failure_reason"].value
