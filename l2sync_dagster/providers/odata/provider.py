"""The ``odata`` provider: any OData v4 service (and the base of the ``dataverse`` provider).

Connection string::

    URL=https://services.example.com/odata/People;Authentication=Basic;User=sync;
    Password=env:ODATA_PASSWORD;Modified=LastModified

The keys (``URL``, ``Authentication``, ``Key``, ``Modified``, ``KeyGeneration``, ``Batch``,
``BatchSize``, ``Concurrency``, ``MaxPageSize`` and the Microsoft sign-in keys) are declared in
:class:`~l2sync_dagster.providers.odata.options.ODataOptions`; the README's table is made from it.

The query is a select statement, raw OData query options or empty (the whole entity set); see
:mod:`l2sync_dagster.providers.odata.select`. ``describe().scope`` is ``limited`` for ``TOP``,
``LIMIT``, ``$top`` or ``$skip``, ``filtered`` for ``WHERE``, ``$filter`` or ``$search`` and
``all`` otherwise (no connection-string key restricts a read); ``lookup`` reads keys with
``$filter=key eq .. or ..`` whatever the query selects.

Writes: request URLs inside a ``$batch`` are relative to the service root. A multipart batch
carries one change set (retried as independent requests when it fails); a JSON batch carries
independent requests with ``odata.continue-on-error``, because a server may answer success for a
member of a failed atomicity group that it rolled back. ``apply(..., created=...)`` hands over
the new keys after each batch answer, in the calling thread.
"""

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import pandas as pd
import requests

from l2sync_dagster.providers.base import (
    KEY_INDEX,
    MODIFIED,
    VERSION,
    Capability,
    EntityDescription,
    FieldInfo,
    ProviderError,
    Query,
    ReadResult,
)
from l2sync_dagster.providers.microsoft_options import resolve_ca_bundle
from l2sync_dagster.providers.odata.client import ODataClient
from l2sync_dagster.providers.odata.entity import KEY_IN_URL_RE, Entity, Field, find_field
from l2sync_dagster.providers.odata.metadata import Metadata, MetadataError, parse_metadata
from l2sync_dagster.providers.odata.options import (
    ODataOptions,
    ODataServiceOptions,
    bearer_auth,
    check_url,
    default_scope,
    microsoft_auth,
    refuse,
    service_options,
    split_url,
)
from l2sync_dagster.providers.odata.select import (
    FieldResolver,
    ODataQuery,
    QueryError,
    encode_options,
    literal,
    read_scope,
    translate,
)
from l2sync_dagster.providers.odata.values import (
    digest,
    is_deleted,
    json_column,
    key_text,
    max_modified,
    watermark_cursor,
    watermark_of,
)
from l2sync_dagster.providers.odata.writes import ODataWrites
from l2sync_dagster.spec.connection_string import ConnectionString, ConnectionStringError

log = logging.getLogger("l2sync.providers.odata")


