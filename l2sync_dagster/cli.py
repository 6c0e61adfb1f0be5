"""The ``l2sync`` command line: verify, preview, plan, run, status, unlock, sandbox.

Exit codes: 0 success; 1 failure or abort (one short line per problem on stderr, naming the
connection file); 3 the run finished but some records were rejected or refused by a system
(listed in the output). Everything printed passes through ``mask_secrets``.
"""

# the command line starts fast: pandas, SQLAlchemy, pydantic and the providers are imported
# only by the commands that need them (annotations are not evaluated)
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from l2sync_dagster.report_tables import SIDES, counts_table, print_conflicts, print_rejections
from l2sync_dagster.sandbox import cli as sandbox_cli
from l2sync_dagster.spec.errors import MESSAGE_LIMIT, LocatedError, shorten
from l2sync_dagster.spec.masking import mask_secrets

if TYPE_CHECKING:
    from l2sync_dagster.engine.mapping import FieldMapping, Side
    from l2sync_dagster.providers.base import Provider
    from l2sync_dagster.spec.model import ConnectionSpec
    from l2sync_dagster.sync.runner import RunReport, Sync

#: problems of one connection file printed before "and N more"
SHOWN_PROBLEMS = 10


class _Masked:
    """A text stream that masks secrets in everything written to it (for rich consoles)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def _target(self) -> IO[str]:
        return self._stream() if callable(self._stream) else self._stream

    def write(self, text: str) -> int:
        return self._target().write(mask_secrets(text))

    def flush(self) -> None:
        self._target().flush()

    def isatty(self) -> bool:
        return bool(getattr(self._target(), "isatty", lambda: False)())

    def fileno(self) -> int:
        return self._target().fileno()

    @property
    def encoding(self) -> str:
        return getattr(self._target(), "encoding", "utf-8") or "utf-8"


# one-line errors stay one line; the stream is looked up on every write (tests redirect it)
err = Console(file=_Masked(lambda: sys.stderr), soft_wrap=True)  # type: ignore[arg-type]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="l2sync", description=__doc__.splitlines()[0])
    p.add_argument("--connections", default="connections",
                   help="folder of connection files (default: connections)")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("name", help="connection name or path to its YAML file")
        # also after the subcommand; SUPPRESS keeps the top-level value when not given here
        sp.add_argument("--connections", default=argparse.SUPPRESS,
                        help="folder of connection files (default: connections)")
        return sp

    add("verify", "check both sides are reachable and the mapping resolves")
    pv = add("preview", "show the first records of a side")
    pv.add_argument("--side", choices=SIDES, default="left")
    pv.add_argument("--limit", type=int, default=10)
    pl = add("plan", "dry run: print what a run would write, write nothing")
    pl.add_argument("--full", action="store_true", help="ignore cursors, read everything")
    rn = add("run", "sync now")
    rn.add_argument("--json", action="store_true", help="print one JSON object with the counts")
    rn.add_argument("--no-check", action="store_true",
                    help="skip the in_sync check (re-reading what was written)")
    rn.add_argument("--full", action="store_true", help="ignore cursors, read everything")
    rn.add_argument("--allow-mass-delete", action="store_true",
                    help="let this run exceed deletes.max_fraction")
    rn.add_argument("--each", action="append", metavar="VALUE",
                    help="a for_each connection: sync this value (a mailbox); repeatable")
    rn.add_argument("--all", action="store_true",
                    help="a for_each connection: sync every value (one failing never stops "
                         "the others)")
    rn.add_argument("--workers", type=int, default=None,
                    help="with --each/--all: values synced at once (default: the file's "
                         "for_each.workers, 4)")
    add("status", "last runs, recent conflicts, lock and archive size")
    add("unlock", "remove the lock left by a run whose process is gone")
    sandbox_cli.add_arguments(sub.add_parser(
        "sandbox", help="run the local EWS / Graph / Dataverse stand-ins in the foreground"))
    return p


class _Progress:
    """Rich progress bars for the stages of a run (quiet when not a terminal)."""

    def __init__(self, enabled: bool) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.completed}/{task.total}"),
                                 TimeElapsedColumn(), console=err, transient=True,
                                 disable=not enabled)
        self.tasks: dict[str, Any] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=max(total, 1))
        self.progress.update(self.tasks[stage], completed=done, total=max(total, 1))


def _cell(value: Any) -> str:
    """A value as a table cell: empty for every kind of null (rich renders text only)."""
    if value is None:
        return ""
    import pandas as pd

    try:
        if pd.isna(value):
            return ""
    except (TypeError, ValueError):  # lists, arrays: not a scalar null
        pass
    return str(value)


def _open(sync: Sync, side: Side) -> Provider:
    """The side's provider; an unknown provider or a bad connection string names its line."""
    return sync.provider(side)


