"""Change-feed cursors per connection and side, valid for one mapping signature."""


from sqlalchemy import (
    delete,
    insert,
    select,
)
from sqlalchemy.engine import Engine

from l2sync_dagster.state.tables import (
    cursor_table,
    utc_now,
)


class CursorStore:
    """Where each side's next incremental read starts."""

    engine: Engine

    # --- cursors -------------------------------------------------------------------------
    def cursors(self, connection: str, mapping: str) -> dict[str, str | None]:
        """Each side's change-feed cursor, if it was saved for this mapping."""
        t = cursor_table
        with self.engine.connect() as conn:
            rows = conn.execute(select(t).where(t.c.connection == connection)).mappings().all()
        return {r["side"]: r["cursor"] for r in rows if r["mapping"] == mapping}

    def latest_cursors(self, connection: str) -> dict[str, str | None]:
        """Each side's last saved cursor, whatever mapping it was saved for."""
        t = cursor_table
        with self.engine.connect() as conn:
            rows = conn.execute(select(t).where(t.c.connection == connection)).mappings().all()
        return {r["side"]: r["cursor"] for r in rows}

    def save_cursor(self, connection: str, side: str, cursor: str | None, mapping: str) -> None:
        """Remember where the next incremental read of ``side`` starts."""
        t = cursor_table
        with self.engine.begin() as conn:
            conn.execute(delete(t).where(t.c.connection == connection, t.c.side == side))
            conn.execute(insert(t).values(connection=connection, side=side, cursor=cursor,
                                          mapping=mapping, updated_at=utc_now()))
