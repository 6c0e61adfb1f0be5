"""Folder scopes of the exchange provider on both backends (EWS and Graph) against the
sandbox: ``/**`` recursion, ``*`` wildcards, a subfolder added or removed between runs,
misspelled subfolders answered with close matches, and ``FROM Tasks`` (the default task
folder on EWS, the default To Do list on Graph). The folder trees are built as Outlook would,
through the sandbox's own store (EWS) or raw Graph requests, never through the provider."""

from collections.abc import Iterator
from typing import Any

import pytest
from exchange_users import EWS_PASSWORD_ENV, GRAPH_SECRET_ENV, GraphUser, ews_cs, graph_cs
from sandbox_process import SandboxProcess

from l2sync_dagster.providers.base import Change, ProviderError, Query
from l2sync_dagster.providers.exchange import ExchangeProvider
from l2sync_dagster.providers.graph.throttle import RetryPolicy

FAST = RetryPolicy(max_retries=10, base_s=0.02, cap_s=0.2, max_retry_after_s=0.05)
SYNC = "sync@sandbox.test"
BACKENDS = ("ews", "graph")


class Outlook:
    """Makes folders and items in the sync mailbox without the provider."""

    def __init__(self, sandbox: SandboxProcess, backend: str) -> None:
        self.backend = backend
        self.control = sandbox.control("ews")
        if backend == "graph":
            user = GraphUser(sandbox, SYNC)
            self.session = user.session
            self.root = user.base.rsplit("/contacts", 1)[0]

    def _graph(self, method: str, path: str, **kw: Any) -> Any:
        resp = self.session.request(method, f"{self.root}/{path}", timeout=30, **kw)
        assert resp.status_code < 300, (resp.status_code, resp.text[:300])
        return resp.json() if resp.content else None

    def _graph_folder(self, path: str) -> tuple[str, str]:
        """(collection, id) of ``Inbox/A/B`` or ``Contacts/A``."""
        top, *rest = path.split("/")
        if top.lower() == "contacts":
            collection, current = "contactFolders", None
        else:
            collection, current = "mailFolders", top.lower()
        for name in rest:
            children = (f"{collection}/{current}/childFolders" if current
                        else f"{collection}")
            found = [f for f in self._graph("GET", f"{children}?$top=100")["value"]
                     if f["displayName"] == name]
            assert found, (path, name)
            current = found[0]["id"]
        return collection, current or ""

    def add_folder(self, parent: str, name: str) -> None:
        """A subfolder (a contacts folder under Contacts)."""
        contacts = parent.lower().startswith("contacts")
        if self.backend == "ews":
            kind = {"kind": "ContactsFolder", "folder_class": "IPF.Contact"} if contacts else {}
            self.control.call("POST", "folders", {"mailbox": SYNC, "parent": parent,
                                                  "name": name, **kind})
            return
        collection, fid = self._graph_folder(parent)
        where = f"{collection}/{fid}/childFolders" if fid else collection
        self._graph("POST", where, json={"displayName": name})

    def remove_folder(self, path: str) -> None:
        """Delete a folder (Graph) / move it away (EWS has no folder delete in the control
        API: its items go, which a read sees the same way)."""
        if self.backend == "ews":
            folder = self.control.call("GET", f"items?mailbox={SYNC}&folder={path}")
            for item in folder["items"]:
                self.control.call("DELETE", f"items/{item['id']}")
            return
        collection, fid = self._graph_folder(path)
        self._graph("DELETE", f"{collection}/{fid}")

    def add_item(self, folder: str, subject: str) -> None:
        """A message (mail folders) or a contact whose GivenName is ``subject``."""
        contacts = folder.lower().startswith("contacts")
        if self.backend == "ews":
            spec = ({"GivenName": subject, "DisplayName": subject} if contacts
                    else {"Subject": subject})
            self.control.call("POST", "items", {"mailbox": SYNC, "folder": folder,
                                                "type": "Contact" if contacts else "Message",
                                                "items": [spec]})
            return
        collection, fid = self._graph_folder(folder)
        if contacts:
            where = f"contactFolders/{fid}/contacts" if fid else "contacts"
            self._graph("POST", where, json={"givenName": subject, "displayName": subject})
        else:
            self._graph("POST", f"mailFolders/{fid}/messages", json={"subject": subject})


