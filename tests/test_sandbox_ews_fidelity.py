"""EWS sandbox fidelity: behaviours real Exchange has that exchangelib's own tests exercise
(bench/exchangelib_suite runs that suite)."""

import pytest
from exchangelib import Build, Contact, Folder, Message, Version
from exchangelib.errors import (
    ErrorFolderExists,
    ErrorInvalidChangeKey,
    ErrorInvalidOperation,
    ErrorPropertyUpdate,
)
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


def test_string_limits(sandbox: SandboxProcess, ews: SandboxControl) -> None:  # noqa: F811
    """Exchange keeps a Subject to 255 characters (a longer one is cut) and refuses a longer
    contact name with ErrorPropertyUpdate."""
    acc = account(sandbox, "sync@sandbox.test")
    msg = Message(account=acc, folder=acc.drafts, subject="s")
    msg.save()
    Message.get_field_by_fieldname("subject").max_length = 4000
    try:
        msg.subject = "x" * 300
        msg.save(update_fields=["subject"])
        long_one = Message(account=acc, folder=acc.drafts, subject="y" * 300)
        long_one.save()
    finally:
        Message.get_field_by_fieldname("subject").max_length = 255
    assert acc.drafts.get(id=msg.id).subject == "x" * 255
    assert acc.drafts.get(id=long_one.id).subject == "y" * 255
    contact = Contact(account=acc, folder=acc.contacts, given_name="Ann", display_name="Ann")
    contact.save()
    Contact.get_field_by_fieldname("given_name").max_length = 4000
    try:
        contact.given_name = "z" * 300
        with pytest.raises(ErrorPropertyUpdate):
            contact.save(update_fields=["given_name"])
    finally:
        Contact.get_field_by_fieldname("given_name").max_length = 255


def test_malformed_change_key_refused(sandbox: SandboxProcess,
                                      ews: SandboxControl) -> None:  # noqa: F811
    acc = account(sandbox, "sync@sandbox.test")
    items = [Message(account=acc, folder=acc.drafts, subject=f"m{i}").save() for i in range(3)]
    items[1].changekey = "XXX"
    results = acc.bulk_delete(items)
    assert results[0] is True and results[2] is True
    assert isinstance(results[1], ErrorInvalidChangeKey)
    items[1].subject = "changed"
    with pytest.raises(ErrorInvalidChangeKey):
        items[1].save(update_fields=["subject"])


def test_empty_values_sort_first(sandbox: SandboxProcess,
                                 ews: SandboxControl) -> None:  # noqa: F811
    acc = account(sandbox, "sync@sandbox.test")
    acc.bulk_create(acc.drafts, [Message(account=acc, subject=s, categories=["sortme"])
                                 for s in ("b", None, "a", None)])
    qs = acc.drafts.filter(categories__contains=["sortme"])
    assert list(qs.order_by("subject").values_list("subject", flat=True)) == \
        [None, None, "a", "b"]
    assert list(qs.order_by("-subject").values_list("subject", flat=True)) == \
        ["b", "a", None, None]


def test_categories_match_any_value_ignoring_case(sandbox: SandboxProcess,
                                                  ews: SandboxControl) -> None:  # noqa: F811
    acc = account(sandbox, "sync@sandbox.test")
    Message(account=acc, folder=acc.drafts, subject="cats", categories=["TestA", "TestB"]).save()
    qs = acc.drafts.filter(subject="cats")
    assert qs.filter(categories__contains=["testa"]).count() == 1
    assert qs.filter(categories__contains=["TESTB"]).count() == 1
    assert qs.filter(categories__contains=["TestA", "TestC"]).count() == 0
    assert qs.filter(categories__in=["TestC", "TestB"]).count() == 1


def test_plain_folder_has_no_folder_class(sandbox: SandboxProcess,
                                          ews: SandboxControl) -> None:  # noqa: F811
    """A t:Folder created without FolderClass has none (exchangelib reads it back as a plain
    Folder), counts its unread items, and a second folder of the same name in other case is
    ErrorFolderExists naming it."""
    acc = account(sandbox, "sync@sandbox.test")
    f = Folder(parent=acc.inbox, name="PlainOne").save()
    f.refresh()  # ValueError if it came back as another class (Messages for IPF.Note)
    assert f.folder_class is None
    Message(account=acc, folder=f, subject="unread", is_read=False).save()
    f.refresh()
    assert (f.total_count, f.unread_count) == (1, 1)
    with pytest.raises(ErrorFolderExists, match="Could not create folder 'plainone'"):
        Folder(parent=acc.inbox, name="plainone").save()


def test_mailbox_fields_match_by_address(sandbox: SandboxProcess,
                                         ews: SandboxControl) -> None:  # noqa: F811
    """A restriction on From compares the mailbox's address."""
    from exchangelib import Mailbox

    acc = account(sandbox, "sync@sandbox.test")
    Message(account=acc, folder=acc.drafts, subject="addressed",
            author=Mailbox(email_address="ann@x.test")).save()
    qs = acc.drafts.filter(subject="addressed")
    assert qs.filter(author__in=[Mailbox(email_address="ann@x.test")]).count() == 1
    assert qs.filter(author__in=[Mailbox(email_address="bob@x.test")]).count() == 0


def test_query_string_and_recipient_names(sandbox: SandboxProcess,
                                          ews: SandboxControl) -> None:  # noqa: F811
    """FindItem's AQS QueryString filters (it is not ignored); a recipient given by address
    only is stored with the address as its name, as Exchange stores one-off recipients."""
    from exchangelib import Mailbox

    acc = account(sandbox, "sync@sandbox.test")
    Message(account=acc, folder=acc.drafts, subject="quarterly report", body="numbers inside",
            to_recipients=[Mailbox(email_address="bob@x.test")]).save()
    Message(account=acc, folder=acc.drafts, subject="lunch", body="pizza").save()
    assert [m.subject for m in acc.drafts.filter("Subject:quarterly")] == ["quarterly report"]
    assert acc.drafts.filter("To:bob@x.test AND Body:numbers").count() == 1
    assert acc.drafts.filter("pizza OR numbers").count() == 2
    assert acc.drafts.filter("Subject:lunch AND NOT Body:pizza").count() == 0
    got = acc.drafts.get(subject="quarterly report")
    assert got.to_recipients[0].name == "bob@x.test"


def test_any_uri_values_taken_as_exchange_takes_them(sandbox: SandboxProcess,
                                                     ews: SandboxControl) -> None:  # noqa: F811
    """xs:anyURI (a contact's BusinessHomePage) is validated as Exchange's .NET validator does:
    free text such as ``a b:c`` is accepted (libxml2 alone refuses it) and kept as it is."""
    acc = account(sandbox, "sync@sandbox.test")
    c = Contact(account=acc, folder=acc.contacts, display_name="Web", given_name="Web",
                business_homepage="our site: www.example.test/a b")
    c.save()
    assert acc.contacts.get(id=c.id).business_homepage == "our site: www.example.test/a b"
    assert ews.stats()["rejected_requests"] == 0