def _mapping(sync: Sync) -> FieldMapping:
    """The mapping resolved with errors that name the file, line, side and field."""
    return sync.mapping()


def _print_notes(out: Console, mapping: FieldMapping) -> None:
    for note in mapping.notes:
        out.print(f"note: {note}", markup=False, highlight=False)


class _Refused(Exception):
    """A failure of a loaded connection, its message already naming the file."""


def _run(args: argparse.Namespace, out: Console) -> int:
    from l2sync_dagster.spec.loader import ConnectionFileError, find_connection

    spec = find_connection(args.name, args.connections)
    try:
        if args.command == "run" and (spec.for_each is not None or args.each or args.all):
            from l2sync_dagster.cli_for_each import run_each

            return run_each(spec, args, out, err, _run_with_retries)
        if spec.for_each is not None:
            raise ValueError(f"a for_each connection: {args.command} per mailbox is not "
                             "supported yet; `l2sync run NAME --each VALUE` syncs one")
        return _run_spec(spec, args, out)
    except ConnectionFileError:
        raise
    except Exception as exc:
        message = str(exc)
        if spec.display_path not in message:  # every refusal names its connection file
            message = f"{spec.display_path}: {message or type(exc).__name__}"
        raise _Refused(message) from None


def _run_spec(spec: ConnectionSpec, args: argparse.Namespace, out: Console) -> int:
    from l2sync_dagster.sync.runner import Sync

    interactive = sys.stderr.isatty() and not getattr(args, "json", False)
    sync = Sync(spec, progress=_Progress(interactive))
    try:
        if args.command == "verify":
            for side in SIDES:
                try:
                    what = _open(sync, side).verify(sync.query(side))
                except LocatedError:
                    raise
                except Exception as exc:  # sign-in, reachability, scope
                    raise LocatedError(spec, f"{side}.connection_string", str(exc),
                                       side=side) from None
                out.print(f"{side}: {what}", markup=False, highlight=False)
            mapping = _mapping(sync)
            sync.mapping()  # the runner's own checks (a read-only side that is written...)
            pairs = ", ".join(f"{p.left} <-> {p.right} ({p.type})" for p in mapping.pairs)
            out.print(f"mapping: {pairs}", markup=False, highlight=False)
            _print_notes(out, mapping)
            return 0
        if args.command == "preview":
            frame = _open(sync, args.side).read(sync.query(args.side)).frame
            table = Table(title=f"{spec.name} {args.side}: {len(frame)} records")
            shown = frame.head(args.limit).reset_index()
            for col in shown.columns:
                table.add_column(str(col))
            for row in shown.itertuples(index=False):
                table.add_row(*(_cell(v) for v in row))
            out.print(table)
            return 0
        if args.command == "plan":
            mapping = _mapping(sync)
            prep = sync.prepare(full=args.full)
            _print_notes(out, mapping)
            out.print(prep.plan.render(limit=200), markup=False, highlight=False)
            return 0
        if args.command == "status":
            return _status(sync, out)
        if args.command == "unlock":
            removed = sync.store.force_unlock(spec.name)
            out.print("lock removed" if removed else "no lock was held")
            return 0
        if args.command == "run":
            _mapping(sync)
            report = _run_with_retries(sync, args, err)
            counts = report.details()
            if args.json:
                print(mask_secrets(json.dumps(counts, default=str)))
            else:
                out.print(counts_table(counts))
                if report.prepared:
                    print_conflicts(out, report.prepared.plan)
                    print_rejections(out, report.prepared.plan,
                                      report.applied.errors if report.applied else [])
            if report.check is not None and not report.check.passed:
                first = report.check.mismatches[0]
                err.print(f"{spec.name}: in_sync check: {len(report.check.mismatches)} of "
                          f"{report.check.checked} written records differ from the plan "
                          f"({first['side']} {first['key']}: {first['problem']})",
                          markup=False)
                return 3
            if report.applied and (report.applied.failed or report.prepared.plan.rejections):
                err.print(f"{spec.name}: finished with {counts['failed']} failed writes and "
                          f"{counts['rejected']} rejected records", markup=False)
                return 3
            return 0
    finally:
        sync.close()
    return 1


