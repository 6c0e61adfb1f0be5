"""Operations: retries on transient provider errors, and recording failed syncs on assets.

- Retries: every connection's step carries ``RetryPolicy(max_retries=3, delay,
  backoff=EXPONENTIAL)``. Only transient errors reach it (``ProviderError(transient=True)``:
  a server that is down, throttling that outlasted the provider's own waits, a locked SQLite
  file; and Python's ``ConnectionError``/``TimeoutError``). Everything else (bad connection
  string, unknown field, a plan the mass-delete brake stopped) is turned into
  ``dg.Failure(allow_retries=False)``: retrying a configuration error only delays the message.
- Failure recording: a run failure sensor (running by default) writes an ``AssetObservation``
  with the reason on the apply assets of the connection whose run failed, so the asset's page
  shows the last failed sync and why, next to its materializations.
"""

from collections.abc import Sequence

import dagster as dg

from l2sync_dagster.spec.masking import mask_secrets
from l2sync_dagster.spec.model import ConnectionSpec
from l2sync_dagster.sync.retry import MAX_RETRIES, RETRY_DELAY_S, is_transient

FAILURE_SENSOR = "l2sync_failed_syncs"
REASON_CHARS = 2000


def retry_policy(delay: float = RETRY_DELAY_S, max_retries: int = MAX_RETRIES
                 ) -> dg.RetryPolicy:
    """Exponential back-off: Dagster waits ``delay``, ``3*delay``, ``7*delay`` before the
    1st, 2nd and 3rd retry ((2**n - 1) * delay)."""
    return dg.RetryPolicy(max_retries=max_retries, delay=delay, backoff=dg.Backoff.EXPONENTIAL)


def as_step_error(exc: Exception) -> Exception:
    """What the step raises: the transient error itself (the retry policy retries it) or a
    Failure that forbids retries, carrying the error's message."""
    if is_transient(exc):
        return exc
    kind = type(exc).__name__
    return dg.Failure(description=mask_secrets(f"{kind}: {exc}")[:REASON_CHARS],
                      allow_retries=False,
                      metadata={"error": dg.MetadataValue.text(kind),
                                "transient": dg.MetadataValue.bool(False)})


def failure_reason(context: dg.RunFailureSensorContext) -> str:
    """The first failed step's message (the Failure description or the error), else the run's."""
    for event in context.get_step_failure_events():
        data = event.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            return data.user_failure_data.description[:REASON_CHARS]
        if data.error is not None:
            err = data.error
            while err.cause is not None and err.cls_name in ("DagsterExecutionStepExecutionError",
                                                             "DagsterUserCodeExecutionError"):
                err = err.cause
            return f"{err.cls_name}: {err.message.strip()}"[:REASON_CHARS]
    return (context.failure_event.message or "the run failed")[:REASON_CHARS]


def build_failure_sensor(specs: Sequence[ConnectionSpec]) -> dg.SensorDefinition:
    """The run failure sensor recording failed syncs on their connections' assets."""
    from l2sync_dagster.orchestration.assets import CONNECTION_TAG, asset_keys

    by_tag = {s.dagster_name: s for s in specs}

    @dg.run_failure_sensor(
        name=FAILURE_SENSOR, default_status=dg.DefaultSensorStatus.RUNNING,
        description="records every failed sync, with its reason, on the connection's assets",
    )
    def _record(context: dg.RunFailureSensorContext):
        run = context.dagster_run
        spec = by_tag.get(run.tags.get(CONNECTION_TAG, ""))
        if spec is None:
            # backfills and ad-hoc materializations carry no job tags: use the failed steps
            # (one op per connection, named <name>_sync) or the selected asset keys
            steps = {e.step_key for e in context.get_step_failure_events() if e.step_key}
            groups = {k.path[0] for k in run.asset_selection or ()}
            spec = next((s for s in specs if f"{s.dagster_name}_sync" in steps
                         or s.dagster_name in groups), None)
        if spec is None:
            return dg.SkipReason(f"run {run.run_id} is not an l2sync sync")
        reason = failure_reason(context)
        partition = run.tags.get("dagster/partition")
        keys = asset_keys(spec)
        for key in [k for name, k in keys.items() if name.startswith("apply_")]:
            context.instance.report_runless_asset_event(dg.AssetObservation(
                asset_key=key, partition=partition,
                metadata={"sync_status": dg.MetadataValue.text("failed"),
                          "failure_reason": dg.MetadataValue.text(reason),
                          "failed_run": dg.MetadataValue.dagster_run(run.run_id)},
            ))
        return None

    return _record
