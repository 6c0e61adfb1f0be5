"""The Microsoft 365 scenarios of ``make demo``, against sandbox servers started in this process.

1. Exchange (EWS) contacts of sales@sandbox.test <-> a SQLite table, both ways: first sync
   pairs by e-mail, then edits in Outlook and in the database, then nothing to do.
2. Exchange Online contacts (Graph) -> the SharePoint list "Contacts", then one new contact
   picked up by the delta query.
3. Dynamics 365 accounts -> the SharePoint list "Customers" one way, then the same connection
   switched to both ways with a conflict policy, with edits on both sides.
4. The company directory into the contacts of each of 200 employees' mailboxes (``for_each``
   over the members of a group), then one colleague changing department.

Every scenario resets its state first, so the demo can be run again and again.
"""

import contextlib
import io
import json
import os
import shutil
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console

from l2sync_dagster.cli import main as l2sync
from l2sync_dagster.providers.graph.client import GraphClient
from l2sync_dagster.report_tables import counts_table, print_conflicts
from l2sync_dagster.sandbox import identities
from l2sync_dagster.sandbox.control import SandboxControl
from l2sync_dagster.sandbox.environment import sandbox_environment
from l2sync_dagster.sandbox.server import RunningSandbox, start_sandbox
from l2sync_dagster.spec.connection_string import ConnectionString
from l2sync_dagster.spec.loader import find_connection
from l2sync_dagster.spec.model import ConnectionSpec
from l2sync_dagster.state.store import StateStore, default_state_url
from l2sync_dagster.sync.runner import Sync

SALES = "sales@sandbox.test"
SITE = "sites/sandbox.sharepoint.com:/sites/sales:"
EXCHANGE_DB_ROWS = [
    # Anna is already in the mailbox (matched by e-mail), with another phone number
    ("Anna", "Berg", "Example AG", "Engineer", "anna.berg@example.test", "+41 44 999 0000",
     "Zurich", "1960-01-10", '["Customer"]', "CRM-00000"),
    ("Zoe", "Keller", "Keller GmbH", "CEO", "zoe.keller@example.test", "+49 30 1234 5678",
     "Berlin", "1985-04-02", '["Customer"]', "CRM-09001"),
]


#: connections in connections/ that need the sandbox
SANDBOX_CONNECTIONS = ("exchange_contacts_demo", "graph_contacts_to_sharepoint",
                       "dynamics_accounts_to_sharepoint", "company_directory_demo")
#: the employees of the demo tenant (members of employees@sandbox.test)
DEMO_STAFF = 200
DIRECTORY_PEOPLE = 40
DEPARTMENTS = ("Sales", "Engineering", "Finance", "Support", "Marketing")


def sandbox_state_dir(project: Path) -> Path:
    """Where the demo keeps the sandbox's data between runs (``make demo`` -> ``make ui``)."""
    return project / ".l2sync" / "sandbox"


@contextmanager
def running_sandbox(state_dir: Path | None = None) -> Iterator[RunningSandbox]:
    """Every sandbox service on free loopback ports, with the demo connections' variables set;
    with ``state_dir`` the data is loaded from and saved to it."""
    previous_staff = len(identities.STAFF)
    identities.use_staff(DEMO_STAFF)
    try:
        sbx = start_sandbox(state_dir=state_dir)
    except BaseException:
        identities.use_staff(previous_staff)
        raise
    env = sandbox_environment(sbx.urls, sbx.ca_path)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield sbx
    finally:
        sbx.stop()
        identities.use_staff(previous_staff)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def fresh_state(spec: ConnectionSpec) -> None:
    """Forget everything the state store knows about ``spec`` (the sandbox starts anew); of
    a ``for_each`` connection, about each of the demo tenant's staff mailboxes."""
    store = StateStore(default_state_url(Path(spec.project_dir)))
    names = [spec.name] if spec.for_each is None else [
        spec.for_value(m).name for m in identities.staff_mailboxes(DEMO_STAFF)]
    try:
        for name in names:
            store.reset(name, history=True)
            store.force_unlock(name)
    finally:
        store.close()


def seed_directory_db(project: Path) -> Path:
    """A fresh ``data/demo/directory.db``: the company directory of the for_each demo."""
    db_path = project / "data" / "demo" / "directory.db"
    db_path.parent.mkdir(parents=True, exist_ok=True)
    db_path.unlink(missing_ok=True)
    with sqlite3.connect(db_path) as db:
        db.execute("CREATE TABLE people (id TEXT PRIMARY KEY, given_name TEXT, surname TEXT, "
                   "email TEXT, department TEXT, phone TEXT)")
        db.executemany("INSERT INTO people VALUES (?, ?, ?, ?, ?, ?)", [
            (f"E{i:03d}", f"Colleague{i}", f"Example{i}", f"colleague{i}@sandbox.test",
             DEPARTMENTS[i % len(DEPARTMENTS)], f"+41 44 555 {i:04d}")
            for i in range(1, DIRECTORY_PEOPLE + 1)])
    return db_path


