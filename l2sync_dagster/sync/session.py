"""A connection opened for runs: its providers (opened on first use, errors located in the
file), their descriptions, the mapping resolved against them (with the checks that refuse what
cannot be synced safely), the policy, probes for sensors, and the lock and run record.
Runs (``runner.Sync``), sensors and the command line all start from a session."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from l2sync_dagster.contract import Window, as_window
from l2sync_dagster.engine.mapping import FieldMapping, MappingError, resolve_for_spec
from l2sync_dagster.engine.plan import Side, other
from l2sync_dagster.engine.policy import SyncPolicy
from l2sync_dagster.providers.base import (
    EntityDescription,
    EntityMissing,
    Provider,
    ProviderError,
    Query,
    can_create_entity,
    can_link,
    can_probe,
    provider_stats,
    web_link_of,
)
from l2sync_dagster.spec.errors import LocatedError, error_subject
from l2sync_dagster.spec.model import ConnectionSpec
from l2sync_dagster.state.store import StateStore, default_state_url
from l2sync_dagster.sync.report import SIDES, SyncAborted
from l2sync_dagster.sync.shared_reads import SharedReads

Progress = Callable[[str, int, int], None]


class Session:
    """One connection's providers, descriptions, mapping and policy."""

    def __init__(self, spec: ConnectionSpec, store: StateStore | None = None, *,
                 progress: Progress | None = None, window: tuple[Any, Any] | None = None,
                 windows: list[tuple[Any, Any]] | None = None,
                 shared: SharedReads | None = None) -> None:
        """``window`` = (start, end): sync only that time window of a partitioned connection;
        ``windows`` = the partitions it covers (recorded as seen; default: ``[window]``);
        ``shared``: the reads shared by the runs of one ``for_each`` connection's values."""
        self.spec = spec
        self.shared = shared
        self._store = store
        self.progress = progress or (lambda stage, done, total: None)
        self._providers: dict[Side, Provider] = {}
        self._descriptions: dict[Side, EntityDescription] = {}
        self._mapping: FieldMapping | None = None
        #: sides whose entity (a folder) a read found missing, to create before the first
        #: write: side -> what (see ``Sync._missing``)
        self.to_create: dict[Side, str] = {}
        if window is not None and spec.partitions is None:
            raise ValueError(f"{spec.display_path}: a window needs `partitions:` in the file")
        self.window: Window | None = as_window(*window) if window is not None else None
        self.windows: list[Window] = [as_window(*w) for w in windows] if windows else (
            [self.window] if self.window is not None else [])

    @property
    def store(self) -> StateStore:
        """The state store (the project's default, opened on first use)."""
        if self._store is None:
            self._store = StateStore(default_state_url(Path(self.spec.project_dir)))
        return self._store

    @store.setter
    def store(self, value: StateStore) -> None:
        self._store = value

    # --- providers and mapping -------------------------------------------------------------
    def entity(self, side: Side) -> Any:
        """The connection file's entity of a side."""
        return self.spec.left if side == "left" else self.spec.right

    def query(self, side: Side) -> Query:
        """The provider query of a side."""
        e = self.entity(side)
        return Query(text=e.query, key=e.key, modified=e.modified)

    def read_query(self, side: Side) -> Query:
        """The query reads use: the side's query plus its window field when partitioned."""
        q = self.query(side)
        if self.spec.partitions is None:
            return q
        return Query(text=q.text, key=q.key, modified=q.modified,
                     window_field=self.window_fields()[side])

    def window_fields(self) -> dict[Side, str]:
        """The field each side's windows slice on (``partitions.field`` and its partner)."""
        part = self.spec.partitions
        if part is None:
            raise ValueError(f"{self.spec.display_path} has no `partitions:`")
        pair = self.mapping().by_name(part.field)
        if pair is None:
            raise MappingError(
                f"partitions.field: {part.field!r} is not a mapped field; windows are judged on "
                "the value both sides agree on, so map it (mapped fields: "
                + ", ".join(self.mapping().names) + ")")
        return {"left": pair.left, "right": part.right_field or pair.right}

    def window_name(self) -> str | None:
        """The mapped (canonical) name of the window field; None when not partitioned."""
        part = self.spec.partitions
        if part is None:
            return None
        pair = self.mapping().by_name(part.field)
        return pair.name if pair is not None else None

    def stats(self) -> dict[Side, dict[str, float]]:
        """Requests made and throttling waits per side, for providers that count them."""
        out: dict[Side, dict[str, float]] = {}
        for side, p in self._providers.items():
            st = provider_stats(p)
            if st is not None:
                out[side] = st
        return out

    def web_links(self) -> dict[Side, Callable[[str], str | None]]:
        """Per side with a web UI: a function from a record's key to its link."""
        out: dict[Side, Callable[[str], str | None]] = {}
        for side, p in self._providers.items():
            if can_link(p):
                out[side] = lambda key, p=p: web_link_of(p, key)
        return out

    def provider(self, side: Side) -> Provider:
        """The open provider of a side (opened on first use). An unknown provider or a bad
        connection string is a :class:`LocatedError` naming the file, line and side."""
        if side not in self._providers:
            from l2sync_dagster.providers.registry import open_provider, provider_class

            e = self.entity(side)
            try:
                provider_class(e.provider)
            except Exception as exc:
                raise LocatedError(self.spec, f"{side}.provider", str(exc), side=side) \
                    from None
            try:
                self._providers[side] = open_provider(e.provider, e.connection_string,
                                                      Path(self.spec.project_dir))
            except Exception as exc:
                if getattr(exc, "transient", False):
                    raise  # a retry may help: keep the error as it is
                raise LocatedError(self.spec, f"{side}.connection_string", str(exc),
                                   side=side) from None
        return self._providers[side]

    def close(self) -> None:
        """Close providers (the store stays open for the caller)."""
        for p in self._providers.values():
            p.close()
        self._providers.clear()

    def describe(self, side: Side) -> EntityDescription:
        """The entity description of a side (cached); a query the system refuses is a
        :class:`LocatedError` naming the line of ``query:`` (or of the connection string)."""
        if side not in self._descriptions:
            if self.shared is not None and self.shared.covers(side):
                self._descriptions[side] = self.shared.describe(
                    side, lambda: self._describe_now(side))
            else:
                self._descriptions[side] = self._describe_now(side)
        return self._descriptions[side]

    def _describe_now(self, side: Side) -> EntityDescription:
        provider = self.provider(side)
        try:
            return provider.describe(self.query(side))
        except Exception as exc:
            if isinstance(exc, LocatedError) or getattr(exc, "transient", False):
                raise
            path = error_subject(side, str(exc), self.entity(side).query)
            raise LocatedError(self.spec, path, str(exc), side=side) from None

    def writes_to(self, side: Side) -> bool:
        """True when the connection's direction lets data flow into ``side``."""
        return self.spec.direction in ("bidirectional", f"{other(side)}_to_{side}")

    def verify(self) -> dict[Side, str]:
        """Prove both sides are reachable and the mapping resolves."""
        out = {side: self._verify_side(side) for side in SIDES}
        self.mapping()
        return out

    def _verify_side(self, side: Side) -> str:
        provider = self.provider(side)
        try:
            return provider.verify(self.query(side))
        except EntityMissing as exc:
            if not (self.writes_to(side) and can_create_entity(provider)):
                raise
            return (f"{exc.what} does not exist: the first run that writes to it creates it "
                    "(if no earlier run synced records with it)")

    def mapping(self) -> FieldMapping:
        """The mapping resolved against both sides' descriptions."""
        if self._mapping is None:
            # errors name the file, line, side and field; match_on is checked there too
            self._check_scopes()
            mapping = resolve_for_spec(self.spec, self.describe("left"), self.describe("right"))
            for side in SIDES:
                if self.writes_to(side) and not self.describe(side).writable:
                    raise MappingError(
                        f"the {side} side is read-only (a SELECT query) but the connection "
                        f"direction {self.spec.direction} writes to it")
            self._mapping = mapping
        return self._mapping

    def _check_scopes(self) -> None:
        """Refuse what a limited read (TOP n) cannot do safely: be written to (the sync could
        not see most of what it writes there, nor match new records against what it does not
        select) or be the source of a mirror (every target record outside the n would be
        removed); and, with ``for_each.on_remove: clear`` (which forgets what the sync wrote),
        a filtered side that is written to or that is the source of a mirror keeping
        out-of-scope records."""
        clears = self.spec.for_each is not None and self.spec.for_each.on_remove == "clear"
        for side in SIDES:
            d = self.describe(side)
            written = self.writes_to(side)
            if clears and written and d.scope == "filtered":
                raise MappingError(
                    f"{side}.query: {d.restriction or 'a filter'} restricts the {side} side, "
                    "which the connection writes to, and for_each.on_remove is clear: when a "
                    "mailbox rejoins, the records the sync wrote there that have since left "
                    "the filter are invisible to match_on, and would be written a second time. "
                    f"Use on_remove: keep, or remove the filter from the {side} query")
            if (clears and d.scope == "filtered" and self.spec.mirror and not written
                    and self.spec.deletes.out_of_scope == "keep"):
                raise MappingError(
                    f"{side}.query: {d.restriction or 'a filter'} restricts the source of a "
                    "mirror, and for_each.on_remove is clear: when a mailbox rejoins, the "
                    "records that have left the filter are no longer known as the sync's own "
                    "and mirror would remove them, though deletes.out_of_scope is keep. Use "
                    "on_remove: keep, or deletes.out_of_scope: delete, or mirror: false")
            if d.scope != "limited":
                continue
            what = d.restriction or "a row limit"
            if written:
                raise MappingError(
                    f"{side}.query: {what} limits what the sync reads of the {side} side, but "
                    f"the connection ({self.spec.direction}) writes to it: records it creates "
                    "or matches there beyond the limit would be invisible to it (duplicates, "
                    f"lost edits). Remove {what} from the {side} query, or make the connection "
                    f"one way from the {side} side ({side}_to_{other(side)})")
            if self.spec.mirror and self.spec.direction == f"{side}_to_{other(side)}":
                raise MappingError(
                    f"{side}.query: {what} limits the source of a mirror: mirror: true removes "
                    f"every {other(side)} record the source read does not return. Remove "
                    f"{what}, or set mirror: false")

    def policy(self, allow_mass_delete: bool = False) -> SyncPolicy:
        """The engine policy from the connection file."""
        s = self.spec
        mapping = self.mapping()
        return SyncPolicy(
            direction=s.direction, mirror=s.mirror, conflict=s.conflicts.policy,
            fallback=s.conflicts.fallback, propagate_deletes=s.deletes.propagate,
            max_delete_fraction=s.deletes.max_fraction,
            match_on=tuple(mapping.by_name(n).name for n in s.match_on),  # type: ignore[union-attr]
            allow_mass_delete=allow_mass_delete,
        )

    def probe(self, side: Side, cursor: str | None = None) -> str:
        """The side's cheapest fingerprint (``Provider.probe``), for sensors. Raises
        ``ProviderError`` when the provider cannot be probed."""
        provider = self.provider(side)
        if not can_probe(provider):
            raise ProviderError(
                f"{side} side: the {self.entity(side).provider} provider cannot be probed (it "
                "has no probe()); this connection cannot be watched by a sensor, use a schedule")
        return str(provider.probe(self.query(side), cursor))

    @contextmanager
    def locked(self, run_id: str) -> Iterator[None]:
        """Hold the connection's lock (fails fast when another run holds it)."""
        self.store.acquire_lock(self.spec.name, run_id)
        try:
            yield
        finally:
            self.store.release_lock(self.spec.name, run_id)

    @contextmanager
    def recorded_run(self, run_id: str) -> Iterator[None]:
        """Hold the lock and record the run; an unexpected error is recorded as failed."""
        with self.locked(run_id):
            self.store.start_run(self.spec.name, run_id)
            try:
                yield
            except SyncAborted:
                raise
            except Exception as exc:
                self.store.finish_run(run_id, "failed", None, str(exc)[:2000])
                raise


