"""What every Graph resource handler shares: errors in Graph's shape, the per-request context
(principal, query options, Prefer headers), output shaping ($select, time zones, body type),
response checking against the CSDL, and paging with opaque skip tokens."""

import base64
import html
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from l2sync_dagster.sandbox.graph.query import (
    Expand,
    QueryError,
    parse_datetime,
    parse_expand,
    parse_filter,
    parse_orderby,
    parse_select,
    parse_top,
    sort_key,
)
from l2sync_dagster.sandbox.service import Response
from l2sync_dagster.sandbox.tokens import Principal

if TYPE_CHECKING:
    from l2sync_dagster.sandbox.graph.service import GraphService

#: Windows time zone names Graph accepts (a subset) -> IANA
WINDOWS_ZONES = {
    "UTC": "UTC", "GMT Standard Time": "Europe/London",
    "W. Europe Standard Time": "Europe/Berlin", "Romance Standard Time": "Europe/Paris",
    "Central Europe Standard Time": "Europe/Budapest", "E. Europe Standard Time":
    "Europe/Chisinau", "FLE Standard Time": "Europe/Kiev", "Eastern Standard Time":
    "America/New_York", "Central Standard Time": "America/Chicago", "Mountain Standard Time":
    "America/Denver", "Pacific Standard Time": "America/Los_Angeles", "Tokyo Standard Time":
    "Asia/Tokyo", "India Standard Time": "Asia/Kolkata", "China Standard Time": "Asia/Shanghai",
    "AUS Eastern Standard Time": "Australia/Sydney",
}


class GraphError(Exception):
    """An error answer: HTTP status, Graph error ``code`` and message."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def error_body(code: str, message: str, client_request_id: str | None = None) -> dict[str, Any]:
    """Graph's error shape."""
    request_id = str(uuid.uuid4())
    return {"error": {"code": code, "message": message, "innerError": {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": request_id,
        "client-request-id": client_request_id or request_id,
    }}}


def zone(name: str) -> ZoneInfo:
    """A time zone by Windows or IANA name; GraphError for unknown names."""
    try:
        return ZoneInfo(WINDOWS_ZONES.get(name, name))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise GraphError(400, "ErrorInvalidTimeZone", f"The time zone '{name}' is not "
                         "supported.") from exc


def fmt_local(value: datetime) -> str:
    """Graph's dateTimeTimeZone.dateTime format (7 fractional digits, no offset)."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0"


def to_utc_dtz(value: Any, path: str) -> dict[str, str]:
    """A dateTimeTimeZone from a request, converted to UTC for storage."""
    if not isinstance(value, dict) or not isinstance(value.get("dateTime"), str):
        raise GraphError(400, "invalidRequest", f"{path}: expected a dateTimeTimeZone")
    tz = zone(value.get("timeZone") or "UTC")
    try:
        local = datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", value["dateTime"])
                                       .replace("Z", ""))
    except ValueError as exc:
        raise GraphError(400, "invalidRequest", f"{path}.dateTime: invalid date-time "
                         f"'{value['dateTime']}'") from exc
    if local.tzinfo is None:
        local = local.replace(tzinfo=tz)
    return {"dateTime": fmt_local(local.astimezone(UTC).replace(tzinfo=None)),
            "timeZone": "UTC"}


def dtz_utc(value: dict[str, str]) -> datetime:
    """A stored (UTC) dateTimeTimeZone as an aware datetime."""
    return parse_datetime(value["dateTime"])


@dataclass
class Ctx:
    """One request as the handlers see it."""

    service: "GraphService"
    method: str
    path: list[str]
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    principal: Principal
    base_url: str
    raw_path: str
    extra: dict[str, Any] = field(default_factory=dict)

    def prefer(self, name: str) -> str | None:
        """A ``Prefer`` value: ``outlook.timezone``, ``outlook.body-content-type``,
        ``odata.maxpagesize`` (quotes stripped)."""
        for part in self.headers.get("prefer", "").split(","):
            key, _, value = part.strip().partition("=")
            if key.strip().lower() == name.lower():
                return value.strip().strip('"')
        return None

    def opt(self, name: str) -> str | None:
        """A query option, with or without ``$`` (``$top`` or ``top``)."""
        return self.query.get(f"${name}", self.query.get(name))

    def select(self) -> list[str] | None:
        """``$select``."""
        return parse_select(self.opt("select"))

    def expand(self) -> dict[str, Expand]:
        """``$expand``."""
        return parse_expand(self.opt("expand"))

    def url(self, **replace: str | None) -> str:
        """This request's URL with some query options replaced (None removes)."""
        params = dict(self.query)
        for k, v in replace.items():
            params.pop(k, None)
            if v is not None:
                params[k] = v
        qs = urlencode(params, quote_via=quote, safe="$,'()=:/")
        return f"{self.base_url}{self.raw_path}" + (f"?{qs}" if qs else "")


def parse_query(raw: str) -> dict[str, str]:
    """Query string -> dict (last value wins; ``%20`` and ``+`` both spaces)."""
    return dict(parse_qsl(raw, keep_blank_values=True))


def encode_token(data: dict[str, Any]) -> str:
    """An opaque skip/delta token."""
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()\
        .rstrip("=")


