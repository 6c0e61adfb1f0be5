"""The values of a connection's ``for_each`` (one partition each): a list in the file, the
rows of a SELECT over the ``sql`` provider (read in its read-only transaction), or the mail
addresses of a group's transitive user members from Microsoft Graph."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from l2sync_dagster.spec.masking import mask_secrets
from l2sync_dagster.spec.model import (
    ConnectionSpec,
    ForEachGroup,
    ForEachSqlSource,
    check_for_each_value,
)

if TYPE_CHECKING:
    from l2sync_dagster.providers.graph.client import GraphClient

#: the application permission Graph needs to list a group's transitive members
GROUP_PERMISSION = "GroupMember.Read.All"


@dataclass
class ForEachValues:
    """The values found (sorted, unique, lower-case) and the rows refused, with why."""

    values: list[str]
    refused: list[str] = field(default_factory=list)


def for_each_values(spec: ConnectionSpec) -> ForEachValues:
    """The values of ``spec.for_each`` now. A SQL row whose value cannot be a mailbox (a
    quote, a space, empty), or a group member without a mail address, is refused by itself;
    the others still count."""
    if spec.for_each is None:
        raise ValueError(f"{spec.display_path} has no for_each")
    source = spec.for_each.mailbox
    if isinstance(source, list):
        return ForEachValues(sorted(set(source)))
    values: set[str] = set()
    refused: list[str] = []
    if isinstance(source, ForEachGroup):
        raw, refused = _group_members(spec, source)
    else:
        raw = _sql_values(source, Path(spec.project_dir))
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


def _group_members(spec: ConnectionSpec, source: ForEachGroup) -> tuple[list[object], list[str]]:
    """The mail addresses of the group's transitive user members, and why members were
    skipped (no mail)."""
    from l2sync_dagster.providers.graph.client import GraphError

    group = source.members_of
    client = _graph_client(spec, source)
    try:
        try:
            found = client.get("groups", params={
                "$filter": f"mail eq '{group}'",
                "$select": "id,mail"})
            matches = found.get("value", [])
            if not matches:
                raise ValueError(f"for_each.mailbox.members_of: no group with the address "
                                 f"{group} in Microsoft Graph")
            members_path = f"groups/{matches[0]['id']}/transitiveMembers/microsoft.graph.user"
            raw: list[object] = []
            refused: list[str] = []
            for member in client.items(members_path, params={
                    "$select": "mail,userPrincipalName", "$top": "999"}):
                mail = member.get("mail")
                if mail:
                    raw.append(mail)
                else:
                    who = member.get("userPrincipalName") or member.get("id")
                    refused.append(f"member {who} of {group} has no mail address; skipped")
            return raw, refused
        except GraphError as exc:
            if exc.status in (401, 403):
                raise ValueError(
                    f"for_each.mailbox.members_of: Microsoft Graph refused to list the members "
                    f"of {group} ({exc.status} {exc.code}); the app registration needs the "
                    f"application permission {GROUP_PERMISSION} (or Directory.Read.All), "
                    "with admin consent") from exc
            raise ValueError(f"for_each.mailbox.members_of: reading the members of {group} "
                             f"failed: {mask_secrets(str(exc))}") from exc
    finally:
        client.close()


def _graph_client(spec: ConnectionSpec, source: ForEachGroup) -> "GraphClient":
    """A GraphClient for the group's connection string (GraphURL, else URL, else Graph's)."""
    from l2sync_dagster.providers.graph.client import DEFAULT_GRAPH_URL, GraphClient
    from l2sync_dagster.providers.msauth import MicrosoftAuth, scope_for
    from l2sync_dagster.spec.connection_string import ConnectionString

    text = source.graph_connection_string(spec.left, spec.right)
    if text is None:  # the loader refuses such a file
        raise ValueError("for_each.mailbox.members_of has no Graph connection string")
    cs = ConnectionString(text, label="for_each.mailbox")
    url = (cs.get("GraphURL") or cs.get("URL") or DEFAULT_GRAPH_URL).rstrip("/")
    auth = MicrosoftAuth.from_connection_string(cs, scope=scope_for(url),
                                                base_dir=Path(spec.project_dir))
    return GraphClient(url, auth, url_key="GraphURL" if cs.get("GraphURL") else "URL")
