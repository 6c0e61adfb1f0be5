"""Materialization metadata a data engineer can act on: counts, previews, conflicts."""

from typing import Any

import dagster as dg
import pandas as pd

from l2sync_dagster.engine.plan import SyncPlan
from l2sync_dagster.sync.runner import ApplyReport, CheckResult, SideRead

MAX_ROWS = 20


def _md_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    body = "\n".join(
        "| " + " | ".join(str(r.get(c, "")).replace("|", "\\|")[:80] for c in columns) + " |"
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
        "deleted_reported": dg.MetadataValue.int(len(read.result.deleted)),
        "seconds": dg.MetadataValue.float(round(read.seconds, 3)),
        "preview": dg.MetadataValue.md(
            _md_table(preview.astype(str).to_dict("records"), [str(c) for c in preview.columns])
        ),
    }


def conflicts_md(plan: SyncPlan) -> str:
    """The plan's conflicts as a markdown table."""
    rows = [{"kind": c.kind, "left_key": c.left_key, "right_key": c.right_key,
             "fields": ", ".join(c.fields), "left": _short(c.left, c.fields),
             "right": _short(c.right, c.fields), "resolution": c.resolution}
            for c in plan.conflicts]
    return _md_table(rows, ["kind", "left_key", "right_key", "fields", "left", "right",
                            "resolution"])


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
    return _md_table(rows, ["side", "key", "reason"])


def plan_metadata(plan: SyncPlan) -> dict[str, Any]:
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
    md["conflicts_table"] = dg.MetadataValue.md(conflicts_md(plan))
    md["rejections_table"] = dg.MetadataValue.md(rejections_md(plan))
    md["plan"] = dg.MetadataValue.md(f"```\n{plan.render(limit=30)}\n```")
    if plan.blocked:
        md["blocked"] = dg.MetadataValue.text(plan.blocked)
    return md


def apply_metadata(side: str, plan: SyncPlan, report: ApplyReport) -> dict[str, Any]:
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
        "conflicts_table": dg.MetadataValue.md(conflicts_md(plan)),
        "rejections_table": dg.MetadataValue.md(rejections_md(plan, report)),
        "seconds": dg.MetadataValue.float(round(report.seconds, 3)),
    }


def check_metadata(result: CheckResult) -> dict[str, Any]:
    """Metadata of the in_sync check."""
    return {
        "records_checked": dg.MetadataValue.int(result.checked),
        "mismatches": dg.MetadataValue.int(len(result.mismatches)),
        "mismatch_table": dg.MetadataValue.md(
            _md_table(result.mismatches, ["side", "key", "problem"])),
    }


def frame_md(frame: pd.DataFrame) -> str:
    """A frame as markdown (first rows)."""
    return _md_table(frame.head(MAX_ROWS).reset_index().astype(str).to_dict("records"),
                     [str(c) for c in frame.reset_index().columns])
