"""The demo data the Graph sandbox starts with (and returns to on reset)."""

from datetime import UTC, datetime, timedelta
from typing import Any

from l2sync_dagster.sandbox.graph import sites, users

SALES_SITE = ("sandbox.sharepoint.com", "/sites/sales", "Sales")
CUSTOMER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Email", "type": "text"},
    {"name": "Phone", "type": "text"},
    {"name": "City", "type": "text", "indexed": True},
    {"name": "Revenue", "type": "currency"},
    {"name": "Active", "type": "boolean"},
    {"name": "Since", "type": "dateTime"},
    {"name": "Tier", "type": "choice", "choices": ["Gold", "Silver", "Bronze"]},
    {"name": "Owner", "type": "personOrGroup"},
]
CONTACT_COLUMNS: list[dict[str, Any]] = [  # Title holds the surname
    {"name": "FirstName", "type": "text"},
    {"name": "Company", "type": "text"},
    {"name": "Email", "type": "text"},
    {"name": "Phone", "type": "text"},
    {"name": "City", "type": "text"},
]
_PEOPLE = [("Ada", "Lovelace", "London"), ("Alan", "Turing", "Manchester"),
           ("Grace", "Hopper", "New York"), ("Edsger", "Dijkstra", "Amsterdam"),
           ("Barbara", "Liskov", "Boston")]


def contact_body(given: str, surname: str, city: str, n: int = 0) -> dict[str, Any]:
    """A demo contact as a client would POST it."""
    mail = f"{given.lower()}.{surname.lower()}{n or ''}@example.test"
    return {"givenName": given, "surname": surname, "companyName": f"{surname} Ltd",
            "emailAddresses": [{"address": mail, "name": f"{given} {surname}"}],
            "businessPhones": [f"+44 20 7946 {n % 10000:04d}"],
            "businessAddress": {"city": city, "countryOrRegion": "United Kingdom"}}


