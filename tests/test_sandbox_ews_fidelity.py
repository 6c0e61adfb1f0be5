"""EWS sandbox fidelity: behaviours real Exchange has that exchangelib's own tests exercise
(bench/exchangelib_suite runs that suite)."""

import pytest
from exchangelib import Build, Version
from exchangelib.errors import ErrorInvalidOperation
from lxml import etree
from sandbox_process import SandboxProcess
from test_sandbox_ews import account, ews  # noqa: F401  (ews is a fixture)

from l2sync_dagster.sandbox.control import SandboxControl
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


def test_older_request_server_version_accepted(sandbox: SandboxProcess,
                                               ews: SandboxControl) -> None:  # noqa: F811
    """Exchange 2016 answers a request naming Exchange2010_SP2 as it is (no version retry)."""
    acc = account(sandbox, version=Version(build=Build(14, 3), api_version="Exchange2010_SP2"))
    assert acc.contacts.name == "Contacts"
    assert acc.version.api_version == "Exchange2010_SP2"
    assert ews.stats()["requests"]["GetFolder"] == 2  # root and contacts: no retry


def test_unimplemented_operation_refused_once(sandbox: SandboxProcess,
                                              ews: SandboxControl) -> None:  # noqa: F811
    """An operation the sandbox lacks is one ErrorInvalidOperation fault, not an
    ErrorInvalidRequest that makes exchangelib retry it with every older version."""
    acc = account(sandbox, "sync@sandbox.test")
    with pytest.raises(ErrorInvalidOperation, match="does not implement GetUserConfiguration"):
        acc.inbox.get_user_configuration("Sandbox.Test")
    assert ews.stats()["requests"]["GetUserConfiguration"] == 1