class ODataProvider(ODataWrites):
    """Reads and writes one entity set of an OData v4 service."""

    name: ClassVar[str] = "odata"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {"lookup", "probe", "stats", "close"})
    options: ClassVar[type[ODataServiceOptions]] = ODataOptions

    def __init__(
        self,
        url: str,
        *,
        session: requests.Session | None = None,
        auth: Callable[[dict[str, str], bool], None] | None = None,
        key: str | None = None,
        modified: str | None = None,
        key_generation: str = "server",
        batch: str = "auto",
        batch_size: int = ODataOptions.default("BatchSize"),
        concurrency: int = ODataOptions.default("Concurrency"),
        page_size: int = ODataOptions.default("MaxPageSize"),
        timeout_s: float | None = None,
    ) -> None:
        """An OData provider for ``url`` (service root + entity set)."""
        self.url = url.rstrip("/")
        root, entity_set = split_url(self.url)
        self.service_root = root
        self.entity_set = entity_set
        self.client = ODataClient(root, session or requests.Session(), auth, label=self.name,
                                  timeout_s=timeout_s)
        self.key_name = key
        self.modified_name = modified
        self.key_generation = key_generation
        self.batch_format = batch
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.page_size = page_size
        self._metadata: Metadata | None = None
        self._entities: dict[Query, Entity] = {}
        self._lock = threading.Lock()
        self.notes: dict[str, Any] = {}
        #: ask for the written record in the answer (201/200 with body, so the new ETag comes
        #: without another read); False: the service answers 204 and OData-EntityId/ETag
        self.prefer_representation = True

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    # --- connection string -------------------------------------------------------------------
    @classmethod
    def from_connection_string(
        cls, text: str | ConnectionString, *, base_dir: Path | None = None
    ) -> "ODataProvider":
        """Parse the connection string (see the module docstring for the keys)."""
        cs = text if isinstance(text, ConnectionString) else ConnectionString(text,
                                                                              label=cls.name)
        opts, kwargs = service_options(ODataOptions, cs)
        url = check_url(opts.url, cls.name)
        mode = opts.authentication or ""
        if not mode:
            mode = "basic" if "user" in cs and "clientid" not in cs else (
                "oauth" if "clientid" in cs else ("bearer" if "token" in cs else "none"))
        ca = resolve_ca_bundle(opts.ca_bundle, base_dir)
        session: requests.Session
        auth: Callable[[dict[str, str], bool], None] | None = None
        from l2sync_dagster.providers.msauth import make_session

        session = make_session(ca)
        if mode == "none":
            refuse(cs, ("User", "Password", "Token", "ClientId", "ClientSecret"), mode)
        elif mode == "basic":
            refuse(cs, ("Token", "ClientId", "ClientSecret", "TenantId"), mode)
            if not opts.user:
                raise ConnectionStringError(f"{cls.name}: missing required key User "
                                            "(Authentication=Basic)")
            if opts.password is None:
                raise ConnectionStringError(f"{cls.name}: missing required key Password "
                                            "(Password=env:VAR)")
            session.auth = (opts.user, opts.password.reveal())
        elif mode == "bearer":
            refuse(cs, ("User", "Password", "ClientId", "ClientSecret"), mode)
            token = opts.token
            if token is None:
                raise ConnectionStringError(f"{cls.name}: missing required key Token "
                                            "(Token=env:VAR) for Authentication=Bearer")

            def bearer(headers: dict[str, str], _refresh: bool) -> None:
                headers["Authorization"] = f"Bearer {token.reveal()}"

            auth = bearer
        else:  # oauth, microsoft_modern, microsoft_modern_crm, clientcredentials
            ms = microsoft_auth(cs, opts.scope or default_scope(url), base_dir)
            session = ms.session()
            auth = bearer_auth(ms)
        return cls(url, session=session, auth=auth, key=opts.key, modified=opts.modified,
                   **kwargs)

    # --- metadata and entity -----------------------------------------------------------------
    def metadata(self) -> Metadata:
        """The service's ``$metadata`` (read once)."""
        if self._metadata is None:
            resp = self.client.check(
                self.client.send("GET", self._metadata_link(),
                                 headers={"Accept": "application/xml"}), "read $metadata")
            try:
                self._metadata = parse_metadata(resp.content)
            except MetadataError as exc:
                raise ProviderError(f"{self.name}: {self.service_root}/$metadata: {exc}"
                                    ) from None
        return self._metadata

    def _metadata_link(self) -> str:
        return "$metadata"

    def _base_fields(self, entity_set: str) -> tuple[dict[str, Field], str, str | None]:
        """(fields by frame name, key property, modified property) of an entity set."""
        md = self.metadata()
        try:
            _, et = md.entity_set(entity_set)
        except MetadataError as exc:
            raise ProviderError(f"{self.name}: {exc}; check URL=") from None
        fields: dict[str, Field] = {}
        for p in et.properties.values():
            if p.ftype == "json":
                continue
            fields[p.name] = Field(p.name, p.name, p.ftype, p.computed, p.nullable)
        key = self.key_name or (et.key[0] if len(et.key) == 1 else None)
        if key is None:
            raise ProviderError(f"{self.name}: entity set {entity_set} has a composite key "
                                f"({', '.join(et.key)}); name one unique property in Key=")
        key_field = find_field(fields, key)
        if key_field is None:
            raise ProviderError(f"{self.name}: Key={key} is not a property of {entity_set}")
        return fields, key_field.name, self.modified_name

    def entity(self, query: Query) -> Entity:
        """The resolved entity of ``query`` (cached)."""
        with self._lock:
            ent = self._entities.get(query)
        if ent is not None:
            return ent
        fields, key_name, modified = self._base_fields(self.entity_set)
        key_name = query.key or key_name
        kf = find_field(fields, key_name)
        if kf is None:
            raise ProviderError(f"{self.name}: key {key_name!r} is not a field of "
                                f"{self.entity_set}")
        kf.read_only = self.key_generation != "client"
        modified = query.modified or modified
        mf = None
        if modified:
            mf = find_field(fields, modified)
            if mf is None:
                raise ProviderError(f"{self.name}: modified field {modified!r} is not a field "
                                    f"of {self.entity_set}")
        types = {f.prop: f.ftype for f in fields.values() if f.annotation is None}
        aliases = {f.name: f.prop for f in fields.values() if f.name != f.prop}
        try:
            q = translate(query.text, FieldResolver(types, aliases))
        except QueryError as exc:
            self._check_entity_set(query.text)
            raise ProviderError(f"{self.name}: query: {exc}") from None
        self._check_entity_set(query.text)
        props = list(q.select)
        if props:
            chosen = {n: f for n, f in fields.items() if f.prop in props or f is kf}
            for extra in (kf, mf):
                if extra is not None and extra.prop not in props:
                    props.append(extra.prop)
            fields = chosen
        ent = Entity(self.entity_set, kf, fields, q, mf, props)
        scope, restriction = query_scope(query.text, q)
        ent.description = EntityDescription(
            fields=tuple(FieldInfo(f.name, f.engine_type, True, f.read_only, f.nullable)
                         for f in fields.values()),
            key=kf.name, key_generated=self.key_generation != "client",
            writable=True, modified=mf.name if mf else None, scope=scope,
            restriction=restriction)
        with self._lock:
            self._entities[query] = ent
        return ent

    def _check_entity_set(self, text: str | None) -> None:
        """The query's FROM must name the URL's entity set."""
        try:
            q = translate(text)
        except QueryError:
            return
        if q.entity_set and q.entity_set.lower() != self.entity_set.lower():
            raise ProviderError(f"{self.name}: the query reads {q.entity_set!r} but URL= names "
                                f"the entity set {self.entity_set!r}; make them the same")

    # --- contract ----------------------------------------------------------------------------
    def verify(self, query: Query) -> str:
        """Read ``$metadata`` and one record: proves credentials, URL and query."""
        ent = self.entity(query)
        q = ent.query
        link = self._collection_link(ent, q.and_filter(None), top=1)
        self.client.get_json(link, f"read {ent.entity_set}", self._read_headers(False, 1))
        return f"{self.name}: {self.service_root} entity set {ent.entity_set} is readable"

    def describe(self, query: Query) -> EntityDescription:
        """Fields from ``$metadata``: types, read-only (computed) fields and the key; the read
        scope is ``limited`` for ``TOP``/``LIMIT``/``$top``/``$skip``, ``filtered`` for
        ``WHERE``/``$filter``/``$search``, else ``all`` (no connection-string key restricts a
        read)."""
        ent = self.entity(query)
        assert ent.description is not None
        return ent.description

    def max_batch_size(self) -> int:
        """Changes per ``apply`` call: enough for every batch in flight to be full."""
        return self.batch_size * self.concurrency

    def close(self) -> None:
        """Close the HTTP session."""
        self.client.session.close()

    def stats(self) -> dict[str, Any]:
        """Requests sent and seconds waited for throttling (for run metadata)."""
        out = self.client.stats()
        out.update(self.notes)
        return out

    # --- reading -----------------------------------------------------------------------------
    def _read_headers(self, track: bool, page_size: int | None = None) -> dict[str, str]:
        prefer = [f"odata.maxpagesize={page_size or self.page_size}"]
        if track:
            prefer.append("odata.track-changes")
        return {"Prefer": ",".join(prefer)}

    def _collection_link(self, ent: Entity, q: ODataQuery, *, top: int | None = None,
                         select: Sequence[str] | None = None) -> str:
        props = list(select) if select is not None else ent.props
        q2 = ODataQuery(select=tuple(props), filter=q.filter,
                        top=top if top is not None else q.top, orderby=q.orderby,
                        expand=q.expand, extra=q.extra)
        qs = q2.query_string()
        return f"{quote(ent.entity_set)}{'?' + qs if qs else ''}"

    def _window_filter(self, ent: Entity, query: Query, window: tuple[Any, Any] | None
                       ) -> str | None:
        if window is None:
            return None
        name = query.window_field or (ent.modified.name if ent.modified else None)
        if not name:
            raise ProviderError(f"{self.name}: a window read needs a window field")
        f = ent.field_of(name)
        if f is None or f.annotation is not None:
            raise ProviderError(f"{self.name}: window field {name!r} is not a field of "
                                f"{ent.entity_set}")
        start, end = window
        try:
            parts = []
            if start is not None:
                parts.append(f"{f.prop} ge {literal(start, f.ftype)}")
            if end is not None:
                parts.append(f"{f.prop} lt {literal(end, f.ftype)}")
        except QueryError as exc:
            raise ProviderError(f"{self.name}: window: {exc}") from None
        return " and ".join(parts) or None

    def read(self, query: Query, cursor: str | None = None,
             window: tuple[Any, Any] | None = None) -> ReadResult:
        """A complete read, or (with a watermark cursor) the records modified since then."""
        ent = self.entity(query)
        q = ent.query.and_filter(self._window_filter(ent, query, window))
        mark = watermark_of(cursor)
        if mark is not None and ent.modified is not None and q.top is None:
            mf = ent.modified
            inc = q.and_filter(f"{mf.prop} ge {literal(mark, mf.ftype)}")
            frame = self._fetch(ent, self._collection_link(ent, inc), False)[0]
            keys = self._fetch(ent, self._collection_link(ent, q, select=[ent.key.prop]),
                               False, keys_only=True)[0]
            new_mark = max_modified(frame, mark)
            return ReadResult(frame, complete=False, cursor=watermark_cursor(new_mark),
                              present_keys=keys.index)
        frame = self._fetch(ent, self._collection_link(ent, q), False)[0]
        new_mark = max_modified(frame, None) if ent.modified else None
        return ReadResult(frame, complete=True, cursor=watermark_cursor(new_mark))

    def lookup(self, query: Query, keys: Sequence[str]) -> pd.DataFrame:
        """The records among ``keys`` that exist in the entity set, whatever the query's
        filter and top: ``$filter=key eq k1 or key eq k2 ...`` in chunks of
        :data:`LOOKUP_CHUNK` keys, with the same columns as :meth:`read`. A key that is not a
        valid key value cannot exist and is not returned."""
        ent = self.entity(query)
        kf = ent.key
        literals: list[str] = []
        for k in dict.fromkeys(str(k) for k in keys):
            try:
                literals.append(literal(k, kf.ftype))
            except QueryError:
                continue
        frames = []
        for i in range(0, len(literals), LOOKUP_CHUNK):
            chunk = literals[i:i + LOOKUP_CHUNK]
            flt = " or ".join(f"{kf.prop} eq {v}" for v in chunk)
            options = [("$filter", flt)]
            if ent.props:
                options.insert(0, ("$select", ",".join(ent.props)))
            if ent.query.expand:
                options.append(("$expand", ent.query.expand))
            link = f"{quote(ent.entity_set)}?{encode_options(options)}"
            frames.append(self._fetch(ent, link, False)[0])
        if not frames:
            return self._frame(ent, [])
        return pd.concat(frames) if len(frames) > 1 else frames[0]

    def _fetch(self, ent: Entity, link: str, track: bool, *, keys_only: bool = False
               ) -> tuple[pd.DataFrame, list[str], str | None]:
        """(frame, deleted keys, delta link) of every page of ``link``."""
        rows: list[dict[str, Any]] = []
        deleted: list[str] = []
        delta = None
        for page in self.client.pages(link, f"read {ent.entity_set}",
                                      self._read_headers(track)):
            for row in page.rows:
                if is_deleted(row):
                    deleted.append(self._deleted_key(row, ent))
                else:
                    rows.append(row)
            delta = page.delta_link or delta
        return self._frame(ent, rows, keys_only), deleted, delta

    def _deleted_key(self, row: dict[str, Any], ent: Entity) -> str:
        value = row.get("id") or row.get("@id") or row.get("@odata.id") or ""
        m = KEY_IN_URL_RE.search(str(value))
        text = m.group(1) if m else str(value)
        return key_text(text.strip("'"), ent.key.ftype)

    def _frame(self, ent: Entity, rows: list[dict[str, Any]], keys_only: bool = False
               ) -> pd.DataFrame:
        """A RecordFrame from JSON rows, built column by column."""
        kf = ent.key
        keys = []
        for r in rows:
            v = r.get(kf.prop)
            if v is None:
                raise ProviderError(f"{self.name}: a record of {ent.entity_set} has no key "
                                    f"{kf.prop}")
            keys.append(key_text(v, kf.ftype))
        index = pd.Index(keys, name=KEY_INDEX, dtype=object)
        if index.has_duplicates:
            dup = index[index.duplicated()][0]
            raise ProviderError(f"{self.name}: key {dup!r} was read twice from "
                                f"{ent.entity_set}; is {kf.prop} unique?")
        if keys_only:
            return pd.DataFrame(index=index)
        data: dict[str, Any] = {}
        for name, f in ent.fields.items():
            src = f"{f.prop}@{f.annotation}" if f.annotation else f.prop
            values = [r.get(src) for r in rows]
            data[name] = json_column(values, f.ftype)
        if ent.modified is not None:
            data[MODIFIED] = pd.to_datetime(
                pd.Series([r.get(ent.modified.prop) for r in rows], dtype=object),
                utc=True, errors="coerce", format="ISO8601").array
        data[VERSION] = pd.array([r.get("@odata.etag") for r in rows], dtype=object)
        frame = pd.DataFrame(data, index=index)
        return frame

    def probe(self, query: Query, cursor: str | None = None) -> str:
        """A fingerprint of the entity: the newest record by the modified field (with the
        number of keys when there is no modified field). Deletes change it only through the
        key listing, which is read when there is no modified field."""
        ent = self.entity(query)
        if ent.modified is not None:
            mf = ent.modified
            q = ODataQuery(select=(ent.key.prop, mf.prop), filter=ent.query.filter,
                           orderby=(f"{mf.prop} desc",), top=1)
            data = self.client.get_json(f"{quote(ent.entity_set)}?{q.query_string()}",
                                        f"probe {ent.entity_set}", self._read_headers(False, 1))
            rows = data.get("value") or []
            newest = rows[0] if rows else {}
            return digest([newest.get(mf.prop), newest.get(ent.key.prop),
                            newest.get("@odata.etag")])
        keys = self._fetch(ent, self._collection_link(ent, ent.query, select=[ent.key.prop]),
                           False, keys_only=True)[0]
        return digest(sorted(keys.index))


# --- helpers ---------------------------------------------------------------------------------

#: keys per lookup request (``key eq .. or key eq ..``: about 2,500 characters for GUIDs)
LOOKUP_CHUNK = 50


def query_scope(text: str | None, q: ODataQuery) -> tuple[str, str | None]:
    """(scope, restriction) of a translated query (see :func:`read_scope`)."""
    scope, restriction = read_scope(text)
    options = dict(q.extra)
    if q.top is not None or "$skip" in options:
        parsed = "limited"
    elif q.filter or "$search" in options:
        parsed = "filtered"
    else:
        parsed = "all"
    if parsed != "all" and restriction is None:
        restriction = q.query_string()[:80]
    return parsed, restriction