def _run(connections: Path, name: str) -> int:
    return l2sync(["--connections", str(connections), "run", name])


def _title(text: str) -> None:
    print(f"\n=== {text}")


def seed_exchange_db(project: Path) -> Path:
    """A fresh ``data/demo/exchange.db`` with the demo's two contacts; returns its path."""
    db_path = project / "data" / "demo" / "exchange.db"
    db_path.parent.mkdir(parents=True, exist_ok=True)
    db_path.unlink(missing_ok=True)
    with sqlite3.connect(db_path) as db:
        db.execute(
            "CREATE TABLE contacts (id INTEGER PRIMARY KEY AUTOINCREMENT, first_name TEXT, "
            "last_name TEXT, company TEXT, job_title TEXT, email TEXT, phone TEXT, city TEXT, "
            "birthday DATE, categories TEXT, crm_id TEXT, updated_at TIMESTAMP)")
        db.executemany(
            "INSERT INTO contacts (first_name, last_name, company, job_title, email, phone, city, "
            "birthday, categories, crm_id, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "'2026-01-01 00:00:00')", EXCHANGE_DB_ROWS)
    return db_path


def exchange_contacts(connections: Path, sbx: RunningSandbox) -> int:
    """Exchange contacts <-> SQLite, both ways, over EWS."""
    spec = find_connection("exchange_contacts_demo", connections)
    db_path = seed_exchange_db(Path(spec.project_dir))
    fresh_state(spec)
    ews = SandboxControl("ews", sbx.urls["ews"])
    _title("Exchange <-> SQLite 1. first sync: pairs Anna by e-mail, copies the rest both ways")
    if code := _run(connections, spec.name):
        return code
    _title("Exchange <-> SQLite 2. Ben's job title changed in Outlook, Clara's city and a "
           "deleted row in the database")
    contacts = ews.call("GET", f"items?mailbox={SALES}&folder=contacts")["items"]
    ben = next(c for c in contacts if c["fields"].get("GivenName") == "Ben")
    ews.call("PATCH", f"items/{ben['id']}", {"fields": {"JobTitle": "Head of Purchasing"}})
    with sqlite3.connect(db_path) as db:
        now = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
        db.execute(f"UPDATE contacts SET city = 'Geneva', updated_at = {now} "
                   "WHERE first_name = 'Clara'")
        db.execute("DELETE FROM contacts WHERE first_name = 'David'")
    if code := _run(connections, spec.name):
        return code
    _title("Exchange <-> SQLite 3. nothing changed since: nothing to do")
    if code := _run(connections, spec.name):
        return code
    with sqlite3.connect(db_path) as db:
        rows = db.execute("SELECT first_name, last_name, job_title, city, phone FROM contacts "
                          "ORDER BY last_name, first_name").fetchall()
    print(f"SQLite table contacts now holds {len(rows)} contacts, e.g.:")
    for row in rows[:5]:
        print("  ", row)
    names = {c["fields"].get("GivenName") for c in
             ews.call("GET", f"items?mailbox={SALES}&folder=contacts")["items"]}
    print(f"Zoe in the mailbox: {'Zoe' in names}; David in the mailbox: {'David' in names}")
    return 0


def _graph(spec: ConnectionSpec, side: str = "right") -> GraphClient:
    entity = spec.right if side == "right" else spec.left
    return GraphClient.from_connection_string(ConnectionString(entity.connection_string))


def _list_items(graph: GraphClient, title: str) -> list[dict[str, Any]]:
    return list(graph.items(f"{SITE}/lists/{title}/items", params={"expand": "fields"}))


def graph_contacts(connections: Path, sbx: RunningSandbox) -> int:
    """Exchange Online contacts -> SharePoint list, both over Microsoft Graph."""
    spec = find_connection("graph_contacts_to_sharepoint", connections)
    fresh_state(spec)
    _title("Exchange Online -> SharePoint 1. first sync: every contact becomes a list item")
    if code := _run(connections, spec.name):
        return code
    graph = _graph(spec)
    try:
        graph.request("POST", f"users/{SALES}/contacts", body={
            "givenName": "Margaret", "surname": "Hamilton", "companyName": "Hamilton Ltd",
            "emailAddresses": [{"address": "margaret.hamilton@example.test"}],
            "businessPhones": ["+1 617 555 0100"], "businessAddress": {"city": "Boston"}})
        _title("Exchange Online -> SharePoint 2. a contact added in Outlook: the delta query "
               "brings just that one")
        if code := _run(connections, spec.name):
            return code
        items = _list_items(graph, "Contacts")
        print(f"SharePoint list Contacts now holds {len(items)} items: "
              + ", ".join(sorted(i["fields"].get("Title", "") for i in items)))
    finally:
        graph.close()
    return 0