def load(svc: Any) -> None:
    """Fill an empty store with the demo data."""
    store = svc.store
    for upn in ("sync@sandbox.test", "alice@sandbox.test", "sales@sandbox.test"):
        users.ensure_user(svc, upn)
    for upn, people in (("sales@sandbox.test", _PEOPLE), ("sync@sandbox.test", _PEOPLE[:3])):
        folders = store.collection(users.key("contactFolders", upn))
        default = folders.meta["default"]
        coll = store.collection(users.key("contacts", upn, default))
        for given, surname, city in people:
            store.put(coll, users.new_entity(svc, users.CONTACTS,
                                             contact_body(given, surname, city),
                                             parentFolderId=default))
    today = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)
    events = store.collection(users.key("events", "sync@sandbox.test"))
    demo_events = [
        {"subject": "Pipeline review", "start": _dtz(today + timedelta(days=1)),
         "end": _dtz(today + timedelta(days=1, hours=1)), "location": {"displayName": "Room 1"}},
        {"subject": "Company holiday", "isAllDay": True,
         "start": {"dateTime": (today + timedelta(days=3)).strftime("%Y-%m-%dT00:00:00"),
                   "timeZone": "UTC"},
         "end": {"dateTime": (today + timedelta(days=4)).strftime("%Y-%m-%dT00:00:00"),
                 "timeZone": "UTC"}},
        {"subject": "Weekly sync", "start": _dtz(today), "end": _dtz(today + timedelta(minutes=30)),
         "recurrence": {"pattern": {"type": "weekly", "interval": 1,
                                    "daysOfWeek": [today.strftime("%A").lower()]},
                        "range": {"type": "numbered", "numberOfOccurrences": 10,
                                  "startDate": today.date().isoformat()}}},
    ]
    for body in demo_events:
        store.put(events, users.new_entity(svc, users.EVENTS, body))
    lists = store.collection(users.key("todoLists", "sync@sandbox.test"))
    todo = users.new_entity(svc, users.TODO_LISTS, {"displayName": "Follow-ups"},
                            wellknownListName="none", isOwner=True, isShared=False)
    store.put(lists, todo)
    tasks = store.collection(users.key("todoTasks", "sync@sandbox.test", todo["id"]), "todoTasks")
    for i, title in enumerate(("Call Ada", "Send offer to Grace", "Renew contract")):
        store.put(tasks, users.new_entity(svc, users.TODO_TASKS, {
            "title": title, "importance": "high" if i == 0 else "normal",
            "dueDateTime": _dtz(today + timedelta(days=i + 1))}))
    seed_messages(svc, "sync@sandbox.test", "inbox", 3)
    stamp = (today - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for upn in ("sync@sandbox.test", "sales@sandbox.test"):  # as in the EWS demo
        projects = add_mail_folder(svc, upn, users.mail_folder_id(svc, upn, "inbox"), "Projects")
        alpha = add_mail_folder(svc, upn, projects, "Alpha")
        add_mail_folder(svc, upn, projects, "Beta")
        if upn == "sync@sandbox.test":
            svc.store.put(svc.store.collection(users.key("messages", upn, alpha)),
                          users.new_entity(svc, users.MESSAGES, {
                              "subject": "Alpha kickoff", "receivedDateTime": stamp,
                              "sentDateTime": stamp, "isRead": True,
                              "body": {"contentType": "text", "content": "Monday 9:00"}},
                              parentFolderId=alpha))
    site = sites.create_site(svc, *SALES_SITE)
    lst = sites.create_list(svc, site, "Customers", CUSTOMER_COLUMNS)
    seed_items(svc, lst["id"], 5)
    # an empty list for the "Exchange Online contacts -> SharePoint" demo
    sites.create_list(svc, site, "Contacts", CONTACT_COLUMNS)


def add_mail_folder(svc: Any, upn: str, parent: str, name: str) -> str:
    """A mail folder below ``parent`` (an id); returns its id."""
    folders = svc.store.collection(users.key("mailFolders", upn))
    entity = users.new_entity(svc, users.MAIL_FOLDERS, {
        "displayName": name, "childFolderCount": 0, "unreadItemCount": 0,
        "totalItemCount": 0, "isHidden": False}, parentFolderId=parent)
    svc.store.put(folders, entity)
    svc.store.collection(users.key("messages", upn, entity["id"]), "messages")
    return str(entity["id"])


def _dtz(value: datetime) -> dict[str, str]:
    return {"dateTime": value.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


def seed_contacts(svc: Any, upn: str, folder: str | None, count: int,
                  prefix: str = "Seed") -> str:
    """``count`` contacts in ``folder`` (default folder when None); returns the folder id."""
    users.ensure_user(svc, upn)
    store = svc.store
    folders = store.collection(users.key("contactFolders", upn))
    folder_id = folder or folders.meta["default"]
    coll = store.collection(users.key("contacts", upn, folder_id))
    if coll is None:
        raise KeyError(f"no contact folder {folder_id!r} for {upn}")
    base = len(coll.items)
    for i in range(count):
        given, surname, city = _PEOPLE[i % len(_PEOPLE)]
        n = base + i + 1
        store.put(coll, users.new_entity(svc, users.CONTACTS,
                                         contact_body(f"{prefix}{given}", f"{surname}{n}", city, n),
                                         parentFolderId=folder_id))
    return folder_id


def seed_messages(svc: Any, upn: str, folder: str, count: int) -> str:
    """``count`` messages in a mail folder (id or well-known name); returns the folder id."""
    users.ensure_user(svc, upn)
    folder_id = users.mail_folder_id(svc, upn, folder)
    coll = svc.store.collection(users.key("messages", upn, folder_id))
    if coll is None:
        raise KeyError(f"no mail folder {folder!r} for {upn}")
    now = datetime.now(UTC)
    for i in range(count):
        given, surname, _ = _PEOPLE[i % len(_PEOPLE)]
        sent = (now - timedelta(hours=i + 1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        content = f"<html><body><p>Hello,</p><p>message {i + 1} from {given}.</p></body></html>"
        sender = {"emailAddress": {"name": f"{given} {surname}",
                                   "address": f"{given.lower()}@example.test"}}
        svc.store.put(coll, users.new_entity(svc, users.MESSAGES, {
            "subject": f"Question {i + 1} from {given}", "from": sender, "sender": sender,
            "toRecipients": [{"emailAddress": {"name": upn, "address": upn}}],
            "receivedDateTime": sent, "sentDateTime": sent,
            "body": {"contentType": "html", "content": content},
            "internetMessageId": f"<{i}.{now.timestamp()}@example.test>",
            "conversationId": f"conv-{i}"}, parentFolderId=folder_id))
    return folder_id


def seed_items(svc: Any, list_id: str, count: int) -> int:
    """``count`` customer-like items in a list (fields filled for the columns it has)."""
    items = svc.store.collection(f"items|{list_id}")
    if items is None:
        raise KeyError(f"no list {list_id!r}")
    columns = sites.columns_by_name(svc, list_id)
    base = len(items.items)
    for i in range(count):
        given, surname, city = _PEOPLE[i % len(_PEOPLE)]
        n = base + i + 1
        candidate: dict[str, Any] = {
            "Title": f"{surname} Ltd {n}", "Email": f"info{n}@{surname.lower()}.example",
            "Phone": f"+44 20 7946 {n % 10000:04d}", "City": city,
            "Revenue": float(1000 * n), "Active": n % 2 == 1,
            "Since": f"{2015 + n % 10}-0{1 + n % 9}-01T00:00:00Z",
            "Tier": ["Gold", "Silver", "Bronze"][n % 3], "OwnerLookupId": "7"}
        fields = {k: v for k, v in candidate.items()
                  if k in columns or (k.endswith("LookupId") and k[:-8] in columns)}
        svc.store.put(items, sites.new_item(svc, items, list_id, fields, "sync@sandbox.test"))
    return count
