"""The ``odata`` provider: any OData v4 service (and the base of the ``dataverse`` provider).

Connection string::

    URL=https://services.example.com/odata/People;Authentication=Basic;User=sync;
    Password=env:ODATA_PASSWORD;Modified=LastModified

Keys:

- ``URL`` (required): the service root followed by the entity set.
- ``Authentication``: ``None`` (default), ``Basic`` (``User``, ``Password``), ``Bearer``
  (``Token=env:VAR``) or ``OAuth`` (Microsoft Entra ID client credentials or user/password:
  ``TenantId``, ``ClientId``, ``ClientSecret``/``CertificatePath`` or ``User``/``Password``,
  ``Authority``; ``Scope`` defaults to ``<scheme>://<host>/.default``). ``CABundle``: a PEM
  file of certificate authorities to trust.
- ``Key``: the key property (default: the entity type's key in ``$metadata``).
- ``Modified``: a last-modified property; incremental reads filter ``Modified ge <watermark>``
  (without it every read is a complete read).
- ``KeyGeneration``: ``server`` (default; the service makes the key of a new record) or
  ``client`` (the sync makes the key, a GUID for ``Edm.Guid`` keys, and sends it with the
  POST: an insert whose answer was lost is then recognised on the re-run).
- ``Batch``: ``auto`` (default: multipart ``$batch``, JSON ``$batch`` when the service refuses
  multipart, single requests when it has no ``$batch``), ``multipart``, ``json`` or ``none``.
- ``BatchSize`` (default 100, at most 1000), ``Concurrency`` (batches in flight, default 4),
  ``MaxPageSize`` (``Prefer: odata.maxpagesize``, default 5000), ``Timeout`` (seconds per
  HTTP request, default 120; sign-in included).

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
import re
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import pandas as pd
import requests

from l2sync_dagster.providers.base import (
    KEY_INDEX,
    MODIFIED,
    VERSION,
    Change,
    CreatedCallback,
    EntityDescription,
    FieldInfo,
    Outcome,
    ProviderError,
    Query,
    ReadResult,
)
from l2sync_dagster.providers.odata.batch import BatchItem, BatchReply
from l2sync_dagster.providers.odata.client import ODataClient, ODataHTTPError, error_text
from l2sync_dagster.providers.odata.metadata import Metadata, MetadataError, parse_metadata
from l2sync_dagster.providers.odata.options import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CONCURRENCY,
    DEFAULT_PAGE_SIZE,
    bearer_auth,
    ca_bundle,
    check_url,
    common_options,
    default_scope,
    microsoft_auth,
    refuse,
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
    is_null,
    json_column,
    json_key,
    json_value,
    key_text,
    max_modified,
    url_key,
    watermark_cursor,
    watermark_of,
)
from l2sync_dagster.spec.connection_string import ConnectionString, ConnectionStringError

log = logging.getLogger("l2sync.providers.odata")

_KEY_IN_URL_RE = re.compile(r"\(([^()]*)\)\s*$")


@dataclass
class Field:
    """One column of the RecordFrame and where it comes from.

    ``prop`` is the service property read; ``annotation`` reads ``prop@annotation`` instead
    (a formatted value); ``nav``/``target_set`` bind a lookup on write.
    """

    name: str
    prop: str
    ftype: str
    read_only: bool = False
    nullable: bool = True
    annotation: str | None = None
    nav: str | None = None
    target_set: str | None = None

    @property
    def engine_type(self) -> str:
        """The type the engine sees (a GUID is a string)."""
        return "string" if self.ftype == "guid" else self.ftype


@dataclass
class Entity:
    """A resolved query: the entity set, its fields, the translated options."""

    entity_set: str
    key: Field
    fields: dict[str, Field]
    query: ODataQuery
    modified: Field | None = None
    props: list[str] = field(default_factory=list)
    description: EntityDescription | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def field_of(self, name: str) -> Field | None:
        """A field by frame name, exact first, then case-insensitively."""
        f = self.fields.get(name)
        if f is not None:
            return f
        low = name.lower()
        return next((f for n, f in self.fields.items() if n.lower() == low), None)


class ODataProvider:
    """Reads and writes one entity set of an OData v4 service."""

    name: ClassVar[str] = "odata"
    KEYS: ClassVar[tuple[str, ...]] = (
        "URL", "Authentication", "User", "Password", "Token", "TenantId", "ClientId",
        "ClientSecret", "CertificatePath", "CertificateThumbprint", "Authority", "Scope",
        "CABundle", "Key", "Modified", "KeyGeneration", "Batch", "BatchSize", "Concurrency",
        "MaxPageSize", "Timeout",
    )

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
        batch_size: int = DEFAULT_BATCH_SIZE,
        concurrency: int = DEFAULT_CONCURRENCY,
        page_size: int = DEFAULT_PAGE_SIZE,
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
        cs.check_keys(cls.KEYS, required=("URL",))
        url = check_url(cs.require("URL"), cls.name)
        mode = (cs.get("Authentication") or "").strip().lower()
        if not mode:
            mode = "basic" if "user" in cs and "clientid" not in cs else (
                "oauth" if "clientid" in cs else ("bearer" if "token" in cs else "none"))
        ca = ca_bundle(cs.get("CABundle"), base_dir)
        session: requests.Session
        auth: Callable[[dict[str, str], bool], None] | None = None
        from l2sync_dagster.providers.msauth import make_session

        session = make_session(ca)
        if mode == "none":
            refuse(cs, ("User", "Password", "Token", "ClientId", "ClientSecret"), mode)
        elif mode == "basic":
            refuse(cs, ("Token", "ClientId", "ClientSecret", "TenantId"), mode)
            user = cs.get("User")
            password = cs.secret("Password")
            if not user:
                raise ConnectionStringError(f"{cls.name}: missing required key User "
                                            "(Authentication=Basic)")
            if password is None:
                raise ConnectionStringError(f"{cls.name}: missing required key Password "
                                            "(Password=env:VAR)")
            session.auth = (user, password.reveal())
        elif mode == "bearer":
            refuse(cs, ("User", "Password", "ClientId", "ClientSecret"), mode)
            token = cs.secret("Token")
            if token is None:
                raise ConnectionStringError(f"{cls.name}: missing required key Token "
                                            "(Token=env:VAR) for Authentication=Bearer")

            def bearer(headers: dict[str, str], _refresh: bool) -> None:
                headers["Authorization"] = f"Bearer {token.reveal()}"

            auth = bearer
        elif mode in ("oauth", "microsoft_modern", "microsoft_modern_crm", "clientcredentials"):
            scope = cs.get("Scope") or default_scope(url)
            ms = microsoft_auth(cs, scope, base_dir, oauth_alias=mode == "oauth")
            session = ms.session()
            auth = bearer_auth(ms)
        else:
            raise ConnectionStringError(
                f"{cls.name}: Authentication={cs.get('Authentication')} is not supported; use "
                "None, Basic, Bearer or OAuth")
        return cls(url, session=session, auth=auth, **common_options(cs, cls.name))

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
        m = _KEY_IN_URL_RE.search(str(value))
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

    # --- writing -----------------------------------------------------------------------------
    def apply(self, query: Query, changes: Sequence[Change], *,
              created: CreatedCallback | None = None) -> list[Outcome]:
        """Write in batches (several in flight); one outcome per change, in order.

        ``created`` is called (in the calling thread) with the successful inserts of each batch
        as soon as its answer is read. If it raises, the batches still in flight are awaited,
        the records they and the failed call created are deleted again (best effort: they
        were never recorded) and the exception propagates."""
        ent = self.entity(query)
        prepared: list[tuple[Change, BatchItem | Outcome, str | None]] = []
        for ch in changes:
            try:
                item, key = self._item(ent, ch)
                prepared.append((ch, item, key))
            except (ProviderError, QueryError, ValueError, TypeError) as exc:
                prepared.append((ch, Outcome(ch.ref, False, ch.key, None, str(exc)), ch.key))
        todo = [(i, p) for i, p in enumerate(prepared) if isinstance(p[1], BatchItem)]
        outcomes: list[Outcome | None] = [p[1] if isinstance(p[1], Outcome) else None
                                          for p in prepared]
        chunks = [todo[i:i + self.batch_size] for i in range(0, len(todo), self.batch_size)]
        Chunk = list[tuple[int, tuple[Change, Any, str | None]]]

        def run(chunk: Chunk) -> list[tuple[int, Outcome]]:
            items = [p[1] for _, p in chunk]
            replies = self._send_items(items)
            return [(i, self._outcome(ent, ch, key, reply))
                    for (i, (ch, _item, key)), reply in zip(chunk, replies, strict=True)]

        def settle(done: list[tuple[int, Outcome]]) -> None:
            for i, out in done:
                outcomes[i] = out
            if created is not None:
                new = [out for i, out in done if out.ok and prepared[i][0].op == "insert"]
                if new:
                    try:
                        created(new)
                    except BaseException:
                        self._undo_inserts(ent, new)
                        raise

        if chunks and self.batch_format == "auto" and "batch_format" not in self.notes:
            settle(run(chunks.pop(0)))  # learn which $batch format the service takes, once
        if len(chunks) <= 1 or self.concurrency <= 1:
            for c in chunks:
                settle(run(c))
        else:
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(chunks))) as pool:
                futures = [pool.submit(run, c) for c in chunks]
                first_error: BaseException | None = None
                for fut in futures:
                    # in submission order, in this thread: the callback never runs concurrently
                    try:
                        done = fut.result()
                    except BaseException as exc:  # a lost connection: settle the others first
                        first_error = first_error or exc
                        continue
                    if first_error is not None and isinstance(first_error, _CallbackFailed):
                        self._undo_inserts(ent, [o for i, o in done if o.ok and
                                                 prepared[i][0].op == "insert"])
                        continue
                    try:
                        settle(done)
                    except BaseException as exc:
                        for f in futures:
                            f.cancel()
                        first_error = _CallbackFailed(exc)
                if isinstance(first_error, _CallbackFailed):
                    raise first_error.cause
                if first_error is not None:
                    raise first_error
        return [o for o in outcomes if o is not None]

    def _undo_inserts(self, ent: Entity, new: Sequence[Outcome]) -> None:
        """Delete records this call created but could not record (best effort, logged)."""
        # If-Match with the version we created: a record someone changed since is kept
        items = [BatchItem("DELETE", f"{quote(ent.entity_set)}("
                           f"{url_key(o.key, ent.key.ftype)})", {"If-Match": o.version or "*"})
                 for o in new if o.key]
        if not items:
            return
        try:
            for i in range(0, len(items), self.batch_size):
                part = items[i:i + self.batch_size]
                fmt = self._batch_mode()
                replies = (self.client.batch(part, fmt, {"Prefer": "odata.continue-on-error"})
                           if fmt != "none" and len(part) > 1
                           else [self._send_one(it) for it in part])
                for it, reply in zip(part, replies, strict=True):
                    if reply.status >= 300 and reply.status != 404:
                        log.error("%s: could not delete %s again (HTTP %s); it was created "
                                  "but not recorded", self.name, it.url, reply.status)
        except ProviderError as exc:
            log.error("%s: could not delete %d created records again: %s", self.name,
                      len(items), exc)

    def _item(self, ent: Entity, ch: Change) -> tuple[BatchItem, str | None]:
        """The request for one change and the key it writes."""
        prefer = {"Prefer": "return=representation"} if self.prefer_representation else {}
        if ch.op == "insert":
            body = self._body(ent, ch.values, creating=True)
            key = None
            if self.key_generation == "client":
                key = self._client_key(ent, ch.key)
                body[ent.key.prop] = json_key(key, ent.key.ftype)
            else:
                body.pop(ent.key.prop, None)
            return BatchItem("POST", quote(ent.entity_set), dict(prefer), body), key
        if not ch.key:
            raise ProviderError(f"{ch.op} without a key")
        url = f"{quote(ent.entity_set)}({url_key(ch.key, ent.key.ftype)})"
        headers = {"If-Match": ch.version or "*"}
        if ch.op == "update":
            body = self._body(ent, ch.values, creating=False)
            body.pop(ent.key.prop, None)
            return BatchItem("PATCH", url, {**headers, **prefer}, body), ch.key
        if ch.op == "delete":
            if not ch.version:
                headers = {}
            return BatchItem("DELETE", url, headers), ch.key
        raise ProviderError(f"unknown operation {ch.op!r}")

    def _client_key(self, ent: Entity, planned: str | None) -> str:
        if ent.key.ftype == "guid":
            if planned:
                try:
                    return str(uuid.UUID(planned))
                except ValueError:
                    raise ProviderError(f"key {planned!r} is not a GUID") from None
            return str(uuid.uuid4())
        if planned is None:
            return str(uuid.uuid4()) if ent.key.ftype == "string" else ""
        return planned

    def _body(self, ent: Entity, values: dict[str, Any], *, creating: bool) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for name, value in values.items():
            f = ent.field_of(name)
            if f is None:
                raise ProviderError(f"{name!r} is not a field of {ent.entity_set}")
            if f is ent.key:
                continue
            if f.read_only or f.annotation:
                raise ProviderError(f"{f.name} is read-only in {ent.entity_set}")
            if f.nav:
                self._bind(body, f, value)
                continue
            body[f.prop] = json_value(value, f.ftype, f.name)
        return body

    def _bind(self, body: dict[str, Any], f: Field, value: Any) -> None:
        """Set a lookup through ``nav@odata.bind`` (or clear it)."""
        value = None if is_null(value) else value
        if value is None:
            body[f"{f.nav}@odata.bind"] = None
            return
        try:
            guid = str(uuid.UUID(str(value)))
        except ValueError:
            raise ProviderError(f"{f.name}: {value!r} is not a GUID") from None
        body[f"{f.nav}@odata.bind"] = f"/{f.target_set}({guid})"

    def _send_items(self, items: list[BatchItem]) -> list[BatchReply]:
        """Send requests in one ``$batch``. Multipart: as one atomic change set; if it fails,
        send them again as independent requests so that each gets its own outcome. JSON: as
        independent requests (``odata.continue-on-error``) from the start, because a server
        may answer success for a request of a failed atomicity group that it rolled back
        (SAP CAP does), and neither trusting nor re-sending such a request is safe."""
        fmt = self._batch_mode()
        if fmt != "none" and len(items) > 1:
            group = f"g{uuid.uuid4().hex[:8]}" if fmt == "multipart" else None
            grouped = [BatchItem(i.method, i.url, i.headers, i.body, group) for i in items]
            try:
                if group is None:
                    return self.client.batch(grouped, fmt, {"Prefer": "odata.continue-on-error"})
                replies = self.client.batch(grouped, fmt)
            except ODataHTTPError as exc:
                if self.batch_format == "auto" and exc.status in (400, 404, 405, 415, 501):
                    self._downgrade_batch(fmt, exc)
                    return self._send_items(items)
                raise
            failed = [n for n, r in enumerate(replies) if r.status >= 300]
            if not failed:
                return replies
            # a failed change set is rolled back and every request in it answers an error; a
            # request that still answered success was applied and is not sent again
            loose = [BatchItem(items[n].method, items[n].url, items[n].headers,
                               items[n].body, None) for n in failed]
            again = self.client.batch(loose, fmt, {"Prefer": "odata.continue-on-error"})
            for n, reply in zip(failed, again, strict=True):
                replies[n] = reply
            return replies
        return [self._send_one(i) for i in items]

    def _send_one(self, item: BatchItem) -> BatchReply:
        resp = self.client.send(item.method, item.url, headers=item.headers,
                                json_body=item.body, retry_dropped=False)
        body: Any = None
        if resp.content:
            try:
                body = resp.json()
            except ValueError:
                body = resp.text
        return BatchReply(resp.status_code, dict(resp.headers), body)

    def _batch_mode(self) -> str:
        if self.batch_format != "auto":
            return self.batch_format
        return self.notes.get("batch_format", "multipart")

    def _downgrade_batch(self, failed: str, exc: ODataHTTPError) -> None:
        nxt = "json" if failed == "multipart" and exc.status in (400, 415) else "none"
        if failed == "json":
            nxt = "none"
        log.info("%s: $batch in %s refused (HTTP %s); using %s", self.name, failed,
                 exc.status, nxt)
        self.notes["batch_format"] = nxt

    def _outcome(self, ent: Entity, ch: Change, key: str | None, reply: BatchReply) -> Outcome:
        status = reply.status
        body = reply.body if isinstance(reply.body, dict) else {}
        if status < 300:
            version = body.get("@odata.etag") or reply.header("ETag")
            if ch.op == "insert":
                new_key = body.get(ent.key.prop)
                if new_key is None:
                    loc = reply.header("OData-EntityId") or reply.header("Location") or ""
                    m = _KEY_IN_URL_RE.search(loc)
                    new_key = m.group(1).strip("'") if m else key
                if new_key is None or new_key == "":
                    return Outcome(ch.ref, False, None, None,
                                   "created, but the service returned no key (no body, no "
                                   "OData-EntityId header)")
                return Outcome(ch.ref, True, key_text(new_key, ent.key.ftype), version)
            if ch.op == "delete":
                return Outcome(ch.ref, True, ch.key, None)
            return Outcome(ch.ref, True, ch.key, version)
        code, msg = error_text(reply.body if reply.body is not None else "")
        if ch.op == "delete" and status == 404:
            return Outcome(ch.ref, True, ch.key, None)
        if ch.op == "insert" and key and self._is_duplicate(status, code, msg):
            # the record with our client-made key exists: an earlier attempt created it
            return Outcome(ch.ref, True, key_text(key, ent.key.ftype), None)
        if status == 412 and ch.op in ("update", "delete"):
            return Outcome(ch.ref, False, ch.key, None,
                           f"conflict: {ent.entity_set}({ch.key}) was changed since it was "
                           f"read (ETag mismatch, HTTP 412): {msg}")
        if status == 404 and ch.op == "update":
            return Outcome(ch.ref, False, ch.key, None,
                           f"{ent.entity_set}({ch.key}) does not exist (HTTP 404)")
        return Outcome(ch.ref, False, ch.key, None,
                       f"HTTP {status}{f' {code}' if code else ''}: {msg}")

    def _is_duplicate(self, status: int, code: str | None, msg: str) -> bool:
        low = msg.lower()
        return status in (409, 412) and ("already exists" in low or "duplicate" in low)


# --- helpers ---------------------------------------------------------------------------------

#: keys per lookup request (``key eq .. or key eq ..``: about 2,500 characters for GUIDs)
LOOKUP_CHUNK = 50


class _CallbackFailed(Exception):
    """The ``created`` callback raised ``cause`` (kept apart from a failed request)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


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


def find_field(fields: dict[str, Field], name: str) -> Field | None:
    if name in fields:
        return fields[name]
    low = name.lower()
    for f in fields.values():
        if f.name.lower() == low or f.prop.lower() == low:
            return f
    return None