def _bidirectional(spec: ConnectionSpec) -> ConnectionSpec:
    data = spec.model_dump()
    data.update(direction="bidirectional", conflicts={"policy": "merge", "fallback": "left_wins"})
    return ConnectionSpec.model_validate(data)


def dynamics_accounts(connections: Path, sbx: RunningSandbox) -> int:
    """Dynamics 365 accounts -> SharePoint Customers one way, then both ways."""
    spec = find_connection("dynamics_accounts_to_sharepoint", connections)
    fresh_state(spec)
    _title("Dynamics -> SharePoint 1. one way: every account becomes a list item")
    if code := _run(connections, spec.name):
        return code
    both = _bidirectional(spec)
    dataverse = SandboxControl("dataverse", sbx.urls["dataverse"], sbx.ca_path)
    graph = _graph(spec)
    try:
        accounts = dataverse.call("GET", "rows/accounts")["value"]
        first, second = sorted(accounts, key=lambda a: a["name"])[:2]
        items = {i["fields"].get("Title"): i for i in _list_items(graph, "Customers")}
        _title("Dynamics <-> SharePoint 2. the same connection switched to "
               "`direction: bidirectional`, `conflicts: {policy: merge, fallback: left_wins}`;\n"
               f"    {first['name']}: phone edited in the list, city edited in Dynamics "
               "(merged);\n"
               f"    {second['name']}: city edited on both sides (conflict: Dynamics wins)")
        for name, fields in ((first["name"], {"Phone": "+1 555 0100"}),
                             (second["name"], {"City": "Lisbon"})):
            graph.request("PATCH", f"{SITE}/lists/Customers/items/{items[name]['id']}/fields",
                          body=fields)
        dataverse.call("PATCH", f"rows/accounts/{first['accountid']}",
                       {"address1_city": "Porto"})
        dataverse.call("PATCH", f"rows/accounts/{second['accountid']}",
                       {"address1_city": "Madrid"})
        sync = Sync(both)
        try:
            report = sync.run()
        finally:
            sync.close()
        out = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
        out.print(counts_table(report.counts()))
        if report.prepared:
            print_conflicts(out, report.prepared.plan)
        now = {a["accountid"]: a for a in dataverse.call("GET", "rows/accounts")["value"]}
        items = {i["fields"].get("Title"): i for i in _list_items(graph, "Customers")}
        for acc in (first, second):
            row, item = now[acc["accountid"]], items[acc["name"]]["fields"]
            print(f"   {acc['name']}: Dynamics phone={row.get('telephone1')} "
                  f"city={row.get('address1_city')} | list Phone={item.get('Phone')} "
                  f"City={item.get('City')}")
        print(f"Dynamics now holds {len(now)} accounts (the list's own customers were copied "
              f"in); the list holds {len(items)} items")
        return 0 if report.status == "succeeded" else 3
    finally:
        graph.close()


def company_directory(connections: Path, sbx: RunningSandbox) -> int:
    """The directory into every employee's mailbox (for_each), then one change."""
    spec = find_connection("company_directory_demo", connections)
    db_path = seed_directory_db(Path(spec.project_dir))
    fresh_state(spec)
    run = ["--connections", str(connections), "run", spec.name, "--all", "--workers", "8"]
    _title(f"Directory -> {DEMO_STAFF} mailboxes 1. {DIRECTORY_PEOPLE} colleagues into the "
           "contacts of every member of employees@sandbox.test")
    if code := _quiet(run):
        return code
    _title("Directory -> mailboxes 2. Colleague8 moved to Finance: one update per mailbox")
    with sqlite3.connect(db_path) as db:
        db.execute("UPDATE people SET department = 'Finance' WHERE id = 'E008'")
    if code := _quiet(run):
        return code
    # the right side's URL is Graph's (GraphURL for a bare Graph client)
    cs = spec.right.connection_string.replace("Backend=graph;URL=", "GraphURL=")
    graph = GraphClient.from_connection_string(ConnectionString(cs))
    try:
        last = identities.staff_mailboxes(DEMO_STAFF)[-1]
        found = graph.get(f"users/{last}/contacts", params={
            "$filter": "givenName eq 'Colleague8'", "$select": "givenName,department"})
        print(f"{last}: Colleague8 is in {found['value'][0]['department']}")
        _title("Directory -> mailboxes 3. The same connection in Dagster: Colleague9 moved "
               f"to Sales; a backfill of every mailbox, in runs of {spec.for_each.per_run}")
        with sqlite3.connect(db_path) as db:
            db.execute("UPDATE people SET department = 'Sales' WHERE id = 'E009'")
        if code := _dagster_backfill(connections, spec):
            return code
        found = graph.get(f"users/{last}/contacts", params={
            "$filter": "givenName eq 'Colleague9'", "$select": "givenName,department"})
        print(f"{last}: Colleague9 is in {found['value'][0]['department']}")
    finally:
        graph.close()
    return 0


