"""EWS sandbox fidelity: behaviours real Exchange has that exchangelib's own tests exercise."""

from lxml import etree

from l2sync_dagster.sandbox.ews.fields import Path
from l2sync_dagster.sandbox.ews.soap import T
from l2sync_dagster.sandbox.ews.views import matches


def _is_equal_to(field: str, constant: str) -> etree._Element:
    return etree.fromstring(
        f'<t:IsEqualTo xmlns:t="{T}"><t:FieldURI FieldURI="{field}"/>'
        f'<t:FieldURIOrConstant><t:Constant Value="{constant}"/></t:FieldURIOrConstant>'
        "</t:IsEqualTo>")


def test_boolean_restriction_accepts_1_and_0() -> None:
    """xs:boolean allows 1/0 (exchangelib sends them): they match stored true/false."""
    values = {"IsRecurring": "true", "IsRead": "false"}

    def get(path: Path) -> str | None:
        return values.get(path.name)

    assert matches(_is_equal_to("item:IsRecurring", "1"), get)
    assert not matches(_is_equal_to("item:IsRecurring", "0"), get)
    assert matches(_is_equal_to("message:IsRead", "0"), get)
    assert not matches(_is_equal_to("message:IsRead", "1"), get)
    assert matches(_is_equal_to("message:IsRead", "false"), get)
