"""The ``dataverse`` provider: Dynamics 365 / Dataverse tables through the Web API (OData v4).

Connection string (as Layer2 users write it)::

    URL=https://contoso.crm4.dynamics.com/api/data/v9.2/accounts;
    Authentication=microsoft_modern_crm;User=sync@contoso.com;Password=env:CRM_PASSWORD;
    ClientId=<app id>;TenantId=<tenant>

or client credentials of an application user (``TenantId``, ``ClientId``,
``ClientSecret=env:VAR`` or ``CertificatePath``). The token scope is ``https://<host>/.default``
of the URL. ``Authority`` and ``CABundle`` work as for Graph (see
:mod:`l2sync_dagster.providers.msauth`). Further keys: ``KeyGeneration=client`` (Layer2's
replication key: new records get a GUID made by the sync, sent with the POST and journaled, so a
crash after the POST is recognised on the re-run instead of creating a duplicate),
``BatchSize`` (default 100 requests per ``$batch`` change set, at most 1000), ``Concurrency``
(batches in flight, default 4), ``MaxPageSize`` (default 5000), ``Timeout`` (seconds per HTTP
request, default 120, sign-in included). ``KeyGeneration`` defaults to
``client`` here (``server`` lets Dataverse make the GUID, as the generic ``odata`` provider does
by default).

Fields: the table's columns from ``$metadata``; read-only where Dataverse says the attribute is
valid neither for create nor for update (``EntityDefinitions(...)/Attributes``). A lookup
``_x_value`` is the field ``x`` (the GUID; written as ``<navigation>@odata.bind``) plus the
read-only ``x.name`` (its formatted value); an option set ``y`` has the read-only ``y.label``.
The key is the table's primary id, ``_version`` the ``@odata.etag``, ``_modified`` ``modifiedon``.

Change feed: ``Prefer: odata.track-changes``; the delta link is the cursor and
``$deletedEntity`` rows are deletes. Tables without change tracking (and queries with
``$filter``/``$orderby``/``$top``, which change tracking refuses) use a ``modifiedon`` watermark
instead; :meth:`DataverseProvider.stats` says which feed a read used.
"""

import json
import logging
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

from l2sync_dagster.providers.base import Capability, ProviderError, Query, ReadResult
from l2sync_dagster.providers.msauth import scope_for
from l2sync_dagster.providers.odata.client import ODataHTTPError
from l2sync_dagster.providers.odata.options import (
    DataverseOptions,
    ODataServiceOptions,
    bearer_auth,
    check_url,
    microsoft_auth,
    service_options,
)
from l2sync_dagster.providers.odata.provider import Field, ODataProvider, find_field
from l2sync_dagster.providers.odata.select import ODataQuery
from l2sync_dagster.providers.odata.values import digest
from l2sync_dagster.spec.connection_string import ConnectionString, ConnectionStringError

log = logging.getLogger("l2sync.providers.dataverse")

FORMATTED = "OData.Community.Display.V1.FormattedValue"
ANNOTATIONS = f"{FORMATTED},Microsoft.Dynamics.CRM.lookuplogicalname"
EXPIRED_DELTA = "0x80044352"
NO_TRACKING = "0x80072491"
OPTION_TYPES = ("Picklist", "State", "Status", "Boolean")
LOOKUP_TYPES = ("Lookup", "Customer", "Owner")


