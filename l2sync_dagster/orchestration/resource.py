"""The Dagster resource that runs connections: it turns the steps of a run (``sync.steps``,
the same sequence the command line uses) into ``MaterializeResult`` and ``AssetCheckResult``
events, with run config for ``full`` and ``allow_mass_delete``.
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from l2sync_dagster.orchestration.for_each_runs import run_partitions
from l2sync_dagster.orchestration.metadata import run_tags
from l2sync_dagster.orchestration.partitions import run_windows
from l2sync_dagster.orchestration.step_events import StepEvents, log_progress, step_error
from l2sync_dagster.spec.model import ConnectionSpec
from l2sync_dagster.state.store import StateStore
from l2sync_dagster.sync.runner import SIDES, Sync
from l2sync_dagster.sync.steps import ApplyStep, RunOptions, run_steps


class SyncConfig(dg.Config):
    """Run config of a connection's sync step (the Launchpad's ``ops: {<name>_sync: {config:
    ...}}``), the same switches as ``l2sync run``."""

    full: bool = False
    """Read both sides in full instead of from the change feeds' cursors."""
    allow_mass_delete: bool = False
    """Let this run delete more than ``deletes.max_fraction`` of the pairs."""


class L2SyncResource(dg.ConfigurableResource):
    """Runs l2sync connections inside Dagster assets.

    ``state_url``: the state store (archive, cursors, journal, runs); default: the SQLite file
    next to the connection's ``connections/`` folder. For several machines use one PostgreSQL
    database (``postgresql://...``).
    """

    state_url: str | None = None

    def run(self, context: dg.AssetExecutionContext, spec: ConnectionSpec,
            keys: dict[str, dg.AssetKey], check_key: dg.AssetCheckKey,
            config: SyncConfig | None = None) -> Iterator[Any]:
        """Sync ``spec`` for the selected assets, yielding their events. A ``for_each``
        connection syncs the partitions (mailboxes) of the run (see ``for_each_runs``)."""
        config = config or SyncConfig()
        selected = context.selected_asset_keys
        applies = [s for s in ("right", "left") if keys.get(f"apply_{s}") in selected]
        options = RunOptions(
            full=config.full, allow_mass_delete=config.allow_mass_delete,
            read=tuple(s for s in SIDES if keys[s] in selected),
            plan=keys["plan"] in selected or bool(applies), apply=bool(applies),
            check=bool(applies) and check_key in context.selected_asset_check_keys)
        events = StepEvents(keys, selected, applies, check_key)
        if spec.for_each is not None:
            yield from run_partitions(context, spec, self.state_url, options, events)
            return
        log = context.log
        sync: Sync | None = None
        try:
            store = StateStore(self.state_url) if self.state_url else None
            kwargs: dict[str, Any] = {}
            if spec.partitions is not None:
                windows = run_windows(context)
                if windows is not None:
                    window, parts = windows
                    log.info(f"syncing the window [{window[0].isoformat()}, "
                             f"{window[1].isoformat()}) ({len(parts)} partitions)")
                    kwargs = {"window": window, "windows": parts}
            sync = Sync(spec, store, progress=log_progress(log), **kwargs)
            run_id = context.run.run_id
            for step in run_steps(sync, options, run_id=run_id):
                if isinstance(step, ApplyStep):
                    context.instance.add_run_tags(run_id, run_tags(step.report))
                yield from events.of(sync, step)
        except Exception as exc:
            raise step_error(exc, log) from None
        finally:
            if sync is not None:
                sync.close()
