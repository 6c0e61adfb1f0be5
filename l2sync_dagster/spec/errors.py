"""Messages that name their place and stay short: ``connections/x.yaml line 12: ...``.

Every refusal names the connection file, the line where the YAML has one, the side and the key
or field. :func:`located` formats such a message for anything found after loading (a mapping
pair, a connection-string key, a query); :func:`cut` and :func:`cut_list` keep what a message
echoes short, and the result is passed through :func:`~l2sync_dagster.spec.masking.mask_secrets`.
"""

import re
from collections.abc import Iterable, Mapping
from typing import Any

from l2sync_dagster.spec.masking import mask_secrets

#: the most characters of a user's text (a key, a path, a query) one message echoes
ECHO_LIMIT = 80
#: the most characters of one message line
MESSAGE_LIMIT = 400
#: how many names a list in a message shows before "and N more"
LIST_LIMIT = 5


def cut(text: object, limit: int = ECHO_LIMIT) -> str:
    """``text`` whole when short, else its start and how much was cut, in ``limit`` characters.

    Cutting a cut text again changes nothing.
    """
    s = str(text)
    if len(s) <= limit:
        return s
    keep = limit
    while keep > 0:
        suffix = f"... ({len(s) - keep:,} more characters)"
        if keep + len(suffix) <= limit or keep <= limit // 2:
            break
        keep -= 1
    return s[:keep] + suffix


def cut_list(items: Iterable[object], limit: int = LIST_LIMIT, *, quote: bool = False) -> str:
    """``a, b, c and 12 more``: at most ``limit`` items, each cut to :data:`ECHO_LIMIT`."""
    shown: list[str] = []
    rest = 0
    for item in items:
        if len(shown) < limit:
            text = cut(item)
            shown.append(f"'{text}'" if quote else text)
        else:
            rest += 1
    text = ", ".join(shown)
    return f"{text} and {rest:,} more" if rest else text


#: the longest unbroken run of characters (a path, a name, a query word) a message keeps whole
TOKEN_LIMIT = 120
_LONG_TOKEN = re.compile(rf"\S{{{TOKEN_LIMIT + 1},}}")


def shorten(message: str, limit: int = MESSAGE_LIMIT) -> str:
    """One line, secrets masked, at most ``limit`` characters (saying how much was cut).

    Every run of more than :data:`TOKEN_LIMIT` characters without a space is cut first, so
    that one long name does not push the rest of the message out.
    """
    line = " ".join(mask_secrets(str(message)).split())
    line = _LONG_TOKEN.sub(lambda m: cut(m.group(0), TOKEN_LIMIT), line)
    return cut(line, limit)


def _parts(path: str) -> list[str]:
    return [p for p in path.split(".") if p != ""]


def line_of(spec: Any, path: str) -> int | None:
    """The 1-based line of the dotted ``path`` (``mapping.fields.2.right``) in ``spec``'s file.

    The nearest enclosing entry that the file writes gives the line (``mapping.fields.2`` for a
    key the pair leaves out); None when the spec was not loaded from a file.
    """
    lines: Mapping[str, int] = getattr(spec, "lines", None) or {}
    parts = _parts(path)
    while parts:
        line = lines.get(".".join(parts))
        if line is not None:
            return line
        parts.pop()
    return None


def pretty_path(path: str) -> str:
    """``mapping.fields.2.right`` -> ``mapping.fields[2].right``."""
    out = ""
    for part in _parts(path):
        if part.isdigit():
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def where(spec: Any, path: str = "") -> str:
    """``connections/x.yaml line 12`` (no line when the file has none for ``path``)."""
    shown = getattr(spec, "display_path", None) or str(getattr(spec, "path", "") or "")
    shown = cut(shown or "connection", 120)
    line = line_of(spec, path) if path else None
    return f"{shown} line {line}" if line is not None else shown


def located(
    spec: Any,
    path: str,
    message: str,
    *,
    side: str | None = None,
    key: str | None = None,
    kind: str = "field",
) -> str:
    """A message naming its place: file, line, the entry at ``path``, the side and the key.

    ``located(spec, "mapping.fields.2", "is read-only", side="right", key="Modified")`` ->
    ``connections/x.yaml line 12: mapping.fields[2] (right field 'Modified'): is read-only``.
    ``kind`` names what ``key`` is (``field``, ``key`` of a connection string, ``table``...).
    The result is one line, cut to :data:`MESSAGE_LIMIT` characters, with secrets masked.
    """
    detail = ""
    if side and key is not None:
        detail = f"{side} {kind} '{cut(key)}'"
    elif side and _parts(path)[:1] != [side]:
        detail = f"{side} side"
    elif key is not None:
        detail = f"{kind} '{cut(key)}'"
    subject = pretty_path(path)
    if subject and detail:
        subject = f"{subject} ({detail})"
    else:
        subject = subject or detail
    text = f"{where(spec, path)}: " + (f"{subject}: " if subject else "") + message
    return shorten(text)


class LocatedError(ValueError):
    """A refusal found after loading, with its place: ``str()`` is the :func:`located` text."""

    def __init__(
        self,
        spec: Any,
        path: str,
        message: str,
        *,
        side: str | None = None,
        key: str | None = None,
        kind: str = "field",
    ) -> None:
        self.path = path
        self.line = line_of(spec, path) if path else None
        self.side = side
        self.key = key
        super().__init__(located(spec, path, message, side=side, key=key, kind=kind))


_QUERY_WORDS = ("query", "select", "table", "column", "field", "folder", "list", "entity")
_FILE_WORDS = ("file name", "path", "errno", "no such file", "directory")


def error_subject(side: str, message: str, query: str | None) -> str:
    """The entry a description error is about: the side's query, its connection string (a
    file that cannot be opened) or the side as a whole (a server that cannot be reached)."""
    low = message.lower()
    if query and (str(query)[:40].lower() in low or any(w in low for w in _QUERY_WORDS)):
        return f"{side}.query"
    if any(w in low for w in _FILE_WORDS):
        return f"{side}.connection_string"
    return side