class DataverseProvider(ODataProvider):
    """Reads and writes one Dataverse table (see the module docstring)."""

    name: ClassVar[str] = "dataverse"
    capabilities: ClassVar[frozenset[Capability]] = ODataProvider.capabilities | {"web_link"}
    options: ClassVar[type[ODataServiceOptions]] = DataverseOptions

    @classmethod
    def from_connection_string(
        cls, text: str | ConnectionString, *, base_dir: Path | None = None
    ) -> "DataverseProvider":
        """Parse the connection string; authentication through msal (MicrosoftAuth)."""
        cs = text if isinstance(text, ConnectionString) else ConnectionString(text,
                                                                              label=cls.name)
        opts, kwargs = service_options(DataverseOptions, cs)
        url = check_url(opts.url, cls.name)
        if "/api/data/" not in url.lower():
            raise ConnectionStringError(
                f"{cls.name}: URL must be the Web API URL of a table, like https://contoso."
                "crm4.dynamics.com/api/data/v9.2/accounts")
        if opts.batch == "json":
            raise ConnectionStringError(f"{cls.name}: Dataverse takes $batch as multipart only; "
                                        "use Batch=multipart or Batch=none")
        ms = microsoft_auth(cs, scope_for(url), base_dir)
        return cls(url, session=ms.session(), auth=bearer_auth(ms), modified="modifiedon",
                   **kwargs)

    # --- fields ------------------------------------------------------------------------------
    def _attributes(self, logical: str) -> dict[str, dict[str, Any]]:
        """Attribute metadata (type, valid for create/update) by logical name."""
        link = (f"EntityDefinitions(LogicalName='{logical}')/Attributes?$select=LogicalName,"
                "AttributeType,IsValidForCreate,IsValidForUpdate")
        data = self.client.get_json(link, f"read the attributes of {logical}")
        return {a["LogicalName"]: a for a in data.get("value", [])}

    def _base_fields(self, entity_set: str) -> tuple[dict[str, Field], str, str | None]:
        fields, key, _ = super()._base_fields(entity_set)
        md = self.metadata()
        _, et = md.entity_set(entity_set)
        logical = et.name.rsplit(".", 1)[-1]
        attrs = self._attributes(logical)
        out: dict[str, Field] = {}
        for f in fields.values():
            prop = f.prop
            is_lookup = prop.startswith("_") and prop.endswith("_value")
            logical_name = prop[1:-6] if is_lookup else prop
            attr = attrs.get(logical_name, {})
            writable = bool(attr.get("IsValidForCreate") or attr.get("IsValidForUpdate"))
            read_only = not writable if attr else f.read_only
            if is_lookup:
                navs = [n for n in et.navigations.values() if n.fk == prop]
                nav = navs[0] if len(navs) == 1 else None
                target = md.set_of_type(nav.target_type) if nav else None
                out[logical_name] = Field(logical_name, prop, "guid",
                                          read_only or nav is None or target is None,
                                          True, None, nav.name if nav else None, target)
                out[f"{logical_name}.name"] = Field(f"{logical_name}.name", prop, "string",
                                                    True, True, FORMATTED)
                continue
            out[f.name] = Field(f.name, prop, f.ftype, read_only, f.nullable)
            if attr.get("AttributeType") in OPTION_TYPES and attr.get("AttributeType") != \
                    "Boolean":
                out[f"{f.name}.label"] = Field(f"{f.name}.label", prop, "string", True, True,
                                               FORMATTED)
        mod = "modifiedon" if "modifiedon" in out else None
        return out, find_field(out, key).name, mod  # type: ignore[union-attr]

    def _read_headers(self, track: bool, page_size: int | None = None) -> dict[str, str]:
        prefer = [f"odata.maxpagesize={page_size or self.page_size}",
                  f'odata.include-annotations="{ANNOTATIONS}"']
        if track:
            prefer.append("odata.track-changes")
        return {"Prefer": ",".join(prefer)}

    # --- change feed -------------------------------------------------------------------------
    def _can_track(self, q: ODataQuery) -> bool:
        return not (q.filter or q.orderby or q.top is not None or q.expand or q.extra)

    def read(self, query: Query, cursor: str | None = None,
             window: tuple[Any, Any] | None = None) -> ReadResult:
        """Complete read with a delta link as cursor, or the changes since the cursor's delta
        link; falls back to the ``modifiedon`` watermark when change tracking is unavailable."""
        ent = self.entity(query)
        state = _parse_cursor(cursor)
        if window is not None or not self._can_track(ent.query) or \
                ent.notes.get("tracking") is False:
            if window is None and not self._can_track(ent.query):
                self.notes["change_feed"] = "modifiedon (the query has $filter/$orderby/$top, " \
                    "which change tracking does not support)"
            wm = json.dumps({"watermark": state["watermark"]}) if "watermark" in state else None
            return super().read(query, wm, window)
        if "delta" in state:
            try:
                frame, deleted, delta = self._fetch(ent, state["delta"], False)
                self.notes["change_feed"] = "track-changes"
                return ReadResult(frame, complete=False, deleted=deleted,
                                  cursor=_delta_cursor(delta or state["delta"]))
            except ODataHTTPError as exc:
                if exc.code != EXPIRED_DELTA and exc.status != 410:
                    raise
                log.warning("%s: the delta link expired; reading everything", self.name)
                self.notes["delta_expired"] = True
        try:
            frame, _, delta = self._fetch(ent, self._collection_link(ent, ent.query), True)
        except ODataHTTPError as exc:
            if exc.code != NO_TRACKING:
                raise
            ent.notes["tracking"] = False
            self.notes["change_feed"] = (f"modifiedon ({ent.entity_set} has no change "
                                         "tracking)")
            wm = json.dumps({"watermark": state["watermark"]}) if "watermark" in state else None
            return super().read(query, wm, window)
        self.notes["change_feed"] = "track-changes"
        if delta is None:
            raise ProviderError(f"{self.name}: {ent.entity_set}: the service answered "
                                "track-changes without a delta link")
        return ReadResult(frame, complete=True, cursor=_delta_cursor(delta))

    def web_link(self, key: str) -> str | None:
        """The record's form in the Dynamics 365 web app (``main.aspx?pagetype=entityrecord``).

        Only once ``$metadata`` has been read (every run reads it before it plans)."""
        if self._metadata is None:
            return None
        _, et = self._metadata.entity_set(self.entity_set)
        logical = et.name.rsplit(".", 1)[-1]
        parts = urlsplit(self.service_root)
        return (f"{parts.scheme}://{parts.netloc}/main.aspx?pagetype=entityrecord"
                f"&etn={quote(logical)}&id={quote(str(key))}")

    def probe(self, query: Query, cursor: str | None = None) -> str:
        """With a delta-link cursor: the first change since it (one row, one request);
        otherwise the newest ``modifiedon`` (which does not see deletes)."""
        ent = self.entity(query)
        state = _parse_cursor(cursor)
        if "delta" in state and self._can_track(ent.query):
            try:
                page = next(self.client.pages(state["delta"], f"probe {ent.entity_set}",
                                              self._read_headers(False, 1)))
            except ODataHTTPError as exc:
                if exc.code != EXPIRED_DELTA and exc.status != 410:
                    raise
                return digest(["expired", state["delta"]])
            first = page.rows[0] if page.rows else {}
            return digest([state["delta"], first.get("@odata.etag"), first.get("id"),
                            first.get(ent.key.prop)])
        return super().probe(query, None)


def _parse_cursor(cursor: str | None) -> dict[str, Any]:
    if not cursor:
        return {}
    try:
        data = json.loads(cursor)
    except ValueError:
        log.warning("ignoring a cursor that is not a dataverse cursor; reading everything")
        return {}
    return data if isinstance(data, dict) else {}


def _delta_cursor(link: str) -> str:
    return json.dumps({"delta": link})
