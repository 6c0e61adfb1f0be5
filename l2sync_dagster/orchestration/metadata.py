"""Materialization metadata a data engineer can act on: counts per side, conflicts (linked to
the records where the system has web links), rejected records with reasons, requests made and
throttling waits, the window a partitioned run synced and notes about what it could not judge."""

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import dagster as dg
import pandas as pd

from l2sync_dagster.engine.plan import SyncPlan
from l2sync_dagster.sync.runner import ApplyReport, CheckResult, RunReport, SideRead

if TYPE_CHECKING:
    from l2sync_dagster.sync.runner import Prepared, Sync

MAX_ROWS = 20

#: column name -> function from the cell's value to a link (None: no link)
Links = dict[str, Callable[[str], str | None]]


def _cell(value: Any, link: Callable[[str], str | None] | None) -> str:
    text = str(value).replace("|", "\\|")[:80]
    if link is None or value is None or value == "":
        return text
    url = link(str(value))
    if not url:
        return text
    label = text.replace("[", "\\[").replace("]", "\\]")
    return f"[{label}]({url.replace(' ', '%20').replace(')', '%29')})"


def md_table(rows: list[dict[str, Any]], columns: list[str], links: Links | None = None
             ) -> str:
    """``rows`` as a markdown table of ``columns`` (the first rows; ``links``: a column's
    values as links)."""
    if not rows:
        return "(none)"
    links = links or {}
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    body = "\n".join(
        "| " + " | ".join(_cell(r.get(c, ""), links.get(c)) for c in columns) + " |"
        for r in rows[:MAX_ROWS]
    )
    more = f"\n\n... and {len(rows) - MAX_ROWS} more" if len(rows) > MAX_ROWS else ""
    return head + body + more


def read_metadata(read: SideRead) -> dict[str, Any]:
    """Metadata of an extract asset: count, completeness, preview of the first rows."""
    frame = read.result.frame
    preview = frame.head(5).reset_index()
    preview = preview[[c for c in preview.columns if not str(c).startswith("_")][:8]]
    return {
        "records_read": dg.MetadataValue.int(len(frame)),
        "complete": dg.MetadataValue.bool(read.result.complete),
        "incremental": dg.MetadataValue.bool(read.cursor_used is not None),
        # incremental (the change feed), by key (a one-way target's touched pairs) or full
        "feed": dg.MetadataValue.text(read.feed),
        "deleted_reported": dg.MetadataValue.int(len(read.result.deleted)),
        "seconds": dg.MetadataValue.float(round(read.seconds, 3)),
        "preview": dg.MetadataValue.md(
            md_table(preview.astype(str).to_dict("records"), [str(c) for c in preview.columns])
        ),
    }


def _key_links(links: dict[str, Callable[[str], str | None]] | None) -> Links:
    """Side -> link function, as column links of the ``left_key``/``right_key`` columns."""
    return {f"{side}_key": fn for side, fn in (links or {}).items()}


def conflicts_md(plan: SyncPlan, links: dict[str, Callable[[str], str | None]] | None = None
                 ) -> str:
    """The plan's conflicts as a markdown table; keys link to the records when ``links`` (side
    -> key -> URL) gives a link."""
    rows = [{"kind": c.kind, "left_key": c.left_key, "right_key": c.right_key,
             "fields": ", ".join(c.fields), "left": _short(c.left, c.fields),
             "right": _short(c.right, c.fields), "resolution": c.resolution}
            for c in plan.conflicts]
    return md_table(rows, ["kind", "left_key", "right_key", "fields", "left", "right",
                            "resolution"], _key_links(links))


def _short(values: dict[str, Any] | None, fields: list[str]) -> str:
    if values is None:
        return "(deleted)"
    return ", ".join(f"{f}={values.get(f)!r}" for f in fields[:4])


def rejections_md(plan: SyncPlan, report: ApplyReport | None = None) -> str:
    """Rejected records and failed writes as a markdown table."""
    rows = [{"side": r.side, "key": r.key, "reason": r.reason} for r in plan.rejections]
    if report:
        rows += [{"side": e["side"], "key": e["key"], "reason": f"{e['op']}: {e['error']}"}
                 for e in report.errors]
    return md_table(rows, ["side", "key", "reason"])


