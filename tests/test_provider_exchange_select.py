"""Unit tests of the exchange provider's select parser, field catalog and connection string
(no server needed)."""

import datetime as dt

import pytest

from l2sync_dagster.providers.base import ProviderError, Query
from l2sync_dagster.providers.exchange import ExchangeProvider
from l2sync_dagster.providers.exchange.connection import parse_settings
from l2sync_dagster.providers.exchange.fields import ITEM_TYPES, CatalogError, item_type
from l2sync_dagster.providers.exchange.select import (
    PROPERTY_SETS,
    Condition,
    SelectError,
    parse_select,
    statement_matches,
)
from l2sync_dagster.spec.connection_string import ConnectionStringError


def test_star_is_the_default_field_set_in_canonical_spelling() -> None:
    s = parse_select("select * from contacts")
    assert s.item_type.name == "Contact"
    assert s.star and s.top is None and s.where == ()
    assert s.columns == [f.name for f in ITEM_TYPES["Contact"].default_fields()]
    assert "EmailAddresses.EmailAddress1" in s.columns
    assert "CompleteName.FullName" not in s.columns  # read-only extras are opt-in


def test_full_statement() -> None:
    s = parse_select(
        "SELECT TOP 25 givenname, SURNAME, PhoneNumbers.MobilePhone, Ext.CustomerNo:Integer "
        "FROM Contacts WHERE Surname STARTSWITH 'O''Brien' AND Birthday >= '1990-01-31' "
        "AND Ext.CustomerNo IN (1, 2) AND CompanyName IS NOT NULL ORDER BY Surname DESC")
    assert s.top == 25
    assert s.columns == ["GivenName", "Surname", "PhoneNumbers.MobilePhone", "Ext.CustomerNo"]
    assert s.where == (
        Condition("Surname", "STARTSWITH", "O'Brien"),
        Condition("Birthday", ">=", dt.date(1990, 1, 31)),
        Condition("Ext.CustomerNo", "IN", (1, 2)),
        Condition("CompanyName", "IS NOT NULL"),
    )
    assert s.order_by == "Surname" and s.descending


def test_extended_property_forms() -> None:
    s = parse_select(
        "SELECT Subject, ExtendedProperty:{PSETID_PublicStrings}/CustomerNo:String, "
        "ExtendedProperty:{PSETID_Address}/0x8083:String AS MailAddr, "
        "ExtendedProperty:0x3A45:String, "
        "ExtendedProperty:{c11ff724-aa03-4555-9952-8fa248a11c3e}/Rank:Double "
        "FROM Tasks")
    named, by_id, tag, guid = s.extended
    assert (named.column, named.name, named.property_set) == (
        "Ext.CustomerNo", "CustomerNo", PROPERTY_SETS["psetid_publicstrings"])
    assert (by_id.column, by_id.prop_id, by_id.name) == ("MailAddr", 0x8083, None)
    assert (tag.column, tag.tag, tag.property_set) == ("Ext.0x3A45", 0x3A45, None)
    assert guid.property_set == "C11FF724-AA03-4555-9952-8FA248A11C3E"
    assert guid.type == "float" and guid.ews_type == "Double"


@pytest.mark.parametrize(("text", "root", "segments", "recursive", "itype"), [
    ("Contacts", "contacts", (), False, "Contact"),
    ("ContactGroups", "contacts", (), False, "ContactGroup"),
    ("Calendar", "calendar", (), False, "CalendarItem"),
    ("Inbox/Projects/Alpha", "inbox", ("Projects", "Alpha"), False, "Message"),
    ("Inbox/**", "inbox", (), True, "Message"),
    ("'Projects/*'", "msgfolderroot", ("Projects", "*"), False, "Message"),
    ("'Inbox/A\\/B'", "inbox", ("A/B",), False, "Message"),
    ("Notes", "notes", (), False, "Note"),
])
def test_scopes(text: str, root: str, segments: tuple, recursive: bool, itype: str) -> None:
    field = "DisplayName" if itype in ("Contact", "ContactGroup") else "Subject"
    s = parse_select(f"SELECT {field} FROM {text}")
    assert (s.scope.root, s.scope.segments, s.scope.recursive) == (root, segments, recursive)
    assert s.item_type.name == itype


def test_the_from_field_of_messages() -> None:
    assert parse_select("SELECT Subject, From FROM Inbox").columns == ["Subject", "From"]
    assert parse_select("SELECT Subject, From, IsRead FROM Inbox").columns[1] == "From"
    assert parse_select("SELECT [From] FROM Inbox").columns == ["From"]


def test_as_item_type_for_custom_folders() -> None:
    s = parse_select("SELECT GivenName FROM 'Shared/Team' AS Contact")
    assert s.item_type.name == "Contact" and s.scope.segments == ("Shared", "Team")