def decode_token(token: str, what: str = "$skiptoken") -> dict[str, Any]:
    """Inverse of :func:`encode_token`; 400 when the token was not made here."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(data, dict):
            raise ValueError
        return data
    except ValueError as exc:
        raise GraphError(400, "BadRequest", f"The {what} value is invalid.") from exc


def html_to_text(content: str) -> str:
    """What Outlook returns for ``Prefer: outlook.body-content-type="text"``."""
    text = re.sub(r"(?is)<(script|style).*?</\1>", "", content)
    text = re.sub(r"(?i)<br\s*/?>|</p>|</div>", "\r\n", text)
    return html.unescape(re.sub(r"<[^>]+>", "", text)).strip()


def text_to_html(content: str) -> str:
    """Inverse direction for ``outlook.body-content-type="html"`` on a text body."""
    return f"<html><body>{html.escape(content).replace(chr(10), '<br>')}</body></html>"


#: properties Graph returns only when ``$select`` names them
SELECTED_ONLY = frozenset({"cancelledOccurrences"})


def shape(ctx: Ctx, entity: dict[str, Any], *, select: list[str] | None,
          hidden: tuple[str, ...] = ("singleValueExtendedProperties",),
          all_day: bool = False) -> dict[str, Any]:
    """The entity as returned: ``$select`` applied (``id`` always), ETag annotation, time zone
    and body content type from ``Prefer``, extended properties only when expanded."""
    expand = ctx.extra.get("expand_opts") or {}
    out: dict[str, Any] = {}
    etag = entity.get("@odata.etag")
    if etag:
        out["@odata.etag"] = etag
    for k, v in entity.items():
        if k.startswith("@") or k.startswith("_"):
            continue
        if k in hidden and k not in expand:
            continue
        if k in SELECTED_ONLY and (select is None or k not in select):
            continue
        if select is not None and k != "id" and k not in select and k not in expand:
            continue
        out[k] = v
    tz_name = ctx.prefer("outlook.timezone")
    if tz_name and not all_day:
        tz = zone(tz_name)
        for k, v in list(out.items()):
            if isinstance(v, dict) and set(v) == {"dateTime", "timeZone"} \
                    and v.get("timeZone") == "UTC":
                local = dtz_utc(v).astimezone(tz).replace(tzinfo=None)
                out[k] = {"dateTime": fmt_local(local), "timeZone": tz_name}
    body_type = (ctx.prefer("outlook.body-content-type") or "").lower()
    body = out.get("body")
    if isinstance(body, dict) and body_type in ("text", "html") \
            and body.get("contentType") != body_type:
        content = body.get("content") or ""
        out["body"] = {"contentType": body_type,
                       "content": html_to_text(content) if body_type == "text"
                       else text_to_html(content)}
    for name, exp in expand.items():
        if name == "singleValueExtendedProperties":
            props = entity.get(name) or []
            if exp.filter is not None:
                props = [p for p in props if exp.filter(p)]
            out[name] = props
    return out


@dataclass
class Kind:
    """A resource kind: counter prefix, CSDL type, page sizes, delete style in delta."""

    op: str
    type: str
    default_page: int = 10
    max_page: int = 1000
    #: "removed" (Outlook @removed), "changed" (directory users) or "deleted" (list items)
    removed_style: str = "removed"


def paged(ctx: Ctx, kind: Kind, entities: list[dict[str, Any]],
          emit: Callable[[dict[str, Any]], dict[str, Any]], context: str,
          *, apply_filter: bool = True) -> Response:
    """A collection answer: $filter, $orderby, $top / page size, opaque $skiptoken."""
    try:
        if apply_filter and ctx.opt("filter") is not None:
            pred = parse_filter(ctx.opt("filter") or "")
            entities = [e for e in entities if pred(e)]
        for path, desc in reversed(parse_orderby(ctx.opt("orderby"))):
            entities = sorted(entities, key=lambda e, p=path: sort_key(e, p), reverse=desc)
        top = parse_top(ctx.opt("top"), kind.max_page)
    except QueryError as exc:
        raise GraphError(400, "BadRequest", str(exc)) from exc
    size = top or kind.default_page
    pref = ctx.prefer("odata.maxpagesize")
    if top is None and pref and pref.isdigit() and int(pref) > 0:
        size = min(int(pref), kind.max_page)
    skip = ctx.opt("skip")
    if skip is not None and not skip.isdigit():
        raise GraphError(400, "BadRequest", f"Invalid $skip value '{skip}'.")
    offset = int(skip or 0)
    if ctx.opt("skiptoken"):
        state = decode_token(ctx.opt("skiptoken") or "")
        offset = int(state.get("o", 0))
        size = int(state.get("n", size))
    page = entities[offset:offset + size]
    body: dict[str, Any] = {"@odata.context": f"{ctx.base_url}/v1.0/$metadata#{context}",
                            "value": [emit(e) for e in page]}
    if offset + size < len(entities):
        token = encode_token({"o": offset + size, "n": size})
        body["@odata.nextLink"] = ctx.url(**{"$skiptoken": token, "skiptoken": None,
                                             "$top": None, "top": None, "$skip": None,
                                             "skip": None})
    return Response.json(body, operation=f"{kind.op}.list")