def _dagster_backfill(connections: Path, spec: ConnectionSpec) -> int:
    """Every partition of a for_each connection materialized in Dagster, in the runs its
    backfill policy makes (ranges of ``per_run`` mailboxes, each reading the directory once),
    on an ephemeral instance; the state store is the one the command line used."""
    import dagster as dg

    from l2sync_dagster.orchestration.assets import (
        asset_keys,
        partition_range_request,
        run_tags_of,
    )
    from l2sync_dagster.orchestration.definitions import build_definitions
    from l2sync_dagster.orchestration.partitions import for_each_partitions_name
    from l2sync_dagster.sync.for_each import for_each_values

    assert spec.for_each is not None
    values = for_each_values(spec).values
    per_run = spec.for_each.per_run
    job = build_definitions(connections).resolve_job_def(f"{spec.dagster_name}_job")
    quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(for_each_partitions_name(spec), values)
        for start in range(0, len(values), per_run):
            request = partition_range_request(values[start:start + per_run], "demo",
                                              run_tags_of(spec))
            result = job.execute_in_process(
                instance=instance, tags=request.tags, partition_key=request.partition_key,
                run_config=quiet, raise_on_error=False)
            tags = instance.get_run_by_id(result.run_id).tags  # type: ignore[union-attr]
            chunk = values[start:start + per_run]
            print(f"Dagster run {result.run_id[:8]}: mailboxes {start + 1}-{start + len(chunk)}"
                  f", {tags.get('l2sync/mailboxes', '1/1')} synced, right side "
                  f"{tags.get('l2sync/right', '')}")
            if not result.success:
                return 1
        done = instance.get_materialized_partitions(asset_keys(spec)["apply_right"])
    print(f"{len(done)} of {len(values)} partitions materialized")
    return 0 if len(done) == len(values) else 1


def _quiet(args: list[str]) -> int:
    """Run the CLI with --json and print one line per outcome instead of 200 rows."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = l2sync([*args, "--json"])
    results = json.loads(out.getvalue() or "{}")
    failed = {m: r["error"] for m, r in results.items() if "error" in r}
    totals = {k: sum(int(r.get("right", {}).get(k, 0)) for r in results.values()
                     if "error" not in r) for k in ("inserted", "updated", "deleted")}
    print(f"{len(results) - len(failed)} of {len(results)} mailboxes synced: "
          + ", ".join(f"{n} {k}" for k, n in totals.items()))
    for mailbox, why in list(failed.items())[:5]:
        print(f"  {mailbox}: {why}")
    return code


def run_microsoft_demos(connections: Path) -> int:
    """Start the sandbox, run the three Microsoft 365 scenarios, stop the sandbox."""
    print("\n### Microsoft 365 scenarios against the sandbox servers (l2sync sandbox)")
    project = Path(find_connection(SANDBOX_CONNECTIONS[0], connections).project_dir)
    state_dir = sandbox_state_dir(project)
    shutil.rmtree(state_dir, ignore_errors=True)  # the demo starts from the demo data
    with running_sandbox(state_dir) as sbx:
        for name, url in sbx.urls.items():
            print(f"{name:10} {url}")
        for service in sbx.services.values():
            if note := service.notice():
                print(note)
        for scenario in (exchange_contacts, graph_contacts, dynamics_accounts,
                         company_directory):
            code = scenario(connections, sbx)
            if code != 0:
                return code
        # the sandbox checks its own answers against Microsoft's schemas: a bad one is a bug
        bad = {name: svc.stats.invalid_responses for name, svc in sbx.services.items()
               if svc.stats.invalid_responses}
        if bad:
            print(f"the sandbox produced invalid responses: {bad}", file=sys.stderr)
            return 4
    return 0
