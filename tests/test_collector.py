"""The collector's thresholds during runs (sync/collector.py)."""

import gc
import tempfile
import threading
from pathlib import Path

from memory_provider import MemoryProvider

from l2sync_dagster.spec.model import ConnectionSpec, EntitySpec, MappingSpec
from l2sync_dagster.state.store import StateStore
from l2sync_dagster.sync import collector
from l2sync_dagster.sync.runner import Sync


def test_thresholds_are_raised_inside_and_restored_by_the_last_run_to_leave() -> None:
    before = gc.get_threshold()
    inside = threading.Event()
    leave = threading.Event()

    def other_run() -> None:
        with collector.relaxed():
            inside.set()
            leave.wait(5)

    t = threading.Thread(target=other_run)
    t.start()
    inside.wait(5)
    with collector.relaxed():
        assert gc.get_threshold() == collector.RUN_THRESHOLDS
    assert gc.get_threshold() == collector.RUN_THRESHOLDS  # the other run is still going
    leave.set()
    t.join()
    assert gc.get_threshold() == before


class Watching(MemoryProvider):
    """Notes the collector's thresholds while the run reads and writes it."""

    seen: list[tuple[int, int, int]]

    def read(self, *a, **kw):  # noqa: ANN002, ANN003, ANN201
        self.seen.append(gc.get_threshold())
        return super().read(*a, **kw)

    def apply(self, *a, **kw):  # noqa: ANN002, ANN003, ANN201
        self.seen.append(gc.get_threshold())
        return super().apply(*a, **kw)


def test_a_run_reads_plans_and_writes_with_the_raised_thresholds() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="l2sync-gc-"))
    spec = ConnectionSpec(
        name="gc", path=tmp / "connections" / "gc.yaml", project_dir=tmp,
        direction="left_to_right",
        left=EntitySpec(provider="memory", connection_string="N=l", key="id"),
        right=EntitySpec(provider="memory", connection_string="N=r", key="id"),
        mapping=MappingSpec(auto=False, fields=[{"left": "name", "right": "name"}]))
    providers = {s: Watching(["name"]) for s in ("left", "right")}
    for p in providers.values():
        p.seen = []
    providers["left"].user_insert({"name": "Ada"})
    sync = Sync(spec, StateStore(f"sqlite:///{tmp / 'state.db'}"))
    sync._providers = dict(providers)
    before = gc.get_threshold()
    assert sync.run().counts()["right"]["inserted"] == 1
    seen = providers["left"].seen + providers["right"].seen
    assert seen and all(t == collector.RUN_THRESHOLDS for t in seen)
    assert gc.get_threshold() == before
