"""The values of a connection's ``for_each`` (one partition each): a list in the file, or the
rows of a SELECT over the ``sql`` provider (read in its read-only transaction)."""

from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from l2sync_dagster.spec.masking import mask_secrets
from l2sync_dagster.spec.model import ConnectionSpec, ForEachSqlSource, check_for_each_value


@dataclass
class ForEachValues:
    """The values found (sorted, unique, lower-case) and the rows refused, with why."""

    values: list[str]
    refused: list[str] = field(default_factory=list)


def for_each_values(spec: ConnectionSpec) -> ForEachValues:
    """The values of ``spec.for_each`` now. A SQL row whose value cannot be a mailbox (a
    quote, a space, empty) is refused by itself; the others still count."""
    if spec.for_each is None:
        raise ValueError(f"{spec.display_path} has no for_each")
    source = spec.for_each.mailbox
    if isinstance(source, list):
        return ForEachValues(sorted(set(source)))
    assert isinstance(source, ForEachSqlSource), "members_of is refused when the file loads"
    raw = _sql_values(source, Path(spec.project_dir))
    values: set[str] = set()
    refused: list[str] = []
    for item in raw:
        try:
            values.add(check_for_each_value("" if item is None else str(item)))
        except ValueError as exc:
            refused.append(mask_secrets(str(exc)))
    return ForEachValues(sorted(values), refused)


def _sql_values(source: ForEachSqlSource, project_dir: Path) -> list[object]:
    from l2sync_dagster.providers.sql import SqlProvider

    provider = SqlProvider.from_connection_string(source.connection_string, base_dir=project_dir)
    try:
        # the provider's SELECT parser refuses anything that could write; its read-only
        # transaction is rolled back
        statement = provider._statement(source.query)
        with provider._reading() as conn:
            result = conn.execute(sa.text(statement.text))
            names = list(result.keys())
            column = source.column or names[0]
            if column not in names:
                raise ValueError(f"for_each.mailbox.query has no column {column!r} "
                                 f"(columns: {', '.join(names)})")
            i = names.index(column)
            return [row[i] for row in result]
    finally:
        provider.close()
