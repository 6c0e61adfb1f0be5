"""The state store: archive, cursors, conflicts, runs, locks (SQLAlchemy)."""
