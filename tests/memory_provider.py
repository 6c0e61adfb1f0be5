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

from l2sync_dagster.engine.windows import as_window, in_window
from l2sync_dagster.providers.base import (
    Change,
    EntityDescription,
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

    @classmethod
    def from_connection_string(cls, text: str, *, base_dir: Path | None = None
                               ) -> "MemoryProvider":
        """Not used: tests build instances directly."""
        raise NotImplementedError

    def verify(self, query: Query) -> str:
        """Always reachable."""
        return "memory"

    def describe(self, query: Query) -> EntityDescription:
        """Every field is a string; the key is ``key``."""
        names = ([self.key] if self.key not in self.fields else []) + self.fields
        infos = tuple(FieldInfo(n, "string", True, read_only=(n == self.key
                                                              and self.key_generated))
                      for n in names)
        return EntityDescription(infos, self.key, self.key_generated)

    def read(self, query: Query, cursor: str | None = None, window: Any = None) -> ReadResult:
        """A complete read of every record (of the window on ``query.window_field``)."""
        self.requests += 1
        if self.fail_reads:
            raise self.fail_reads.pop(0)
        frame = self._frame()
        if window is not None:
            frame = frame[in_window(frame[query.window_field], as_window(*window)).to_numpy()]
        return ReadResult(frame, complete=True)

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

    def apply(self, query: Query, changes: Sequence[Change]) -> list[Outcome]:
        """Apply changes; crash after writing when asked to."""
        self.calls += 1
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
                out.append(Outcome(c.ref, True, key))
            elif c.op == "update":
                if c.key not in self.rows:
                    out.append(Outcome(c.ref, False, error="not found"))
                    continue
                self.rows[c.key].update({k: v for k, v in c.values.items() if k != self.key})
                out.append(Outcome(c.ref, True, c.key))
            else:
                self.rows.pop(c.key, None)
                out.append(Outcome(c.ref, True, c.key))
        if self.crash_after_calls is not None and self.calls >= self.crash_after_calls:
            self.crash_after_calls = None
            raise Crash(f"simulated crash after apply call {self.calls}")
        return out

    def max_batch_size(self) -> int:
        """Small batches so that crashes can fall between them."""
        return self.batch

    def close(self) -> None:
        """Nothing to release."""
