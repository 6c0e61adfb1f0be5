"""``l2sync run NAME --each VALUE`` and ``--all --workers N``: a ``for_each`` connection run
value by value (each its own partition: archive, cursors, lock, run record), several at once,
with a progress bar over the values and a table of the ones that failed and why. One value
failing never stops the others."""

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from l2sync_dagster.spec.errors import shorten
from l2sync_dagster.spec.masking import mask_secrets
from l2sync_dagster.spec.model import ConnectionSpec, check_for_each_value
from l2sync_dagster.state.store import StateStore, default_state_url
from l2sync_dagster.sync.each_value import ValueRun, run_each_value
from l2sync_dagster.sync.for_each import for_each_values
from l2sync_dagster.sync.runner import RunReport, Sync

RunWithRetries = Callable[[Sync, argparse.Namespace, Console], RunReport]


@dataclass
class Outcome:
    """How one value's run ended: its counts, or the error that stopped it."""

    value: str
    counts: dict[str, Any] | None = None
    error: str | None = None

    @property
    def incomplete(self) -> bool:
        """True when the run finished with failed writes or rejected records."""
        c = self.counts or {}
        return bool(c.get("failed") or c.get("rejected"))


def chosen_values(spec: ConnectionSpec, args: argparse.Namespace,
                  err: Console | None = None) -> list[str]:
    """The values ``--each`` names (each one of the connection's) or, with ``--all``, all.
    Rows of the source that are no mailbox (and group members without a mail address) are
    printed to ``err`` as warnings, so a user sees why a mailbox is not synced."""
    if spec.for_each is None:
        raise ValueError("--each and --all apply to connections with for_each: only")
    if bool(args.each) == bool(args.all):
        raise ValueError("a for_each connection runs per value: give --each VALUE (repeatable) "
                         "or --all")
    if args.workers is not None and args.workers < 1:
        raise ValueError("--workers must be at least 1")
    found = for_each_values(spec)
    if err is not None:
        for why in found.refused:
            err.print(f"warning: {why}", markup=False, highlight=False)
    if args.all:
        return found.values
    known = set(found.values)
    out = []
    for value in args.each:
        v = check_for_each_value(value)
        if v not in known:
            raise ValueError(f"--each {shorten(value, 80)!r} is not one of the connection's "
                             f"{len(known):,} for_each values")
        out.append(v)
    return list(dict.fromkeys(out))


def run_each(spec: ConnectionSpec, args: argparse.Namespace, out: Console, err: Console,
             run_with_retries: RunWithRetries) -> int:
    """Run the chosen values, ``args.workers`` (else the file's ``for_each.workers``) at
    once; 0 when all synced, 3 when some had failed writes or rejected records, 1 when some
    failed."""
    values = chosen_values(spec, args, err)
    assert spec.for_each is not None  # chosen_values refuses a connection without
    store = StateStore(default_state_url(Path(spec.project_dir)))
    interactive = err.is_terminal and not args.json
    bar = Progress(TextColumn("{task.description}"), BarColumn(),
                   TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                   console=err, transient=True, disable=not interactive)
    task = bar.add_task(f"{spec.name}: mailboxes", total=max(len(values), 1))
    failed = 0

    def one(sync: Sync) -> dict[str, Any]:
        return run_with_retries(sync, args, err).details()

    def done(run: ValueRun[dict[str, Any]]) -> None:
        nonlocal failed
        failed += run.error is not None
        bar.update(task, advance=1, description=f"{spec.name}: mailboxes"
                   + (f" ({failed} failed)" if failed else ""))

    try:
        with bar:
            runs = run_each_value(spec, values, store, one, done=done,
                                  workers=args.workers or spec.for_each.workers)
    finally:
        store.close()
    outcomes = [Outcome(r.value, counts=r.result) if r.error is None else
                Outcome(r.value, error=mask_secrets(shorten(str(r.error)
                                                            or type(r.error).__name__)))
                for r in runs]
    _print(spec, outcomes, args, out, err)
    if any(o.error for o in outcomes):
        return 1
    return 3 if any(o.incomplete for o in outcomes) else 0


def _print(spec: ConnectionSpec, outcomes: list[Outcome], args: argparse.Namespace,
           out: Console, err: Console) -> None:
    failed = [o for o in outcomes if o.error]
    if args.json:
        print(mask_secrets(json.dumps(
            {o.value: o.counts if o.counts is not None else {"error": o.error}
             for o in outcomes}, default=str)))
    else:
        table = Table(title=f"{spec.name}: {len(outcomes) - len(failed)} of {len(outcomes)} "
                            "mailboxes synced")
        for col in ("mailbox", "status", "inserted", "updated", "deleted", "failed",
                    "rejected"):
            table.add_column(col)
        for o in outcomes:
            if o.counts is None:
                continue
            c = o.counts
            table.add_row(o.value, str(c.get("status", "")),
                          *(str(_total(c, k)) for k in ("inserted", "updated", "deleted")),
                          str(c.get("failed", 0)), str(c.get("rejected", 0)))
        out.print(table)
    if failed:
        table = Table(title=f"{len(failed)} mailboxes failed")
        table.add_column("mailbox")
        table.add_column("why")
        for o in failed:
            table.add_row(o.value, o.error or "")
        err.print(table)


def _total(counts: dict[str, Any], what: str) -> int:
    """``what`` summed over both sides of a run's counts."""
    return sum(int(counts.get(side, {}).get(what, 0) or 0) for side in ("left", "right"))
