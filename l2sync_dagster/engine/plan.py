"""The sync plan: exactly what a run will write, and what the archive records afterwards.

A plan is a plain value: ``render()`` prints it for a dry run, and the load step applies it and
nothing else.
"""

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

Side = Literal["left", "right"]
Op = Literal["insert", "update", "delete"]


def other(side: Side) -> Side:
    """The opposite side."""
    return "right" if side == "left" else "left"


def new_pair_id() -> str:
    """A new pair's id: 32 random hex digits (uuid4's form, without its cost per pair)."""
    return os.urandom(16).hex()


def new_pair_ids(count: int) -> list[str]:
    """``count`` new pair ids (``new_pair_id``'s form) from one call to the random source."""
    text = os.urandom(16 * count).hex()
    return [text[i:i + 32] for i in range(0, 32 * count, 32)]


@dataclass
class ArchiveRow:
    """One synced pair as the archive records it.

    ``values`` are the canonical values both sides last agreed on (JSON-compatible);
    ``*_hash`` the hash of each side's canonical row at that moment; ``*_dirty`` whether that
    side's row differed from ``values`` (one-way targets edited by hand, per-field directions).
    A side key of None means the record is gone from that side and the delete was not
    propagated (the pair is kept so the other record is not inserted again).
    """

    pair_id: str
    left_key: str | None
    right_key: str | None
    left_hash: int | None
    right_hash: int | None
    values: dict[str, Any]
    left_dirty: bool = False
    right_dirty: bool = False
    left_version: str | None = None
    right_version: str | None = None

    def with_values(self, **changes: Any) -> "ArchiveRow":
        """A copy with ``changes`` (``dataclasses.replace`` without its cost per row)."""
        row = object.__new__(ArchiveRow)
        row.__dict__.update(self.__dict__, **changes)
        return row


@dataclass
class PlannedWrite:
    """One change to one side, in that side's field names and Python values."""

    side: Side
    op: Op
    pair_id: str
    key: str | None
    values: dict[str, Any] = field(default_factory=dict)
    version: str | None = None
    reason: str = ""


@dataclass
class Conflict:
    """Both sides changed a pair differently (or one edited what the other deleted)."""

    pair_id: str
    kind: str
    left_key: str | None
    right_key: str | None
    fields: list[str]
    base: dict[str, Any] | None
    left: dict[str, Any] | None
    right: dict[str, Any] | None
    resolution: str


@dataclass
class Rejection:
    """A record left out of this run, with the reason (it is retried next run)."""

    side: Side
    key: str
    reason: str


@dataclass
class PendingInsert:
    """An insert journaled before it was sent, whose outcome a run has not recorded yet.

    ``target_key`` is the key the record gets: known before the write when the sync chooses it,
    recorded from the system's answer (``Provider.apply``'s ``created`` callback) otherwise.
    ``values`` are the canonical values both records agree on once the insert is done (the base
    of the three-way comparison when a crashed run's record is adopted: a user's edit of the
    created record then counts as an edit, not as the truth).
    """

    pair_id: str
    side: Side
    source_key: str
    target_key: str | None
    expected_hash: int
    values: dict[str, Any] | None = None


@dataclass
class SyncPlan:
    """What one run does. ``effects`` maps a pair to the archive row to record once every write
    of that pair succeeded (None: forget the pair). Pairs without writes are recorded at once."""

    connection: str
    writes: list[PlannedWrite] = field(default_factory=list)
    effects: dict[str, ArchiveRow | None] = field(default_factory=dict)
    conflicts: list[Conflict] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    classified: dict[str, dict[str, int]] = field(default_factory=dict)
    pairs_before: int = 0
    blocked: str | None = None
    #: the pair ids this plan drew (``new_pair_id``): no archive row holds them, so recording
    #: their pairs deletes nothing first
    fresh: set[str] = field(default_factory=set)

    def writes_to(self, side: Side) -> list[PlannedWrite]:
        """The writes for one side, inserts first, then updates, then deletes."""
        order = {"insert": 0, "update": 1, "delete": 2}
        return sorted((w for w in self.writes if w.side == side), key=lambda w: order[w.op])

    def counts(self) -> dict[str, Any]:
        """Numbers per side: what was classified and what will be written."""
        out: dict[str, Any] = {}
        for side in ("left", "right"):
            ops = Counter(w.op for w in self.writes if w.side == side)
            out[side] = {
                **self.classified.get(side, {}),
                "to_insert": ops["insert"],
                "to_update": ops["update"],
                "to_delete": ops["delete"],
                "rejected": sum(1 for r in self.rejections if r.side == side),
            }
        out["conflicts"] = len(self.conflicts)
        out["pairs_before"] = self.pairs_before
        return out

    @property
    def is_empty(self) -> bool:
        """True when the run would write nothing and change nothing in the archive."""
        return not self.writes and not self.effects and not self.conflicts

    def render(self, limit: int = 50) -> str:
        """A human-readable dry run."""
        lines = [f"plan for {self.connection}"]
        if self.blocked:
            lines.append(f"BLOCKED: {self.blocked}")
        for side in ("left", "right"):
            c = self.counts()[side]
            lines.append(
                f"  {side:5}: read {c.get('read', 0)}, new {c.get('new', 0)}, "
                f"changed {c.get('changed', 0)}, deleted {c.get('deleted', 0)}"
                f" -> insert {c['to_insert']}, update {c['to_update']}, "
                f"delete {c['to_delete']}, rejected {c['rejected']}"
            )
        lines.append(f"  conflicts: {len(self.conflicts)}")
        for w in self.writes[:limit]:
            vals = ", ".join(f"{k}={v!r}" for k, v in list(w.values.items())[:6])
            lines.append(f"  {w.op:6} {w.side:5} {w.key or '(new)'}: {vals} {w.reason}".rstrip())
        if len(self.writes) > limit:
            lines.append(f"  ... and {len(self.writes) - limit} more writes")
        for c in self.conflicts[:limit]:
            lines.append(
                f"  conflict {c.kind} left={c.left_key} right={c.right_key} "
                f"fields={','.join(c.fields)}: {c.resolution}"
            )
        for r in self.rejections[:limit]:
            lines.append(f"  rejected {r.side} {r.key}: {r.reason}")
        return "\n".join(lines)
