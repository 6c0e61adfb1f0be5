"""A Dagster run over several partitions of a ``for_each`` connection (a backfill in runs of
``for_each.per_run`` mailboxes, the schedule's runs): the company side is read once per run,
each mailbox is synced as in a run of its own and its materializations carry its own counts;
a mailbox that fails fails alone (the others are materialized, the step names it), and two runs
that share a mailbox never sync it at once."""

import datetime as dt
import threading
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.instance_for_test import instance_for_test
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from test_for_each_shared_read import MAILBOXES, mailbox, people, project

from l2sync_dagster.contract import ProviderError
from l2sync_dagster.orchestration.definitions import build_definitions
from l2sync_dagster.state.store import StateStore, default_state_url
from l2sync_dagster.sync.runner import Sync

PARTITIONS = "company_for_each"
APPLY = dg.AssetKey(["company", "apply_right"])
EVERYONE = {str(i): f"person {i}" for i in range(6)}


def range_tags(first: str, last: str) -> dict[str, str]:
    return {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}


def run_range(defs: dg.Definitions, instance: dg.DagsterInstance, first: str, last: str
              ) -> dg.ExecuteInProcessResult:
    return dg.materialize(list(defs.assets or []), resources=defs.resources, instance=instance,
                          tags=range_tags(first, last), raise_on_error=False)


def latest(instance: dg.DagsterInstance, value: str) -> dict[str, object]:
    """The metadata of a partition's latest apply_right materialization."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=APPLY, asset_partitions=[value]), limit=1).records
    assert records, value
    event = records[0].asset_materialization
    assert event is not None and event.partition == value
    return {k: v.value for k, v in event.metadata.items()}


def test_a_run_over_several_mailboxes_reads_the_source_once(
        tmp_path: Path, source_reads: list[str]) -> None:
    folder = project(tmp_path)
    defs = build_definitions(folder)
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(PARTITIONS, MAILBOXES)
        result = run_range(defs, instance, MAILBOXES[0], MAILBOXES[2])
        assert result.success
        assert len(source_reads) == 1  # three mailboxes, one read of the company side
        assert instance.get_materialized_partitions(APPLY) == set(MAILBOXES[:3])
        for value in MAILBOXES[:3]:
            assert mailbox(tmp_path, value) == EVERYONE
        assert mailbox(tmp_path, MAILBOXES[3]) == {}
        (check,) = result.get_asset_check_evaluations()
        assert check.passed and check.metadata["mailboxes_checked"].value == 3
        tags = instance.get_run_by_id(result.run_id).tags  # type: ignore[union-attr]
        assert tags["l2sync/mailboxes"] == "3/3"
        assert tags["l2sync/right"].startswith("+18 ")

        # each partition's materialization has its own counts: one mailbox was edited
        people(tmp_path, "UPDATE people SET name = 'renamed' WHERE id = '1'")
        path = tmp_path / "out" / f"{MAILBOXES[1]}.csv"
        path.write_text(path.read_text().replace("person 2", "bob's edit"))
        source_reads.clear()
        assert run_range(defs, instance, MAILBOXES[0], MAILBOXES[1]).success
        assert len(source_reads) == 1
        assert mailbox(tmp_path, MAILBOXES[1]) == {**EVERYONE, "1": "renamed",
                                                   "2": "person 2"}
        first, second = latest(instance, MAILBOXES[0]), latest(instance, MAILBOXES[1])
        assert first["updated"] == 1 and second["updated"] == 2
        assert latest(instance, MAILBOXES[2])["inserted"] == 6  # not in this run

    store = StateStore(default_state_url(tmp_path))
    try:
        for value in MAILBOXES[:3]:
            assert store.archive_size(f"company[{value}]") == 6
        assert store.archive_size(f"company[{MAILBOXES[3]}]") == 0
        ran = [r["run_id"] for r in store.runs(f"company[{MAILBOXES[0]}]")]
        assert len(ran) == 2 and all(len(r) <= 64 and "/" in r for r in ran)
    finally:
        store.close()


def test_one_mailbox_failing_fails_alone(tmp_path: Path) -> None:
    folder = project(tmp_path)
    defs = build_definitions(folder, retry=dg.RetryPolicy(max_retries=0))
    broken = tmp_path / "out" / f"{MAILBOXES[1]}.csv"
    broken.unlink()
    broken.mkdir()  # the mailbox cannot be read
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(PARTITIONS, MAILBOXES)
        result = run_range(defs, instance, MAILBOXES[0], MAILBOXES[3])
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure)
        description = failure.step_failure_data.user_failure_data.description
        assert description.startswith(f"1 of 4 mailboxes failed: {MAILBOXES[1]}: ")
        assert instance.get_materialized_partitions(APPLY) == {
            MAILBOXES[0], MAILBOXES[2], MAILBOXES[3]}
        for value in (MAILBOXES[0], MAILBOXES[2], MAILBOXES[3]):
            assert mailbox(tmp_path, value) == EVERYONE
            assert latest(instance, value)["inserted"] == 6

        # repaired, the next run over all four syncs the one that failed; the others have
        # nothing to do
        broken.rmdir()
        broken.write_text("id,name\n")
        assert run_range(defs, instance, MAILBOXES[0], MAILBOXES[3]).success
        assert mailbox(tmp_path, MAILBOXES[1]) == EVERYONE
        assert latest(instance, MAILBOXES[1])["inserted"] == 6
        assert latest(instance, MAILBOXES[0])["inserted"] == 0
    store = StateStore(default_state_url(tmp_path))
    try:
        statuses = [r["status"] for r in store.runs(f"company[{MAILBOXES[1]}]")]
        assert statuses[-1] == "failed" and statuses[0] != "failed"
    finally:
        store.close()


def test_two_runs_sharing_a_mailbox_never_sync_it_at_once(tmp_path: Path) -> None:
    """A run over [alice, bob] holds alice; a run over [alice, carol] meanwhile fails on
    alice's lock and syncs carol."""
    folder = project(tmp_path)
    defs = build_definitions(folder, retry=dg.RetryPolicy(max_retries=0))
    inside, release = threading.Event(), threading.Event()
    original = Sync.prepare

    def slow_prepare(self: Sync, **kwargs: object):  # type: ignore[no-untyped-def]
        if self.spec.partition_value == MAILBOXES[0] and not inside.is_set():
            inside.set()
            release.wait(30)
        return original(self, **kwargs)  # type: ignore[arg-type]

    order = [MAILBOXES[0], MAILBOXES[1], MAILBOXES[0], MAILBOXES[2]]
    results: dict[str, dg.ExecuteInProcessResult] = {}
    with dg.DagsterInstance.ephemeral() as instance, pytest.MonkeyPatch.context() as mp:
        mp.setattr(Sync, "prepare", slow_prepare)
        # dynamic partitions are ordered as added: alice, bob, then carol, dan
        instance.add_dynamic_partitions(PARTITIONS, MAILBOXES)
        first = threading.Thread(target=lambda: results.__setitem__(
            "first", run_range(defs, instance, order[0], order[1])))
        first.start()
        assert inside.wait(30)
        second = run_range(defs, instance, MAILBOXES[0], MAILBOXES[2])
        release.set()
        first.join(60)
    assert results["first"].success
    assert not second.success
    failure = next(e for e in second.all_events if e.is_step_failure)
    description = failure.step_failure_data.user_failure_data.description
    assert description.startswith(f"1 of 3 mailboxes failed: {MAILBOXES[0]}: ")
    assert "locked" in description.lower() or "being synced" in description.lower()
    for value in MAILBOXES[:3]:
        assert mailbox(tmp_path, value) == EVERYONE


