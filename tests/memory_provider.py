"""An in-memory system for the engine's property tests: records in a dict, with crash injection.

It implements the provider contract exactly (RecordFrame, per-record outcomes) so that the real
runner, engine and state store can be driven through thousands of random edit sequences fast.
"""

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from l2sync_dagster.contract import as_window, in_window
from l2sync_dagster.providers.base import (
    Capability,
    Change,
    EntityDescription,
    EntityMissing,
    FieldInfo,
    Outcome,
    ProviderError,
    Query,
    ReadResult,
)


class Crash(RuntimeError):
    """Simulates the process dying in the middle of a run."""


class MemoryProvider:
    """A system holding records in memory. ``crash_after_calls`` makes the N-th apply call
    write its batch and then die before the runner can record the outcome."""

    name: ClassVar[str] = "memory"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {"lookup", "find_stamps", "probe", "stats", "web_link", "close"})

    def __init__(self, fields: Sequence[str], key: str = "id", key_generated: bool = False,
                 batch_size: int = 2) -> None:
        self.fields = list(fields)
        self.key = key
        self.key_generated = key_generated
        self.batch = batch_size
        self.rows: dict[str, dict[str, Any]] = {}
        self.calls = 0
        self.crash_after_calls: int | None = None
        #: errors the next read/probe calls raise, one per call (then they succeed)
        self.fail_reads: list[ProviderError] = []
        self.requests = 0
        self._next = 1
        #: a change feed like EWS SyncFolderItems: reads with a cursor return what changed since,
        #: and report deletes only of records that existed when the cursor was taken
        self.feed = False
        self.seq = 0
        self.changed_at: dict[str, int] = {}
        self.created_at: dict[str, int] = {}
        self.deleted_at: dict[str, int] = {}
        #: with the feed: an incremental read reports no deletes but lists every key in scope
        #: (``present_keys``), as the sql provider's watermark reads do
        self.lists_keys = False
        #: stamps (Change.stamp) hidden in records, as an Exchange extended property
        self.stamps = False
        self.stamp_of: dict[str, str] = {}
        #: crash after the system wrote a batch, before telling the runner the new keys
        self.crash_before_created: int | None = None

    @classmethod
    def from_connection_string(cls, text: str, *, base_dir: Path | None = None
                               ) -> "MemoryProvider":
        """Not used: tests build instances directly."""
        raise NotImplementedError

    def verify(self, query: Query) -> str:
        """Always reachable."""
        return "memory"

    def describe(self, query: Query) -> EntityDescription:
        """Every field is a string; the key is ``key``. ``query.text`` may restrict the read:
        ``WHERE <field> = '<value>'`` (filtered) and/or ``TOP <n>`` (limited)."""
        names = ([self.key] if self.key not in self.fields else []) + self.fields
        infos = tuple(FieldInfo(n, "string", True, read_only=(n == self.key
                                                              and self.key_generated))
                      for n in names)
        top, where = _restriction(query.text)
        scope = "limited" if top is not None else "filtered" if where else "all"
        return EntityDescription(infos, self.key, self.key_generated, scope=scope,
                                 restriction=(query.text or None) if scope != "all" else None,
                                 stamps=self.stamps)

    def read(self, query: Query, cursor: str | None = None, window: Any = None) -> ReadResult:
        """Every record the query selects (of the window on ``query.window_field``); with the
        change feed on and a cursor, only what changed since."""
        self.requests += 1
        if self.fail_reads:
            raise self.fail_reads.pop(0)
        if getattr(self, "missing", False):  # the entity is away (a share not mounted)
            raise EntityMissing("memory: the entity does not exist", what="the memory entity")
        frame = self._selected(query)
        if window is not None:
            frame = frame[in_window(frame[query.window_field], as_window(*window)).to_numpy()]
        if self.feed and cursor is not None and window is None:
            since = int(cursor)
            changed = [k for k in frame.index if self.changed_at.get(k, 0) > since]
            deleted = [k for k, at in self.deleted_at.items()
                       if at > since and self.created_at.get(k, 0) <= since]
            # a filtered feed reports records that changed out of its filter as removed
            deleted += [k for k in self.rows if self.changed_at.get(k, 0) > since
                        and k not in frame.index]
            if self.lists_keys:
                return ReadResult(frame.loc[changed], complete=False, cursor=str(self.seq),
                                  present_keys=pd.Index(frame.index))
            return ReadResult(frame.loc[changed], complete=False, deleted=deleted,
                              cursor=str(self.seq))
        return ReadResult(frame, complete=True, cursor=str(self.seq) if self.feed else None)

    def _selected(self, query: Query) -> pd.DataFrame:
        frame = self._frame()
        top, where = _restriction(query.text)
        if where:
            f, v = where
            frame = frame[frame[f] == v]
        if top is not None:
            frame = frame.iloc[:top]
        return frame

    def user_insert(self, values: dict[str, Any]) -> str:
        """A record created by a person (not through the provider)."""
        key = f"u{self._next}"
        self._next += 1
        self.rows[key] = {f: values.get(f) for f in self.fields if f != self.key}
        self._touch(key, created=True)
        return key

    def user_update(self, key: str, values: dict[str, Any]) -> None:
        """A person edits a record."""
        self.rows[key].update(values)
        self._touch(key)

    def user_delete(self, key: str) -> None:
        """A person deletes a record."""
        self.rows.pop(key)
        self.seq += 1
        self.deleted_at[key] = self.seq

    def _touch(self, key: str, created: bool = False) -> None:
        self.seq += 1
        self.changed_at[key] = self.seq
        if created:
            self.created_at[key] = self.seq

    def find_stamps(self, query: Query, stamps: Sequence[str]) -> dict[str, str]:
        """Keys of records created with these stamps (whatever their values now)."""
        wanted = set(stamps)
        return {st: k for k, st in self.stamp_of.items() if st in wanted and k in self.rows}

    def lookup(self, query: Query, keys: Sequence[str]) -> pd.DataFrame:
        """The records among ``keys`` that exist."""
        frame = self._frame()
        return frame[frame.index.isin([str(k) for k in keys])]

    def probe(self, query: Query, cursor: str | None = None) -> str:
        """A digest of every record (the memory system has no cheaper question)."""
        self.requests += 1
        if self.fail_reads:
            raise self.fail_reads.pop(0)
        data = json.dumps(sorted((k, sorted(r.items())) for k, r in self.rows.items()),
                          default=str)
        return hashlib.sha256(data.encode()).hexdigest()

    def stats(self) -> dict[str, float]:
        """Calls made; the memory system never throttles."""
        return {"requests": self.requests, "throttle_wait_s": 0.0}

    def web_link(self, key: str) -> str:
        """A made-up link, as a system with a web UI would give."""
        return f"http://127.0.0.1/memory/{key}"

    def _frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(
            [{**r, self.key: k} for k, r in self.rows.items()],
            columns=[self.key, *[f for f in self.fields if f != self.key]],
        )
        frame.index = pd.Index([str(k) for k in self.rows], name="_key")
        return frame

    def apply(self, query: Query, changes: Sequence[Change], *,
              created: Any = None) -> list[Outcome]:
        """Apply changes; crash after writing when asked to."""
        self.calls += 1
        out = self._write(changes)
        if self.crash_before_created is not None and self.calls >= self.crash_before_created:
            self.crash_before_created = None
            raise Crash(f"simulated crash after apply call {self.calls}, before its keys")
        if created is not None:
            refs = {c.ref for c in changes if c.op == "insert"}
            created([o for o in out if o.ok and o.ref in refs])
        if self.crash_after_calls is not None and self.calls >= self.crash_after_calls:
            self.crash_after_calls = None
            raise Crash(f"simulated crash after apply call {self.calls}")
        return out

    def _write(self, changes: Sequence[Change]) -> list[Outcome]:
        out = []
        for c in changes:
            if c.op == "insert":
                key = c.key
                if key is None:
                    key = f"g{self._next}"
                    self._next += 1
                if key in self.rows:
                    out.append(Outcome(c.ref, False, error=f"duplicate key {key}"))
                    continue
                self.rows[key] = {f: c.values.get(f) for f in self.fields if f != self.key}
                if self.stamps and c.stamp:
                    self.stamp_of[key] = c.stamp
                self._touch(key, created=True)
                out.append(Outcome(c.ref, True, key))
            elif c.op == "update":
                if c.key not in self.rows:
                    out.append(Outcome(c.ref, False, error="not found"))
                    continue
                self.rows[c.key].update({k: v for k, v in c.values.items() if k != self.key})
                self._touch(c.key)
                out.append(Outcome(c.ref, True, c.key))
            else:
                if c.key in self.rows:
                    self.user_delete(c.key)
                out.append(Outcome(c.ref, True, c.key))
        return out

    def max_batch_size(self) -> int:
        """Small batches so that crashes can fall between them."""
        return self.batch

    def close(self) -> None:
        """Nothing to release."""


def _restriction(text: str | None) -> tuple[int | None, tuple[str, str] | None]:
    """(TOP n, (field, value) of WHERE field = 'value') of a memory query text."""
    import re

    if not text:
        return None, None
    top = re.search(r"TOP\s+(\d+)", text, re.I)
    where = re.search(r"WHERE\s+(\w+)\s*=\s*'([^']*)'", text, re.I)
    return (int(top.group(1)) if top else None), ((where.group(1), where.group(2))
                                                  if where else None)
