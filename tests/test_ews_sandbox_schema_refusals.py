"""Requests of exchangelib 5.6.0 that Microsoft's EWS schema refuses, refused by the sandbox as
Exchange refuses them (ErrorSchemaValidation), while the schema's own form of the same request
passes validation. These are the suite's client bugs (bench/exchangelib_suite/unsupported.py):
the sandbox must not accept them.
"""

import pytest
import requests
from exchangelib import Folder
from exchangelib.errors import ErrorSchemaValidation
from exchangelib.properties import Permission, PermissionSet, UserId
from sandbox_process import SandboxProcess
from test_sandbox_ews import account, endpoint, ews  # noqa: F401  (ews is a fixture)

from l2sync_dagster.sandbox.control import SandboxControl

pytestmark = pytest.mark.usefixtures("ews_schema")

NS = ('xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
      'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
      'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"')


def _post(sandbox: SandboxProcess, body: str) -> requests.Response:
    envelope = (f'<s:Envelope {NS}><s:Header><t:RequestServerVersion Version="Exchange2016"/>'
                f'</s:Header><s:Body>{body}</s:Body></s:Envelope>')
    return requests.post(endpoint(sandbox), data=envelope.encode(),
                         auth=("sync@sandbox.test", "sandbox"),
                         headers={"Content-Type": "text/xml; charset=utf-8"}, timeout=30)


def test_findpeople_with_traversal_is_schema_invalid(sandbox: SandboxProcess,
                                                     ews: SandboxControl) -> None:  # noqa: F811
    """FindPeopleType has no attributes (MS-OXWSPERS): exchangelib's Traversal is refused."""
    acc = account(sandbox, "sync@sandbox.test")
    with pytest.raises(ErrorSchemaValidation, match="FindPeople', attribute 'Traversal'"):
        list(acc.contacts.people())
    body = ('<m:FindPeople{}><m:IndexedPageItemView MaxEntriesReturned="10" Offset="0" '
            'BasePoint="Beginning"/><m:ParentFolderId><t:DistinguishedFolderId Id="directory"/>'
            '</m:ParentFolderId><m:QueryString>a</m:QueryString></m:FindPeople>')
    refused = _post(sandbox, body.format(' Traversal="Shallow"'))
    assert refused.status_code == 500 and b"ErrorSchemaValidation" in refused.content
    answered = _post(sandbox, body.format(""))
    assert answered.status_code == 200 and b'ResponseClass="Success"' in answered.content


def test_permission_in_exchangelibs_order_is_schema_invalid(
        sandbox: SandboxProcess, ews: SandboxControl) -> None:  # noqa: F811
    """BasePermissionType starts with UserId (MS-OXWSFOLD): exchangelib writes it after the
    flags (and CanCreateSubfolders, CalendarPermissionLevel), which is refused; the schema's
    form gets past validation to the sandbox's own answer (it does not set permissions)."""
    acc = account(sandbox, "sync@sandbox.test")
    f = Folder(parent=acc.inbox, name="Permissions").save()
    f.permission_set = PermissionSet(permissions=[
        Permission(user_id=UserId(primary_smtp_address="sync@sandbox.test"))])
    with pytest.raises(ErrorSchemaValidation, match="CanCreateItems': This element is not "
                                                    "expected"):
        f.save(update_fields=["permission_set"])
    flags = "".join(f"<t:{name}>false</t:{name}>" for name in (
        "CanCreateItems", "CanCreateSubFolders", "IsFolderOwner", "IsFolderVisible",
        "IsFolderContact"))
    permission = ("<t:UserId><t:PrimarySmtpAddress>sync@sandbox.test</t:PrimarySmtpAddress>"
                  f"</t:UserId>{flags}<t:EditItems>None</t:EditItems>"
                  "<t:DeleteItems>None</t:DeleteItems><t:ReadItems>None</t:ReadItems>"
                  "<t:PermissionLevel>None</t:PermissionLevel>")
    body = (f'<m:UpdateFolder><m:FolderChanges><t:FolderChange><t:FolderId Id="{f.id}" '
            f'ChangeKey="{f.changekey}"/><t:Updates><t:SetFolderField>'
            '<t:FieldURI FieldURI="folder:PermissionSet"/><t:Folder><t:PermissionSet>'
            f'<t:Permissions><t:Permission>{permission}</t:Permission></t:Permissions>'
            '</t:PermissionSet></t:Folder></t:SetFolderField></t:Updates></t:FolderChange>'
            '</m:FolderChanges></m:UpdateFolder>')
    answered = _post(sandbox, body)
    assert answered.status_code == 200, answered.content[:500]
    assert b"ErrorInvalidPropertySet" in answered.content
