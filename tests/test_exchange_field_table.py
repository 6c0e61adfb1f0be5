"""The Exchange field table (``providers/exchange/fields.py``): every field of every item type
is bound on each backend or marked as not on it, no backend binds an undeclared field, and the
type and read-only flag of the one declaration drive both backends' conversion."""

import datetime as dt

import pytest

from l2sync_dagster.providers.exchange.ews_values import ACCESSORS, EWS_KINDS, MODELS
from l2sync_dagster.providers.exchange.fields import (
    BACKENDS,
    BY_BACKEND,
    ITEM_TYPES,
    Binding,
    NotOnBackend,
)
from l2sync_dagster.providers.exchange.graph_fields import (
    GRAPH_FIELDS,
    GRAPH_KINDS,
    GRAPH_NO_API,
    GRAPH_UNAVAILABLE,
)

KINDS = {"ews": EWS_KINDS, "graph": GRAPH_KINDS}
BUILT = {"ews": ACCESSORS, "graph": GRAPH_FIELDS}
SAMPLES = {"string": "Text", "integer": 3, "float": 2.5, "boolean": True,
           "date": dt.date(2026, 1, 2), "datetime": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
           "json": '["a","b"]'}


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_field_is_bound_or_marked_not_on_the_backend(backend: str) -> None:
    for name, itype in ITEM_TYPES.items():
        if backend in itype.no_api:
            assert all(f.binding(backend) is None for f in itype.fields), name
            assert name not in BUILT[backend]
            continue
        unbound = [f.name for f in itype.fields
                   if not isinstance(f.binding(backend), Binding | NotOnBackend)]
        assert not unbound, f"{name} fields with no {backend} binding nor NotOnBackend: {unbound}"
        for f in itype.fields:
            b = f.binding(backend)
            if isinstance(b, NotOnBackend):
                assert b.reason.strip(), (name, f.name)
            elif b != BY_BACKEND:
                assert b.kind in KINDS[backend], (name, f.name, b.kind)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_binding_for_an_undeclared_field(backend: str) -> None:
    for name, built in BUILT[backend].items():
        itype = ITEM_TYPES[name]
        assert set(built) <= set(itype.names()), (name, set(built) - set(itype.names()))
        expected = {n for n, b in itype.bound(backend).items() if b != BY_BACKEND}
        assert set(built) == expected, name
    assert set(GRAPH_UNAVAILABLE) <= set(GRAPH_FIELDS)
    for name, missing in GRAPH_UNAVAILABLE.items():
        assert set(missing) <= set(ITEM_TYPES[name].names()), name
        assert not set(missing) & set(GRAPH_FIELDS[name]), name
    assert set(GRAPH_NO_API) == {n for n, t in ITEM_TYPES.items() if "graph" in t.no_api}


def test_read_only_comes_from_the_declaration() -> None:
    for name, itype in ITEM_TYPES.items():
        for f in itype.fields:
            acc = ACCESSORS.get(name, {}).get(f.name)
            if acc is not None:
                assert (acc.assign is None) == f.read_only, (name, f.name)
            spec = GRAPH_FIELDS.get(name, {}).get(f.name)
            if spec is not None and f.read_only:
                assert spec.write is None, (name, f.name)


def _sample(choices: tuple[str, ...], type_: str) -> object:
    return choices[0] if choices else SAMPLES[type_]


def test_the_declared_type_drives_both_backends_conversion() -> None:
    """A writable plain attribute / property reads back what was written, as its type."""
    checked = 0
    for name, itype in ITEM_TYPES.items():
        for f in itype.fields:
            if f.read_only:
                continue
            value = _sample(f.choices, f.type)
            if isinstance(f.ews, Binding) and f.ews.kind == "attr":
                item = MODELS[name]()
                acc = ACCESSORS[name][f.name]
                acc.assign(item, value)  # type: ignore[misc]
                assert acc.read(item) == value, (name, f.name)
                checked += 1
            spec = GRAPH_FIELDS.get(name, {}).get(f.name)
            if isinstance(f.graph, Binding) and f.graph.kind == "prop" and spec is not None:
                body: dict[str, object] = {}
                spec.write(body, value, {})  # type: ignore[misc]
                assert spec.read(body) == value, (name, f.name)
                checked += 1
    assert checked > 50