def test_backfills_and_the_schedule_run_per_run_mailboxes_at_a_time(tmp_path: Path) -> None:
    folder = project(tmp_path)
    path = folder / "company.yaml"
    path.write_text(path.read_text().replace(
        "for_each:\n", "schedule: \"0 * * * *\"\nfor_each:\n  per_run: 3\n  workers: 2\n"))
    defs = build_definitions(folder)
    (assets,) = [a for a in defs.assets or () if isinstance(a, dg.AssetsDefinition)]
    assert assets.backfill_policy == dg.BackfillPolicy.multi_run(max_partitions_per_run=3)
    schedule = defs.resolve_schedule_def("company_schedule")
    with instance_for_test() as instance:
        instance.add_dynamic_partitions(PARTITIONS, MAILBOXES)
        # the context's own instance (made from the ref) is disposed when it closes
        with dg.build_schedule_context(
                instance=instance, repository_def=defs.get_repository_def(),
                scheduled_execution_time=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)) as context:
            requests = schedule.evaluate_tick(context).run_requests or []
        assert [(r.tags.get(ASSET_PARTITION_RANGE_START_TAG),
                 r.tags.get(ASSET_PARTITION_RANGE_END_TAG), r.partition_key)
                for r in requests] == [(MAILBOXES[0], MAILBOXES[2], None),
                                       (None, None, MAILBOXES[3])]
        assert all(r.tags["l2sync/for_each"] == "company" for r in requests)
        job = defs.resolve_job_def("company_job")
        for request in requests:
            result = job.execute_in_process(
                instance=instance, tags=request.tags, partition_key=request.partition_key)
            assert result.success
    for value in MAILBOXES:
        assert mailbox(tmp_path, value) == EVERYONE


@pytest.mark.parametrize("transient", [True, False])
def test_a_run_is_retried_only_when_every_failure_was_transient(
        tmp_path: Path, transient: bool) -> None:
    """One mailbox's server is busy once (a transient error): the step is retried and every
    mailbox ends synced. A configuration error is not retried: it would fail again."""
    folder = project(tmp_path)
    defs = build_definitions(folder, retry=dg.RetryPolicy(max_retries=1, delay=0))
    original = Sync.prepare
    failures = []

    def flaky_prepare(self: Sync, **kwargs: object):  # type: ignore[no-untyped-def]
        if self.spec.partition_value == MAILBOXES[1] and not failures:
            failures.append(1)
            raise ProviderError("the server is busy", transient=transient)
        return original(self, **kwargs)  # type: ignore[arg-type]

    with dg.DagsterInstance.ephemeral() as instance, pytest.MonkeyPatch.context() as mp:
        mp.setattr(Sync, "prepare", flaky_prepare)
        instance.add_dynamic_partitions(PARTITIONS, MAILBOXES)
        result = run_range(defs, instance, MAILBOXES[0], MAILBOXES[3])
        restarted = any(e.event_type_value == "STEP_RESTARTED" for e in result.all_events)
        assert restarted == transient and result.success == transient
        synced = instance.get_materialized_partitions(APPLY)
    assert synced == (set(MAILBOXES) if transient else set(MAILBOXES) - {MAILBOXES[1]})
