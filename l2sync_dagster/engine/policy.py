"""The connection's rules for direction, conflicts and deletes, as the engine takes them."""

from dataclasses import dataclass

from l2sync_dagster.engine.plan import (
    Side,
)

POLICIES = ("left_wins", "right_wins", "latest_wins", "merge", "skip", "fail")


@dataclass(frozen=True)
class SyncPolicy:
    """The connection's rules for direction, conflicts and deletes."""

    direction: str = "bidirectional"
    mirror: bool = False
    conflict: str = "skip"
    fallback: str = "skip"
    propagate_deletes: bool = False
    max_delete_fraction: float = 0.2
    match_on: tuple[str, ...] = ()
    allow_mass_delete: bool = False

    def writes_to(self, side: Side) -> bool:
        """True when the connection direction lets data flow into ``side``."""
        if side == "right":
            return self.direction in ("bidirectional", "left_to_right")
        return self.direction in ("bidirectional", "right_to_left")

    @property
    def one_way(self) -> bool:
        """True for left_to_right and right_to_left."""
        return self.direction != "bidirectional"

    @property
    def source(self) -> Side | None:
        """The source side of a one-way connection."""
        if self.direction == "left_to_right":
            return "left"
        if self.direction == "right_to_left":
            return "right"
        return None