@pytest.mark.parametrize(("text", "message"), [
    ("SELECT Surnam FROM Contacts", "did you mean Surname"),
    ("SELECT * FROM Contcts", "did you mean Contacts"),
    ("SELECT * FROM Contacts AS Contakt", "did you mean Contact"),
    ("SELECT PhoneNumbers.Mobile FROM Contacts", "PhoneNumbers.MobilePhone"),
    ("SELECT * FROM Calendar WHERE LegacyFreeBusyStatus = 'bussy'", "did you mean Busy"),
    ("SELECT * FROM Contacts WHERE Birthday > 'yesterday'", "not a date"),
    ("SELECT * FROM Contacts WHERE Surname = 'a' OR Surname = 'b'", "OR is not supported"),
    ("SELECT * FROM Contacts WHERE Surname = NULL", "IS NULL"),
    ("SELECT * FROM Contacts WHERE Categories = 'x'", "CONTAINS"),
    ("SELECT * FROM Contacts WHERE Surname LIKE 'x'", "unknown operator"),
    ("SELECT FROM Contacts", "select list is empty"),
    ("SELECT * Contacts", "expected FROM"),
    ("SELECT TOP 0 * FROM Contacts", "TOP needs"),
    ("SELECT TOP x * FROM Contacts", "TOP needs"),
    ("SELECT * FROM Contacts; DROP TABLE x", "unexpected character ';'"),
    ("DELETE FROM Contacts", "expected SELECT"),
    ("SELECT * FROM Inbox/**/x", "'**' is allowed only"),
    ("SELECT * FROM 'Inbox//x'", "empty folder name"),
    ("SELECT * FROM Contacts ORDER BY Children", "cannot ORDER BY"),
    ("SELECT Ext.X:Strng FROM Contacts", "did you mean String"),
    ("SELECT ExtendedProperty:{PSETID_Adress}/X:String FROM Contacts", "PSETID_Address"),
    ("SELECT Ext.A, ExtendedProperty:{PSETID_PublicStrings}/A:String FROM Contacts",
     "selected twice"),
    ("SELECT * FROM Contacts WHERE Surname = 'unclosed", "unexpected character"),
    ("", "empty"),
    ("SELECT \x00 FROM Contacts", "NUL"),
    ("SELECT " + "a," * 20000 + "b FROM Contacts", "longer than"),
])
def test_mistakes_are_explained(text: str, message: str) -> None:
    with pytest.raises(SelectError, match=None) as err:
        parse_select(text)
    assert message in str(err.value), str(err.value)


def test_hostile_values_stay_values() -> None:
    s = parse_select("SELECT * FROM Contacts WHERE Surname = ''' OR 1=1 --' AND "
                     "GivenName CONTAINS '<x>&amp;]]>'")
    assert s.where[0].value == "' OR 1=1 --"
    assert s.where[1].value == "<x>&amp;]]>"


def test_statement_matches_evaluates_where_client_side() -> None:
    s = parse_select("SELECT * FROM Contacts WHERE Surname STARTSWITH 'mü' AND "
                     "Categories CONTAINS 'vip' AND Birthday < '2000-01-01'")
    row = {"Surname": "Müller", "Categories": '["VIP", "Key"]', "Birthday": dt.date(1980, 1, 2)}
    assert statement_matches(s, row)
    assert not statement_matches(s, {**row, "Categories": None})
    assert not statement_matches(s, {**row, "Birthday": dt.date(2001, 1, 1)})


def test_catalog() -> None:
    contact = item_type("contacts")
    assert contact.require("completename.fullname").read_only
    assert not contact.require("GivenName").read_only
    assert contact.require("Birthday").type == "date"
    assert item_type("Event").name == "CalendarItem"
    assert item_type("calendar").require("RequiredAttendees").type == "json"
    with pytest.raises(CatalogError, match="did you mean Task"):
        item_type("Tsk")
    with pytest.raises(CatalogError, match="did you mean Start"):
        item_type("CalendarItem").require("Strat")


