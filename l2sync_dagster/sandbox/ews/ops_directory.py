"""FindPeople against the directory: the global address list (GAL) of the demo tenant.

The GAL holds the tenant's mail-enabled recipients: the directory users that have a mail
address (Graph ``/users`` with ``mail`` set; a user without a mailbox, the contractor, is not
in the GAL, as on Exchange) and the mail-enabled groups (``PersonaType`` ``DistributionList``).
The people come from the Graph sandbox's directory collection when the Graph service runs in
the same sandbox (``sandbox.graph.directory``: so an edit made through
``POST /_sandbox/graph/directory/update`` or ``.../delete`` is what FindPeople answers next),
else from the same deterministic profiles (``directory.person``).

As Exchange 2013+ documents FindPeople on the GAL (``ParentFolderId`` =
``DistinguishedFolderId Id="directory"``): the GAL cannot be browsed, so a ``QueryString`` is
required and a ``Restriction`` is refused (``ErrorInvalidArgument``). The query string is
matched like ambiguous name resolution: a case-insensitive prefix of the display name, of any
word of it, of the given name, the surname, the primary SMTP address or its local part.
Matches are sorted by display name and paged with ``IndexedPageItemView`` (``Offset`` from
``Beginning`` or ``End``; at most ``find_limit`` a page); the answer carries
``TotalNumberOfPeopleInView``, ``FirstMatchingRowIndex`` and ``FirstLoadedRowIndex``.
``PersonaShape``: ``IdOnly`` (PersonaId), ``Default`` (id, type, names, company, e-mail
address), ``AllProperties`` (everything below), plus any ``persona:`` FieldURI of
``AdditionalProperties`` the sandbox holds. The profile values that personas keep per source
(departments, office locations, phones, business addresses) are answered as attributed
values of the one source, the GAL (attribution ``0``). Any other ``ParentFolderId`` is
``ErrorInvalidOperation``: the sandbox aggregates no personas from mailbox contacts.
"""

import base64
from collections.abc import Callable
from typing import Any

from lxml import etree

from l2sync_dagster.sandbox.ews.call import Call, EwsError
from l2sync_dagster.sandbox.ews.soap import M, T, m, sub, t
from l2sync_dagster.sandbox.graph import directory
from l2sync_dagster.sandbox.graph.groups import demo_groups

#: the distinguished folder that names the GAL
GAL = "directory"
#: the attribution id of the one source every GAL value comes from
SOURCE = "0"
PERSON = "Person"
GROUP = "DistributionList"


def gal_entries(call: Call) -> list[dict[str, Any]]:
    """The GAL: the directory users with a mail address and the mail-enabled groups, as
    Graph entities (``"_type"``: the PersonaType), sorted by display name."""
    graph = call.service.ctx.services.get("graph")
    if graph is not None:
        coll = directory.users_collection(graph)
        with graph.store.lock:
            users = [dict(u) for u in coll.items.values()]
    else:
        users = [directory.person(upn) for upn in directory.tenant_users()]
    entries = [{**u, "_type": PERSON} for u in users if u.get("mail")]
    entries += [{**g, "_type": GROUP} for g in demo_groups().values() if g.get("mail")]
    return sorted(entries, key=lambda e: (str(e.get("displayName") or "").lower(),
                                          str(e["mail"]).lower()))


def anr_matches(entry: dict[str, Any], query: str) -> bool:
    """Whether ``query`` resolves to the entry (ambiguous name resolution: prefixes)."""
    q = query.strip().lower()
    if not q:
        return False
    display = str(entry.get("displayName") or "")
    mail = str(entry.get("mail") or "")
    names = [display, *display.split(), str(entry.get("givenName") or ""),
             str(entry.get("surname") or ""), mail, mail.partition("@")[0]]
    return any(n.lower().startswith(q) for n in names if n)


def persona_id(entry: dict[str, Any]) -> str:
    """A GAL persona's id: opaque base64 of the directory object id."""
    return base64.b64encode(b"GAL\x00" + str(entry["id"]).encode()).decode()


# -- persona properties: FieldURI name -> writer, in PersonaType's schema order --------------