@pytest.fixture(params=BACKENDS)
def mailbox(request: pytest.FixtureRequest, sandbox: SandboxProcess,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Outlook]]:
    """(open a provider of the sync mailbox, Outlook) on fresh demo data."""
    backend = request.param
    monkeypatch.setenv(EWS_PASSWORD_ENV, "sandbox")
    monkeypatch.setenv(GRAPH_SECRET_ENV, "sandbox")
    sandbox.control(backend).reset()

    def make() -> ExchangeProvider:
        if backend == "ews":
            return ExchangeProvider.from_connection_string(ews_cs(sandbox, Email=SYNC))
        provider = ExchangeProvider.from_connection_string(graph_cs(sandbox, SYNC))
        provider.backend.client.retry = FAST  # type: ignore[attr-defined]
        return provider

    yield make, Outlook(sandbox, backend)
    sandbox.control(backend).clear_faults()


def _rows(frame: Any, column: str = "Subject") -> list[tuple[str, str]]:
    return sorted((str(s), str(p or "")) for s, p in zip(frame[column], frame["FolderPath"],
                                                         strict=True))


def test_recursion_and_wildcards_in_mail_folders(mailbox: tuple[Any, Outlook]) -> None:
    make, outlook = mailbox
    outlook.add_folder("Inbox", "Clients")
    outlook.add_folder("Inbox/Clients", "North")
    outlook.add_folder("Inbox/Clients", "South")
    outlook.add_item("Inbox/Clients/North", "Order from Oslo")
    outlook.add_item("Inbox/Clients/South", "Order from Rome")
    outlook.add_item("Inbox/Clients", "Clients overview")
    p = make()
    every = p.read(Query("SELECT Subject, FolderPath FROM Inbox/**")).frame
    below = [r for r in _rows(every) if r[1]]  # the Inbox's own messages differ per demo
    assert below == [("Alpha kickoff", "Projects/Alpha"), ("Clients overview", "Clients"),
                     ("Order from Oslo", "Clients/North"), ("Order from Rome", "Clients/South")]
    clients = p.read(Query("SELECT Subject, FolderPath FROM 'Inbox/Clients/**'")).frame
    assert _rows(clients) == [("Clients overview", "Clients"),
                              ("Order from Oslo", "Clients/North"),
                              ("Order from Rome", "Clients/South")]
    one_level = p.read(Query("SELECT Subject, FolderPath FROM 'Inbox/Clients/*'")).frame
    assert _rows(one_level) == [("Order from Oslo", "Clients/North"),
                                ("Order from Rome", "Clients/South")]
    pattern = p.read(Query("SELECT Subject, FolderPath FROM 'Inbox/*/?lpha'")).frame
    assert _rows(pattern) == [("Alpha kickoff", "Projects/Alpha")]
    tops = p.read(Query("SELECT Subject, FolderPath FROM Inbox/*")).frame
    assert _rows(tops) == [("Clients overview", "Clients")]  # Projects holds no message
    assert "3 folder(s)" in p.verify(Query("SELECT Subject FROM 'Inbox/Clients/**'"))


def test_a_subfolder_added_between_runs_is_read(
        mailbox: tuple[Any, Outlook]) -> None:
    make, outlook = mailbox
    p = make()
    rec = Query("SELECT Subject, FolderPath FROM 'Inbox/Projects/**'")
    first = p.read(rec)
    assert _rows(first.frame) == [("Alpha kickoff", "Projects/Alpha")]
    outlook.add_folder("Inbox/Projects", "Gamma")
    outlook.add_item("Inbox/Projects/Gamma", "Gamma plan")
    nxt = p.read(rec, cursor=first.cursor)
    assert not nxt.complete and _rows(nxt.frame) == [("Gamma plan", "Projects/Gamma")]
    # a fresh provider (the next run) with the stored cursor sees nothing new
    again = make().read(rec, cursor=nxt.cursor)
    assert again.frame.empty and not list(again.deleted)


def test_a_subfolder_removed_between_runs_drops_its_items(
        mailbox: tuple[Any, Outlook]) -> None:
    make, outlook = mailbox
    rec = Query("SELECT Subject, FolderPath FROM 'Inbox/Projects/**'")
    p = make()
    first = p.read(rec)
    gone = first.frame.index[first.frame["Subject"] == "Alpha kickoff"][0]
    outlook.remove_folder("Inbox/Projects/Alpha")
    nxt = p.read(rec, cursor=first.cursor)
    # either a complete read without the item or a change saying it was deleted
    assert (nxt.complete and gone not in nxt.frame.index) or gone in set(nxt.deleted)