def test_the_readme_agrees_with_the_catalog_on_what_is_writable() -> None:
    """The README's Exchange field table and its list of read-only fields say what the
    catalog (and Exchange) say: DisplayName is written, CompleteName.* are not."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("### Select statements", 1)[1].split("Dataverse and OData", 1)[0]
    read_only = re.search(r"read-only ones \(([^)]*)\)", section.replace("\n", " "))
    assert read_only is not None
    for name in re.findall(r"`([^`]+)`", read_only.group(1)):
        fields = [f for t in ITEM_TYPES.values() for f in t.fields
                  if f.name == name or (name.endswith(".*") and f.name.startswith(name[:-1]))]
        assert fields and all(f.read_only for f in fields), name
    kinds = {"contact": "Contact", "contact group": "ContactGroup", "calendar": "CalendarItem"}
    rows = re.findall(r"^\| `([^`]+)` \| ([^|]+) \| (yes|no) \|", section, re.M)
    assert len(rows) >= 6, rows
    for name, where, writable in rows:
        for kind in re.split(r",\s*", re.sub(r"\s*\(.*?\)", "", where).strip()):
            itype = ITEM_TYPES[kinds[kind]]
            fields = [f for f in itype.fields
                      if f.name == name or (name.endswith(".*") and
                                            f.name.startswith(name[:-1]))]
            assert fields, (name, kind)
            assert all(f.read_only == (writable == "no") for f in fields), (name, kind)


# --- connection string ------------------------------------------------------------------------
def test_connection_string(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EWS_PW", "pw")
    s = parse_settings("url=https://mail.example.com;USER=svc@example.com;Password=env:EWS_PW;"
                       "Email=sales@example.com;Impersonation=true;Authentication=Basic")
    assert s.url == "https://mail.example.com/EWS/Exchange.asmx"
    assert s.impersonation and s.authentication == "basic" and s.email == "sales@example.com"
    assert s.password is not None and s.password.reveal() == "pw"
    assert "pw" not in repr(s.cs)
    own = parse_settings("URL=https://m/EWS/Exchange.asmx;User=a@b.c;Password=env:EWS_PW")
    assert own.email == "a@b.c" and not own.impersonation and own.backend == "ews"


@pytest.mark.parametrize(("text", "message"), [
    ("URL=https://m;User=a@b.c;Password=env:EWS_PW;Colour=red", "unknown key Colour"),
    ("User=a@b.c;Password=env:EWS_PW", "missing required key URL"),
    ("URL=https://m;Password=env:EWS_PW", "missing required key User"),
    ("URL=https://m;User=a@b.c", "missing required key Password"),
    ("URL=https://m;User=a@b.c;Password=secret", "must be a reference"),
    ("URL=ftp://m;User=a@b.c;Password=env:EWS_PW", "URL must start with https"),
    ("URL=https://m;User=a@b.c;Password=env:EWS_PW;Backend=imap", "Backend must be"),
    ("URL=https://m;User=a@b.c;Password=env:EWS_PW;Authentication=Kerberos", "NTLM, Basic"),
    ("URL=https://m;Authentication=OAuth;TenantId=t", "missing required key ClientId"),
    ("URL=https://m;User=a@b.c;Password=env:EWS_PW;Email=nobody", "SMTP address"),
    ("URL=https://m;User=a@b.c;Password=env:EWS_PW;Impersonation=maybe", "true or false"),
    ("URL=https://m;User=a@b.c;Password=env:EWS_PW;PageSize=5000", "PageSize"),
    ("URL=https://m;User=a@b.c;Password=env:EWS_PW;NamingScheme=Outlook", "NamingScheme"),
    ("URL=https://m;User=a@b.c;Password=env:EWS_PW;CABundle=/no/such.pem", "no such file"),
])
def test_connection_string_errors(monkeypatch: pytest.MonkeyPatch, text: str,
                                  message: str) -> None:
    monkeypatch.setenv("EWS_PW", "pw")
    with pytest.raises(ConnectionStringError) as err:
        parse_settings(text)
    assert message in str(err.value)


def test_missing_graph_backend_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    monkeypatch.setenv("EWS_PW", "pw")
    real = importlib.import_module

    def fake(name: str, *a: object) -> object:
        if name.endswith("graph_backend"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real(name, *a)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(ProviderError, match="Backend=graph is not available"):
        ExchangeProvider.from_connection_string(
            "Backend=graph;TenantId=t;ClientId=c;ClientSecret=env:EWS_PW;Email=a@b.c")


def test_sharepoint_naming_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EWS_PW", "pw")
    p = ExchangeProvider.from_connection_string(
        "URL=https://127.0.0.1:9/EWS/Exchange.asmx;User=a@b.c;Password=env:EWS_PW;"
        "NamingScheme=SharePoint")
    d = p.describe(Query("SELECT FirstName, Title, WorkPhone, Email FROM Contacts"))
    assert [f.name for f in d.fields] == ["FirstName", "Title", "WorkPhone", "Email"]
    stmt = p.statement(Query("SELECT FirstName, Title, WorkPhone, Email FROM Contacts"))
    assert stmt.columns == ["GivenName", "Surname", "PhoneNumbers.BusinessPhone",
                            "EmailAddresses.EmailAddress1"]
    star = p.describe(Query("SELECT * FROM Contacts"))
    assert star.field("FirstName") is not None and star.field("GivenName") is None
    with pytest.raises(ProviderError, match="did you mean"):
        p.describe(Query("SELECT FirstNam FROM Contacts"))


def test_describe_marks_read_only_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EWS_PW", "pw")
    p = ExchangeProvider.from_connection_string(
        "URL=https://127.0.0.1:9/EWS/Exchange.asmx;User=a@b.c;Password=env:EWS_PW")
    d = p.describe(Query("SELECT GivenName, CompleteName.FullName, Ext.No:Integer "
                         "FROM Contacts"))
    assert d.key == "_key" and d.key_generated and d.modified == "_modified"
    assert [(f.name, f.type, f.read_only) for f in d.fields] == [
        ("GivenName", "string", False), ("CompleteName.FullName", "string", True),
        ("Ext.No", "integer", False)]
