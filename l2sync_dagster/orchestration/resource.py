"""The Dagster resource that runs connections: it turns the steps of a run (``sync.steps``,
the same sequence the command line uses) into ``MaterializeResult`` and ``AssetCheckResult``
events, with run config for ``full`` and ``allow_mass_delete``.
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from l2sync_dagster.orchestration.metadata import (
    apply_metadata,
    check_metadata,
    plan_metadata,
    read_metadata,
    run_tags,
    sync_metadata,
)
from l2sync_dagster.orchestration.operations import as_step_error
from l2sync_dagster.orchestration.partitions import run_windows
from l2sync_dagster.spec.masking import mask_secrets
from l2sync_dagster.spec.model import ConnectionSpec
from l2sync_dagster.state.store import StateStore
from l2sync_dagster.sync.runner import SIDES, Sync, SyncAborted
from l2sync_dagster.sync.steps import (
    ApplyStep,
    CheckStep,
    PlanStep,
    ReadStep,
    RunOptions,
    run_steps,
)


def for_each_spec(context: dg.AssetExecutionContext, spec: ConnectionSpec) -> ConnectionSpec:
    """The connection of the partition (one for_each value) a run syncs."""
    if not context.has_partition_key:
        raise dg.Failure(
            description=f"{spec.display_path}: a for_each connection syncs one partition (one "
            "mailbox) per run; choose a partition, or backfill the ones to sync",
            allow_retries=False)
    return spec.for_value(context.partition_key)


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
        """Sync ``spec`` for the selected assets, yielding their events."""
        config = config or SyncConfig()
        selected = context.selected_asset_keys
        applies = [s for s in ("right", "left") if keys.get(f"apply_{s}") in selected]
        options = RunOptions(
            full=config.full, allow_mass_delete=config.allow_mass_delete,
            read=tuple(s for s in SIDES if keys[s] in selected),
            plan=keys["plan"] in selected or bool(applies), apply=bool(applies),
            check=bool(applies) and check_key in context.selected_asset_check_keys)
        log = context.log

        def progress(stage: str, done: int, total: int) -> None:
            if total and (done == total or done % 10000 == 0):
                log.info(f"{stage}: {done}/{total}")

        sync: Sync | None = None
        try:
            store = StateStore(self.state_url) if self.state_url else None
            kwargs: dict[str, Any] = {}
            if spec.for_each is not None:
                spec = for_each_spec(context, spec)
            if spec.partitions is not None:
                windows = run_windows(context)
                if windows is not None:
                    window, parts = windows
                    log.info(f"syncing the window [{window[0].isoformat()}, "
                             f"{window[1].isoformat()}) ({len(parts)} partitions)")
                    kwargs = {"window": window, "windows": parts}
            sync = Sync(spec, store, progress=progress, **kwargs)
            yield from self._events(context, sync, options, keys, applies, check_key)
        except SyncAborted as exc:
            raise dg.Failure(description=mask_secrets(str(exc)), allow_retries=False) from None
        except dg.Failure:
            raise
        except Exception as exc:
            err = as_step_error(exc)
            if err is exc:
                log.warning("transient error, the step will be retried: "
                            + mask_secrets(str(exc)))
                raise
            raise err from None
        finally:
            if sync is not None:
                sync.close()

    @staticmethod
    def _events(context: dg.AssetExecutionContext, sync: Sync, options: RunOptions,
                keys: dict[str, dg.AssetKey], applies: list[str],
                check_key: dg.AssetCheckKey) -> Iterator[Any]:
        prep = None
        for step in run_steps(sync, options, run_id=context.run.run_id):
            if isinstance(step, ReadStep):
                yield dg.MaterializeResult(asset_key=keys[step.side],
                                           metadata=read_metadata(step.read))
            elif isinstance(step, PlanStep):
                prep = step.prepared
                if keys["plan"] in context.selected_asset_keys:
                    yield dg.MaterializeResult(
                        asset_key=keys["plan"],
                        metadata={**plan_metadata(prep.plan, links=sync.web_links()),
                                  **sync_metadata(sync, prep)})
            elif isinstance(step, ApplyStep):
                assert prep is not None and step.report.applied is not None
                extra = sync_metadata(sync, prep)
                for side in applies:
                    yield dg.MaterializeResult(
                        asset_key=keys[f"apply_{side}"],
                        metadata={**apply_metadata(side, prep.plan, step.report.applied,
                                                   links=sync.web_links()), **extra})
                context.instance.add_run_tags(context.run.run_id, run_tags(step.report))
            elif isinstance(step, CheckStep):
                yield dg.AssetCheckResult(
                    asset_key=check_key.asset_key, check_name=check_key.name,
                    passed=step.result.passed, metadata=check_metadata(step.result),
                    severity=dg.AssetCheckSeverity.ERROR)