def test_recursion_in_contact_folders(mailbox: tuple[Any, Outlook]) -> None:
    make, outlook = mailbox
    outlook.add_folder("Contacts", "Partners")
    outlook.add_folder("Contacts/Partners", "EU")
    outlook.add_item("Contacts/Partners", "Pia")
    outlook.add_item("Contacts/Partners/EU", "Elena")
    p = make()
    q = Query("SELECT GivenName, FolderPath FROM Contacts/**")
    frame = p.read(q).frame
    below = [r for r in _rows(frame, "GivenName") if r[1]]
    assert below == [("Elena", "Partners/EU"), ("Pia", "Partners")]
    wild = p.read(Query("SELECT GivenName, FolderPath FROM 'Contacts/Part*/*'")).frame
    assert _rows(wild, "GivenName") == [("Elena", "Partners/EU")]
    (ins,) = p.apply(Query("SELECT GivenName, DisplayName FROM 'Contacts/Partners/EU'"),
                     [Change("insert", "n", values={"GivenName": "Nora", "DisplayName": "Nora"})])
    assert ins.ok, ins
    eu = p.read(Query("SELECT GivenName, FolderPath FROM 'Contacts/Partners/**'")).frame
    assert _rows(eu, "GivenName") == [("Elena", "Partners/EU"), ("Nora", "Partners/EU"),
                                      ("Pia", "Partners")]


@pytest.mark.parametrize(("scope", "message"), [
    ("'Inbox/Projects/Alpah'", r"no folder 'Projects/Alpah' under inbox .*did you mean "
                               r"Projects/Alpha"),
    ("'Inbox/Projekts/*'", r"no folder 'Projekts/\*' under inbox .*did you mean Projects"),
    ("'Contacts/Partnrs'", r"no folder 'Partnrs' under contacts .*did you mean Partners"),
])
def test_a_misspelled_subfolder_is_answered_with_close_matches(
        mailbox: tuple[Any, Outlook], scope: str, message: str) -> None:
    make, outlook = mailbox
    outlook.add_folder("Contacts", "Partners")
    item = "GivenName" if "Contacts" in scope else "Subject"
    with pytest.raises(ProviderError, match=message):
        make().verify(Query(f"SELECT {item} FROM {scope}"))


def test_from_tasks_is_the_default_task_folder(mailbox: tuple[Any, Outlook]) -> None:
    make, _ = mailbox
    p = make()
    q = Query("SELECT Subject, Status FROM Tasks")
    assert "1 folder(s)" in p.verify(q)
    before = set(p.read(q).frame.index)
    (ins,) = p.apply(q, [Change("insert", "t", values={"Subject": "Call the bank"})])
    assert ins.ok, ins
    frame = p.read(q).frame
    assert set(frame.index) == before | {ins.key}
    assert frame.loc[ins.key, "Subject"] == "Call the bank"


def test_the_next_run_follows_its_delta_link_without_looking_the_folder_up(
        sandbox: SandboxProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """Graph: the cursor remembers the folders of a fixed scope, so a run with nothing changed
    makes one request per folder (its delta link); a folder deleted and made again under the
    same name fails the old link, is looked up again and read completely."""
    monkeypatch.setenv(GRAPH_SECRET_ENV, "sandbox")
    sandbox.control("graph").reset()
    outlook = Outlook(sandbox, "graph")
    outlook.add_folder("Contacts", "Company Directory")
    outlook.add_item("Contacts/Company Directory", "Ada")
    rec = Query("SELECT GivenName FROM 'Contacts/Company Directory'")

    def provider() -> ExchangeProvider:
        p = ExchangeProvider.from_connection_string(graph_cs(sandbox, SYNC))
        p.backend.client.retry = FAST  # type: ignore[attr-defined]
        return p

    first = provider().read(rec)
    assert list(first.frame["GivenName"]) == ["Ada"]
    nxt = provider()
    again = nxt.read(rec, cursor=first.cursor)
    assert again.frame.empty and not again.deleted and not again.complete
    assert nxt.backend.client.stats()["requests"] == 1  # type: ignore[attr-defined]

    outlook.remove_folder("Contacts/Company Directory")
    outlook.add_folder("Contacts", "Company Directory")
    outlook.add_item("Contacts/Company Directory", "Ben")
    later = provider().read(rec, cursor=again.cursor)
    assert later.complete and list(later.frame["GivenName"]) == ["Ben"]
