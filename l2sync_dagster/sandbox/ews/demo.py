"""The demo mailboxes the sandbox starts with (and returns to on reset)."""

from typing import Any

from l2sync_dagster.sandbox import identities
from l2sync_dagster.sandbox.ews.records import from_dict
from l2sync_dagster.sandbox.ews.store import Store

FIRST = ["Anna", "Ben", "Clara", "David", "Eva", "Felix", "Greta", "Hugo", "Ida", "Jonas",
         "Katrin", "Lukas"]
LAST = ["Berg", "Schmidt", "Novak", "Rossi", "Larsen", "Dubois", "Meyer", "Kowalski", "Silva",
        "Jensen", "Moreau", "Weber"]

#: an extended property the demo contacts carry (a named property in PublicStrings)
DEMO_EXTENDED = {"DistinguishedPropertySetId": "PublicStrings", "PropertyName": "CrmId",
                 "PropertyType": "String"}


def demo_contact(n: int) -> dict[str, Any]:
    """Contact number ``n`` (deterministic)."""
    first, last = FIRST[n % len(FIRST)], LAST[(n // len(FIRST) + n) % len(LAST)]
    suffix = "" if n < len(FIRST) else str(n)
    email = f"{first.lower()}.{last.lower()}{suffix}@example.test"
    return {
        "Categories": ["Customer"] if n % 3 == 0 else ["Partner"],
        "ExtendedProperty": [{"uri": DEMO_EXTENDED, "value": f"CRM-{n:05d}"}],
        "DisplayName": f"{first} {last}", "GivenName": first, "CompanyName": "Example AG",
        "EmailAddresses": {"EmailAddress1": email},
        "PhysicalAddresses": {"Business": {"Street": f"Main Street {n + 1}",
                                           "City": "Zurich", "PostalCode": "8000",
                                           "CountryOrRegion": "Switzerland"}},
        "PhoneNumbers": {"BusinessPhone": f"+41 44 000 {n:04d}"},
        "Birthday": f"19{60 + n % 40}-0{1 + n % 9}-1{n % 10}T00:00:00Z",
        "JobTitle": "Buyer" if n % 2 else "Engineer", "Surname": last,
    }


def build(order: dict[str, list[str]]) -> Store:
    """A fresh store with the demo tenant's mailboxes and items."""
    store = Store()
    for mailbox in identities.MAILBOXES:
        store.add_mailbox(mailbox)
        if mailbox in ("sync@sandbox.test", "sales@sandbox.test"):
            inbox = store.distinguished(mailbox, "inbox")
            assert inbox is not None
            projects = store.add_folder(mailbox, inbox.id, "Projects")
            store.add_folder(mailbox, projects.id, "Alpha")
            store.add_folder(mailbox, projects.id, "Beta")

    def put(mailbox: str, folder: str, tag: str, fields: dict[str, Any]) -> None:
        target = store.folder_by_path(mailbox, folder)
        assert target is not None, folder
        store.add_item(mailbox, target.id, from_dict(tag, fields, order))

    sales = "sales@sandbox.test"
    for n in range(12):
        put(sales, "contacts", "Contact", demo_contact(n))
    put(sales, "contacts", "DistributionList", {
        "Subject": "Key accounts", "DisplayName": "Key accounts",
        "Members": {"Member": [
            {"Mailbox": {"Name": "Anna Berg", "EmailAddress": "anna.berg@example.test"}},
            {"Mailbox": {"Name": "Ben Schmidt", "EmailAddress": "ben.schmidt@example.test"}},
        ]}})
    put(sales, "calendar", "CalendarItem", {
        "Subject": "Trade fair", "Body": {"BodyType": "Text", "text": "Booth 12"},
        "Start": "2026-03-02T00:00:00Z", "End": "2026-03-04T00:00:00Z", "IsAllDayEvent": True,
        "Location": "Basel"})
    put(sales, "calendar", "CalendarItem", {
        "Subject": "Weekly sales sync", "Start": "2026-01-05T08:00:00Z",
        "End": "2026-01-05T08:30:00Z", "Location": "Room 1",
        "RequiredAttendees": {"Attendee": [
            {"Mailbox": {"Name": "Alice", "EmailAddress": "alice@sandbox.test"}}]},
        "Recurrence": {"WeeklyRecurrence": {"Interval": "1", "DaysOfWeek": "Monday"},
                       "NoEndRecurrence": {"StartDate": "2026-01-05"}}})
    put(sales, "calendar", "CalendarItem", {
        "Subject": "Customer visit", "Start": "2026-02-10T13:00:00Z",
        "End": "2026-02-10T14:00:00Z", "Location": "Example AG"})
    put(sales, "tasks", "Task", {"Subject": "Send price list", "DueDate": "2026-02-01T00:00:00Z",
                                 "Status": "NotStarted"})
    put(sales, "tasks", "Task", {"Subject": "Renew contract", "Status": "Completed",
                                 "PercentComplete": "100"})
    put(sales, "inbox", "Message", {
        "Subject": "Welcome", "Body": {"BodyType": "HTML", "text": "<p>Hello <b>sales</b></p>"},
        "From": {"Mailbox": {"Name": "Alice", "EmailAddress": "alice@sandbox.test"}},
        "IsRead": False})
    put(sales, "inbox", "Message", {
        "Subject": "Order 4711", "Body": {"BodyType": "Text", "text": "Please confirm."},
        "IsRead": True})
    put(sales, "notes", "Message", {
        "ItemClass": "IPM.StickyNote", "Subject": "Call Anna back",
        "Body": {"BodyType": "Text", "text": "Call Anna back about the quote"}})
    put("sync@sandbox.test", "Inbox/Projects/Alpha", "Message", {
        "Subject": "Alpha kickoff", "Body": {"BodyType": "Text", "text": "Monday 9:00"}})
    return store