def plan_metadata(plan: SyncPlan, links: dict[str, Callable[[str], str | None]] | None = None
                  ) -> dict[str, Any]:
    """Metadata of the plan asset: what will be written where, conflicts and rejections."""
    counts = plan.counts()
    md: dict[str, Any] = {}
    for side in ("left", "right"):
        for k, v in counts[side].items():
            if isinstance(v, bool):
                continue
            md[f"{side}_{k}"] = dg.MetadataValue.int(int(v))
    md["conflicts"] = dg.MetadataValue.int(len(plan.conflicts))
    md["rejected"] = dg.MetadataValue.int(len(plan.rejections))
    md["conflicts_table"] = dg.MetadataValue.md(conflicts_md(plan, links))
    md["rejections_table"] = dg.MetadataValue.md(rejections_md(plan))
    md["plan"] = dg.MetadataValue.md(f"```\n{plan.render(limit=30)}\n```")
    if plan.blocked:
        md["blocked"] = dg.MetadataValue.text(plan.blocked)
    return md


def apply_metadata(side: str, plan: SyncPlan, report: ApplyReport,
                   links: dict[str, Callable[[str], str | None]] | None = None
                   ) -> dict[str, Any]:
    """Metadata of an apply asset: what was written to that side."""
    w = report.written[side]  # type: ignore[index]
    errors = [e for e in report.errors if e["side"] == side]
    return {
        "inserted": dg.MetadataValue.int(w["inserted"]),
        "updated": dg.MetadataValue.int(w["updated"]),
        "deleted": dg.MetadataValue.int(w["deleted"]),
        "failed": dg.MetadataValue.int(w["failed"]),
        "conflicts": dg.MetadataValue.int(len(plan.conflicts)),
        "rejected": dg.MetadataValue.int(
            sum(1 for r in plan.rejections if r.side == side) + len(errors)),
        "conflicts_table": dg.MetadataValue.md(conflicts_md(plan, links)),
        "rejections_table": dg.MetadataValue.md(rejections_md(plan, report)),
        "seconds": dg.MetadataValue.float(round(report.seconds, 3)),
    }


def sync_metadata(sync: "Sync", prep: "Prepared") -> dict[str, Any]:
    """Per run: requests made and throttling waits per side (providers that count them),
    the window of a partitioned run, records that moved between windows, and notes."""
    md: dict[str, Any] = {}
    for side, st in sync.stats().items():
        if "requests" in st:
            md[f"{side}_requests"] = dg.MetadataValue.int(int(st["requests"]))
        if "throttle_wait_s" in st:
            md[f"{side}_throttle_wait_s"] = dg.MetadataValue.float(
                round(float(st["throttle_wait_s"]), 3))
    if sync.window is not None:
        start, end = sync.window
        md["window_start"] = dg.MetadataValue.timestamp(start) if start else \
            dg.MetadataValue.text("unbounded")
        md["window_end"] = dg.MetadataValue.timestamp(end) if end else \
            dg.MetadataValue.text("unbounded")
        md["windows"] = dg.MetadataValue.int(len(sync.windows))
        for side, n in prep.moved.items():
            md[f"{side}_moved_between_windows"] = dg.MetadataValue.int(n)
    if prep.notes:
        md["notes"] = dg.MetadataValue.md("\n".join(f"- {n}" for n in prep.notes))
    return md


def run_tags(*reports: RunReport) -> dict[str, str]:
    """A one-line summary per side for the run's tags (seen in the runs list), summed over
    ``reports`` (the partitions of a for_each run)."""
    tags = {"l2sync/status": ",".join(sorted({r.status for r in reports}))}
    counts = [r.counts() for r in reports]

    def total(side: str, what: str) -> int:
        return sum(int(c.get(side, {}).get(what, 0) or 0) for c in counts)

    for side in ("left", "right"):
        tags[f"l2sync/{side}"] = (f"+{total(side, 'inserted')} ~{total(side, 'updated')} "
                                  f"-{total(side, 'deleted')} !{total(side, 'failed')}")
    tags["l2sync/conflicts"] = str(sum(int(c.get("conflicts", 0)) for c in counts))
    tags["l2sync/rejected"] = str(sum(int(c.get("rejected", 0)) for c in counts))
    return tags


def check_metadata(result: CheckResult) -> dict[str, Any]:
    """Metadata of the in_sync check."""
    return {
        "records_checked": dg.MetadataValue.int(result.checked),
        "mismatches": dg.MetadataValue.int(len(result.mismatches)),
        "mismatch_table": dg.MetadataValue.md(
            md_table(result.mismatches, ["side", "key", "problem"])),
    }


def frame_md(frame: pd.DataFrame) -> str:
    """A frame as markdown (first rows)."""
    return md_table(frame.head(MAX_ROWS).reset_index().astype(str).to_dict("records"),
                     [str(c) for c in frame.reset_index().columns])