def _text(name: str, prop: str) -> Callable[[etree._Element, dict[str, Any]], None]:
    def write(parent: etree._Element, e: dict[str, Any]) -> None:
        if e.get(prop):
            sub(parent, t(name), str(e[prop]))
    return write


def _attributed(name: str, prop: str) -> Callable[[etree._Element, dict[str, Any]], None]:
    def write(parent: etree._Element, e: dict[str, Any]) -> None:
        if e.get(prop):
            value = sub(sub(parent, t(name)), t("StringAttributedValue"))
            sub(value, t("Value"), str(e[prop]))
            sub(sub(value, t("Attributions")), t("Attribution"), SOURCE)
    return write


def _phones(name: str, numbers: Callable[[dict[str, Any]], list[str]], kind: str
            ) -> Callable[[etree._Element, dict[str, Any]], None]:
    def write(parent: etree._Element, e: dict[str, Any]) -> None:
        found = [n for n in numbers(e) if n]
        if not found:
            return
        holder = sub(parent, t(name))
        for number in found:
            value = sub(holder, t("PhoneNumberAttributedValue"))
            phone = sub(value, t("Value"))
            sub(phone, t("Number"), number)
            sub(phone, t("Type"), kind)
            sub(sub(value, t("Attributions")), t("Attribution"), SOURCE)
    return write


_ADDRESS_PARTS = (("Street", "streetAddress"), ("City", "city"), ("State", "state"),
                  ("Country", "country"), ("PostalCode", "postalCode"))


def _business_address(parent: etree._Element, e: dict[str, Any]) -> None:
    parts = [(name, e.get(prop)) for name, prop in _ADDRESS_PARTS]
    if not any(v for _, v in parts):
        return
    value = sub(sub(parent, t("BusinessAddresses")), t("PostalAddressAttributedValue"))
    address = sub(value, t("Value"))
    for name, text in parts:
        if text:
            sub(address, t(name), str(text))
    sub(address, t("Type"), "Business")
    sub(sub(value, t("Attributions")), t("Attribution"), SOURCE)


def _email(name: str) -> Callable[[etree._Element, dict[str, Any]], None]:
    def write(parent: etree._Element, e: dict[str, Any]) -> None:
        holder = sub(parent, t(name))
        target = holder if name == "EmailAddress" else sub(holder, t("Address"))
        sub(target, t("Name"), str(e.get("displayName") or e["mail"]))
        sub(target, t("EmailAddress"), str(e["mail"]))
        sub(target, t("RoutingType"), "SMTP")
        sub(target, t("MailboxType"), "Mailbox" if e["_type"] == PERSON else "GroupMailbox")
    return write


def _persona_type(parent: etree._Element, e: dict[str, Any]) -> None:
    sub(parent, t("PersonaType"), e["_type"])


def _file_as(parent: etree._Element, e: dict[str, Any]) -> None:
    given, surname = e.get("givenName"), e.get("surname")
    text = f"{surname}, {given}" if given and surname else e.get("displayName")
    if text:
        sub(parent, t("FileAs"), str(text))


def _attributions(parent: etree._Element, e: dict[str, Any]) -> None:
    attribution = sub(sub(parent, t("Attributions")), t("Attribution"))
    sub(attribution, t("Id"), SOURCE)
    sub(attribution, t("SourceId"), Id=persona_id(e))
    sub(attribution, t("DisplayName"), "GAL")
    sub(attribution, t("IsWritable"), "false")
    sub(attribution, t("IsQuickContact"), "false")
    sub(attribution, t("IsHidden"), "false")