def _run_with_retries(sync: Sync, args: argparse.Namespace, err: Console) -> RunReport:
    """``sync.run`` with the retry policy of the Dagster assets: transient errors (a server
    down, throttling that outlasted the provider's waits, a dropped connection) are retried
    with exponential back-off; a retried run resumes from the journal without duplicates."""
    from l2sync_dagster.sync.retry import MAX_RETRIES, RETRY_DELAY_S, is_transient, retry_delay

    for attempt in range(1, MAX_RETRIES + 2):
        try:
            return sync.run(full=args.full, allow_mass_delete=args.allow_mass_delete,
                            check=not args.no_check)
        except Exception as exc:
            if attempt > MAX_RETRIES or not is_transient(exc):
                raise
            wait = retry_delay(attempt, RETRY_DELAY_S if _RETRY_DELAY is None else _RETRY_DELAY)
            err.print(mask_secrets(f"{sync.spec.name}: transient error ({shorten(str(exc))}); "
                                   f"retry {attempt} of {MAX_RETRIES} in {wait:.0f} s"),
                      markup=False, highlight=False)
            sync.close()
            time.sleep(wait)
    raise AssertionError("unreachable")


#: tests shorten the back-off (seconds per step); None: the policy's own
_RETRY_DELAY: float | None = None


def _status(sync: Sync, out: Console) -> int:
    name = sync.spec.name
    out.print(f"connection {name} ({sync.spec.display_path})")
    out.print(f"pairs in the archive: {sync.store.archive_size(name)}")
    holder = sync.store.lock_holder(name)
    out.print(f"locked by run {holder['run_id']} (pid {holder['pid']} on {holder['host']})"
              if holder else "not running")
    table = Table(title="last runs")
    for col in ("started", "status", "left", "right", "conflicts", "message"):
        table.add_column(col)
    for r in sync.store.runs(name):
        c = r["counts"]
        table.add_row(str(r["started_at"])[:19], r["status"], _written(c, "left"),
                      _written(c, "right"), str(c.get("conflicts", "")),
                      mask_secrets(r["message"] or "")[:60])
    out.print(table)
    conflicts = sync.store.conflicts(name, limit=10)
    if conflicts:
        t = Table(title="recent conflicts")
        for col in ("when", "kind", "left key", "right key", "fields", "resolution"):
            t.add_column(col)
        for c in conflicts:
            t.add_row(str(c["recorded_at"])[:19], c["kind"], str(c["left_key"]),
                      str(c["right_key"]), ", ".join(json.loads(c["fields_json"] or "[]")),
                      c["resolution"])
        out.print(t)
    return 0


def _written(counts: dict[str, Any], side: str) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.get(side, {}).items()
                     if k in ("inserted", "updated", "deleted", "failed") and v)


def _error_lines(command: str, exc: BaseException) -> list[str]:
    """What to print for a failure: one short line per problem of a connection file, else one
    line; secrets masked, long text cut."""
    from l2sync_dagster.spec.loader import ConnectionFileError

    if isinstance(exc, ConnectionFileError):
        lines = str(exc).splitlines()
    else:
        lines = [str(exc) or type(exc).__name__]
    shown = [shorten(f"l2sync {command}: {line}", MESSAGE_LIMIT) for line in lines[:SHOWN_PROBLEMS]]
    if len(lines) > SHOWN_PROBLEMS:
        shown.append(f"l2sync {command}: and {len(lines) - SHOWN_PROBLEMS:,} more problems")
    return shown


class _BackOffAsProgress(logging.Filter):
    """exchangelib warns on every server back-off; the CLI shows them as one progress line
    each on stderr (and the run's totals say how long it waited) instead of log records."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "back off" in record.getMessage():
            secs = record.args[1] if isinstance(record.args, tuple) and len(record.args) > 1 \
                else "?"
            err.print(f"throttled by the server: waiting {secs} s", markup=False,
                      highlight=False)
            return False
        return True


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``l2sync`` script."""
    args = _parser().parse_args(argv)
    ews_log = logging.getLogger("exchangelib.util")
    if not any(isinstance(f, _BackOffAsProgress) for f in ews_log.filters):
        ews_log.addFilter(_BackOffAsProgress())
    # rich falls back to 80 columns when stdout is not a terminal; tables need more
    out = Console(file=_Masked(lambda: sys.stdout), highlight=False,  # type: ignore[arg-type]
                  width=None if sys.stdout.isatty() else 120)
    try:
        if args.command == "sandbox":
            return sandbox_cli.run(args)
        return _run(args, out)
    except KeyboardInterrupt:
        err.print("l2sync: interrupted")
        return 130
    except Exception as exc:  # every failure ends as short lines naming what to fix
        for line in _error_lines(args.command, exc):
            err.print(line, markup=False, highlight=False)
        return 1


if __name__ == "__main__":
    sys.exit(main())
