"""The tables a person reads after a run (the command line and the demo print the same)."""

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

SIDES = ("left", "right")


def counts_table(counts: dict[str, Any]) -> Table:
    """A run's counts per side (``RunReport.counts()``) as a table."""
    table = Table(title=f"{counts['connection']}: {counts['status']}")
    table.add_column("")
    keys = ["read", "new", "changed", "deleted", "inserted", "updated", "failed", "rejected"]
    for side in SIDES:
        table.add_column(side, justify="right")
    for k in keys:
        table.add_row(k, *[str(counts[s].get(k, "")) for s in SIDES])
    return table


def print_conflicts(out: Console, plan: Any) -> None:
    """The plan's conflicts (the first 50) with both sides' values and the resolution."""
    if not plan.conflicts:
        return
    table = Table(title=f"{len(plan.conflicts)} conflicts")
    for col in ("kind", "left key", "right key", "fields", "left", "right", "resolution"):
        table.add_column(col)
    for c in plan.conflicts[:50]:
        show = c.fields[:3]
        table.add_row(
            c.kind, str(c.left_key), str(c.right_key), ", ".join(c.fields),
            "(deleted)" if c.left is None else ", ".join(f"{f}={c.left.get(f)!r}" for f in show),
            "(deleted)" if c.right is None else ", ".join(f"{f}={c.right.get(f)!r}" for f in show),
            c.resolution)
    out.print(table)


def print_rejections(out: Console, plan: Any, errors: Sequence[dict[str, str]]) -> None:
    """Records the run did not sync: rejected by the plan or refused by the system."""
    rows = [(r.side, r.key, r.reason) for r in plan.rejections]
    rows += [(e["side"], e["key"], f"{e['op']}: {e['error']}") for e in errors]
    if not rows:
        return
    table = Table(title=f"{len(rows)} records not synced")
    for col in ("side", "key", "reason"):
        table.add_column(col)
    for r in rows[:50]:
        table.add_row(*r)
    out.print(table)
