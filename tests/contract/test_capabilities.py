"""Every provider declares the optional capabilities it has (``capabilities``), the declaration
matches its methods, and the runner's questions (``can_lookup``...) read the declaration."""

import sys
from pathlib import Path

import pytest

from l2sync_dagster.providers.base import (
    CAPABILITIES,
    can_find_stamps,
    can_link,
    can_lookup,
    can_probe,
    capabilities_of,
    declared_capabilities,
    provider_stats,
    web_link_of,
)
from l2sync_dagster.providers.registry import available_providers

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from memory_provider import MemoryProvider  # noqa: E402

CLASSES = {name: ep.load() for name, ep in sorted(available_providers().items())}
CLASSES["memory (tests)"] = MemoryProvider


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_declared_capabilities_match_the_methods(name: str) -> None:
    cls = CLASSES[name]
    declared = declared_capabilities(cls)
    assert declared is not None, f"{name}: declare `capabilities`"
    assert declared <= set(CAPABILITIES), f"{name}: unknown {declared - set(CAPABILITIES)}"
    has = {n for n in CAPABILITIES if callable(getattr(cls, n, None))}
    assert declared == has, (
        f"{name}: declares {sorted(declared)} but has the methods of {sorted(has)}")
    required = ("from_connection_string", "verify", "describe", "read", "apply",
                "max_batch_size")
    assert all(callable(getattr(cls, m, None)) for m in required)


class _Undeclared:
    """A provider written before the declaration: its methods say what it can do."""

    name = "undeclared"

    def lookup(self, query, keys):  # noqa: ANN001, ANN201
        return None

    def web_link(self, key: str) -> str:
        return f"http://127.0.0.1/{key}"


class _DeclaresLess(_Undeclared):
    """Has the methods, but declares only ``lookup``: the runner must not use ``web_link``."""

    capabilities = frozenset({"lookup"})

    def stats(self) -> dict[str, float]:
        return {"requests": 1}


def test_the_runner_reads_the_declaration() -> None:
    p = _DeclaresLess()
    assert capabilities_of(p) == {"lookup"}
    assert can_lookup(p) and not can_link(p) and not can_probe(p) and not can_find_stamps(p)
    assert web_link_of(p, "1") is None and provider_stats(p) is None


def test_a_declared_capability_without_its_method_is_not_had() -> None:
    class Broken:
        capabilities = frozenset({"lookup", "probe"})

        def lookup(self, query, keys):  # noqa: ANN001, ANN201
            return None

    assert capabilities_of(Broken()) == {"lookup"}


def test_a_provider_without_a_declaration_has_what_its_methods_offer() -> None:
    p = _Undeclared()
    assert capabilities_of(p) == {"lookup", "web_link"}
    assert web_link_of(p, "7") == "http://127.0.0.1/7"