PROPERTIES: dict[str, Callable[[etree._Element, dict[str, Any]], None]] = {
    "PersonaType": _persona_type,
    "DisplayName": _text("DisplayName", "displayName"),
    "FileAs": _file_as,
    "GivenName": _text("GivenName", "givenName"),
    "Surname": _text("Surname", "surname"),
    "Title": _text("Title", "jobTitle"),
    "CompanyName": _text("CompanyName", "companyName"),
    "EmailAddress": _email("EmailAddress"),
    "EmailAddresses": _email("EmailAddresses"),
    "Attributions": _attributions,
    "BusinessPhoneNumbers": _phones("BusinessPhoneNumbers",
                                    lambda e: list(e.get("businessPhones") or []), "Business"),
    "MobilePhones": _phones("MobilePhones", lambda e: [e.get("mobilePhone") or ""], "Mobile"),
    "OfficeLocations": _attributed("OfficeLocations", "officeLocation"),
    "BusinessAddresses": _business_address,
    "Titles": _attributed("Titles", "jobTitle"),
    "Departments": _attributed("Departments", "department"),
    "CompanyNames": _attributed("CompanyNames", "companyName"),
}
DEFAULT_SHAPE = ("PersonaType", "DisplayName", "FileAs", "GivenName", "Surname", "CompanyName",
                 "EmailAddress", "EmailAddresses")


def _requested(req: etree._Element) -> set[str]:
    shape = req.find(m("PersonaShape"))
    base = shape.findtext(t("BaseShape")) if shape is not None else "Default"
    wanted: set[str] = set()
    if base == "AllProperties":
        wanted = set(PROPERTIES)
    elif base != "IdOnly":
        wanted = set(DEFAULT_SHAPE)
    extra = shape.find(t("AdditionalProperties")) if shape is not None else None
    for path in extra if extra is not None else ():
        uri = path.get("FieldURI") or ""
        if uri.startswith("persona:"):
            wanted.add(uri.removeprefix("persona:"))
    return wanted


def _persona(parent: etree._Element, e: dict[str, Any], wanted: set[str]) -> None:
    el = sub(parent, t("Persona"))
    sub(el, t("PersonaId"), Id=persona_id(e))
    for name, write in PROPERTIES.items():  # PersonaType's schema order
        if name in wanted:
            write(el, e)


def _window(req: etree._Element, total: int, limit: int) -> tuple[int, int]:
    """``(first row, row count)`` of the IndexedPageItemView."""
    view = req.find(m("IndexedPageItemView"))
    size = int(view.get("MaxEntriesReturned") or limit) if view is not None else limit
    size = min(max(size, 0), limit)
    offset = int(view.get("Offset") or 0) if view is not None else 0
    if view is not None and view.get("BasePoint") == "End":
        offset = max(total - offset - size, 0)
    return offset, size


def _answer(error: EwsError | None) -> etree._Element:
    root = etree.Element(m("FindPeopleResponse"), nsmap={"m": M, "t": T},
                         ResponseClass="Error" if error else "Success")
    if error:
        sub(root, m("MessageText"), error.message)
        sub(root, m("ResponseCode"), error.code)
        sub(root, m("DescriptiveLinkKey"), "0")
    else:
        sub(root, m("ResponseCode"), "NoError")
    return root


def find_people(call: Call, req: etree._Element) -> etree._Element:
    """FindPeople over the GAL (see the module docstring)."""
    try:
        folder = req.find(f"{m('ParentFolderId')}/{t('DistinguishedFolderId')}")
        if folder is None or folder.get("Id") != GAL:
            raise EwsError("ErrorInvalidOperation", "The sandbox answers FindPeople for the "
                                                    "directory (DistinguishedFolderId "
                                                    "'directory') only.")
        query = (req.findtext(m("QueryString")) or "").strip()
        if req.find(m("Restriction")) is not None or not query:
            raise EwsError("ErrorInvalidArgument", "The directory cannot be browsed: search "
                                                   "it with a QueryString, not a Restriction.")
    except EwsError as err:
        return _answer(err)
    found = [e for e in gal_entries(call) if anr_matches(e, query)]
    offset, size = _window(req, len(found), call.service.find_limit)
    wanted = _requested(req)
    root = _answer(None)
    people = sub(root, m("People"))
    for entry in found[offset:offset + size]:
        _persona(people, entry, wanted)
    sub(root, m("TotalNumberOfPeopleInView"), str(len(found)))
    sub(root, m("FirstMatchingRowIndex"), str(offset))
    sub(root, m("FirstLoadedRowIndex"), str(offset))
    return root
