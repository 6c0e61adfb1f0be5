"""The sandbox's CSDL check looks each type's inherited properties up once (cached): the
cached properties are exactly the uncached ones for every type of Microsoft's schema, callers
of ``all_properties`` get their own copy, and the check still refuses what it refused."""

from pathlib import Path

from l2sync_dagster.sandbox.graph.csdl import Csdl, load_csdl
from l2sync_dagster.sandbox.schemas import find_schema_dir


def _csdl() -> Csdl:
    folder = find_schema_dir("graph")
    assert folder is not None
    return load_csdl(Path(folder) / "graph-v1.0-csdl.xml")


def test_cached_properties_equal_the_uncached_for_every_type(graph_schema: None) -> None:
    csdl = _csdl()
    for name in csdl.types:
        assert csdl._properties(name) == csdl._collect_properties(name), name
        assert csdl._properties(name) is csdl._properties(name)
        assert csdl.all_properties(name) == csdl._collect_properties(name)


def test_all_properties_is_a_copy(graph_schema: None) -> None:
    csdl = _csdl()
    props = csdl.all_properties("contact")
    props["notAProperty"] = ("Edm.String", True)
    assert "notAProperty" not in csdl.all_properties("contact")
    assert csdl.check("contact", {"notAProperty": "x"})


def test_the_check_refuses_as_before(graph_schema: None) -> None:
    csdl = _csdl()
    good = {"givenName": "A", "emailAddresses": [{"address": "a@b.test", "name": "a"}]}
    assert csdl.check("contact", good) == []
    assert csdl.check("contact", good) == []  # the second time from the cache
    bad = {"givenName": 5, "emailAddresses": [{"adress": "a@b.test"}]}
    problems = csdl.check("contact", bad)
    assert any("givenName" in p for p in problems)
    assert any("adress" in p for p in problems)
