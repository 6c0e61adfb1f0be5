"""for_each ``{members_of: group@x}`` against the sandbox's Graph groups over real HTTP (msal
sign-in, paging, nested groups), its errors (no such group, missing permission), one run over a
group into per-mailbox CSV files, and the sandbox's group answers checked against the CSDL."""

import json
import sqlite3
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from sandbox_process import SandboxProcess

from l2sync_dagster import cli
from l2sync_dagster.orchestration.definitions import build_definitions
from l2sync_dagster.providers.graph.client import GraphClient, GraphError
from l2sync_dagster.providers.msauth import MicrosoftAuth, scope_for
from l2sync_dagster.sandbox.graph.csdl import load_csdl
from l2sync_dagster.spec.connection_string import ConnectionString
from l2sync_dagster.spec.loader import ConnectionFileError, load_connection
from l2sync_dagster.sync.for_each import for_each_values

SECRET_ENV = "GROUPS_TEST_SECRET"
CSDL = Path(__file__).resolve().parents[1] / "../shared/graph-schema/graph-v1.0-csdl.xml"
MEMBERS = ["alice@sandbox.test", "sales@sandbox.test", "sync@sandbox.test"]


def graph_cs(sandbox: SandboxProcess) -> str:
    return (f"TenantId=sandbox;ClientId=l2sync-sandbox;ClientSecret=env:{SECRET_ENV};"
            f"Authority={sandbox.urls['token']}/sandbox;CABundle={sandbox.ca_path};"
            f"GraphURL={sandbox.urls['graph']}/v1.0")


def project(tmp: Path, mailbox: str, *, right_cs: str = "Path=out/{mailbox}.csv") -> Path:
    """connections/staff.yaml (for_each over ``mailbox:``) and data/crm.db with contacts."""
    (tmp / "connections").mkdir()
    (tmp / "data").mkdir()
    (tmp / "out").mkdir()
    (tmp / "connections" / "staff.yaml").write_text(f"""\
direction: left_to_right
for_each:
  mailbox: {mailbox}
left:
  provider: sql
  connection_string: "URL=sqlite:///data/crm.db"
  query: "SELECT id, name FROM contacts WHERE owner = '{{mailbox}}'"
  key: id
right:
  provider: file
  connection_string: "{right_cs}"
  key: id
""")
    with sqlite3.connect(tmp / "data" / "crm.db") as db:
        db.execute("CREATE TABLE contacts (id TEXT PRIMARY KEY, name TEXT, owner TEXT)")
        db.executemany("INSERT INTO contacts VALUES (?, ?, ?)", [
            ("1", "Ada", "alice@sandbox.test"), ("2", "Ben", "sales@sandbox.test"),
            ("3", "Cy", "sales@sandbox.test"), ("4", "Di", "nobody@sandbox.test")])
    for member in MEMBERS:
        (tmp / "out" / f"{member}.csv").write_text("id,name\n")
    return tmp / "connections"


@pytest.fixture
def graph(sandbox: SandboxProcess, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(SECRET_ENV, "sandbox")
    sandbox.control("graph").reset()
    cs = ConnectionString(graph_cs(sandbox))
    url = cs.require("GraphURL")
    client = GraphClient(url, MicrosoftAuth.from_connection_string(cs, scope=scope_for(url)))
    yield client
    client.close()
    sandbox.control("graph").reset()


def group_spec(tmp: Path, sandbox: SandboxProcess, group: str = "all-staff@sandbox.test"):
    folder = project(tmp, f'{{members_of: {group}, connection_string: "{graph_cs(sandbox)}"}}')
    return load_connection(folder / "staff.yaml")


def test_nested_members_once_each_and_no_mail_skipped(tmp_path: Path, sandbox, graph) -> None:
    found = for_each_values(group_spec(tmp_path, sandbox))
    # alice@ is a member directly and through the nested sales-team@: listed once
    assert found.values == MEMBERS
    assert found.refused == ["member contractor@sandbox.test of all-staff@sandbox.test has no "
                             "mail address; skipped"]


def test_transitive_members_page_by_top(graph: GraphClient) -> None:
    group = graph.get("groups", params={"$filter": "mail eq 'all-staff@sandbox.test'"})
    [staff] = group["value"]
    pages = list(graph.pages(f"groups/{staff['id']}/transitiveMembers/microsoft.graph.user",
                             params={"$select": "mail,userPrincipalName", "$top": "2"}))
    assert [len(p["value"]) for p in pages] == [2, 2]
    assert "@odata.nextLink" in pages[0] and "@odata.nextLink" not in pages[1]
    upns = sorted(m["userPrincipalName"] for p in pages for m in p["value"])
    assert upns == sorted([*MEMBERS, "contractor@sandbox.test"])
    assert all(set(m) == {"id", "mail", "userPrincipalName"} for p in pages for m in p["value"])
    # without the cast the nested group itself is a member too
    kinds = sorted(m["@odata.type"] for m in graph.items(f"groups/{staff['id']}/transitiveMembers"))
    assert kinds == ["#microsoft.graph.group"] + ["#microsoft.graph.user"] * 4
    by_proxy = graph.get("groups", params={
        "$filter": "proxyAddresses/any(p: p eq 'SMTP:sales-team@sandbox.test')"})
    assert [g["mail"] for g in by_proxy["value"]] == ["sales-team@sandbox.test"]


def test_a_group_not_found_is_named(tmp_path: Path, sandbox, graph) -> None:
    spec = group_spec(tmp_path, sandbox, "no-such-group@sandbox.test")
    with pytest.raises(ValueError, match="no group with the address no-such-group@sandbox.test"):
        for_each_values(spec)
    with pytest.raises(GraphError) as exc:
        graph.get("groups/00000000-0000-0000-0000-000000000000")
    assert exc.value.status == 404 and exc.value.code == "Request_ResourceNotFound"


def test_missing_permission_is_a_clear_error(tmp_path: Path, sandbox, graph) -> None:
    spec = group_spec(tmp_path, sandbox)
    sandbox.control("graph").call("POST", "app-roles", {"roles": ["Contacts.ReadWrite"]})
    with pytest.raises(ValueError) as exc:
        for_each_values(spec)
    message = str(exc.value)
    assert "all-staff@sandbox.test" in message and "403 Authorization_RequestDenied" in message
    assert "GroupMember.Read.All" in message and "ClientSecret" not in message
    sandbox.control("graph").call("POST", "app-roles", {"roles": ["Directory.Read.All"]})
    assert for_each_values(spec).values == MEMBERS


def test_run_over_a_group_into_per_mailbox_files(tmp_path: Path, sandbox, graph,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    spec = group_spec(tmp_path, sandbox)
    folder = Path(spec.path).parent
    code = cli.main(["--connections", str(folder), "run", "staff", "--all", "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert sorted(json.loads(out)) == MEMBERS

    def rows(mailbox: str) -> dict[str, str]:
        frame = pd.read_csv(tmp_path / "out" / f"{mailbox}.csv", dtype=str,
                            keep_default_na=False)
        return dict(zip(frame["id"], frame["name"], strict=True))

    assert rows("alice@sandbox.test") == {"1": "Ada"}
    assert rows("sales@sandbox.test") == {"2": "Ben", "3": "Cy"}
    assert rows("sync@sandbox.test") == {}
    assert not (tmp_path / "out" / "contractor@sandbox.test.csv").exists()


def test_credentials_from_the_graph_side(tmp_path: Path) -> None:
    side = ("Backend=graph;URL=https://127.0.0.1:1/v1.0;ClientId=a;ClientSecret=env:S;"
            "Email={mailbox};CABundle=ca.pem")
    text = (tmp_path / "x.yaml")
    text.write_text(f"""\
direction: left_to_right
for_each:
  mailbox: {{members_of: all-staff@sandbox.test}}
left:
  provider: file
  connection_string: "Path=in.csv"
  key: id
right:
  provider: exchange
  connection_string: "{side}"
  query: "SELECT * FROM Contacts"
""")
    spec = load_connection(text)
    assert spec.for_each is not None
    derived = spec.for_each.mailbox.graph_connection_string(spec.left, spec.right)  # type: ignore[union-attr]
    assert derived == "Backend=graph;URL=https://127.0.0.1:1/v1.0;ClientId=a;" \
        "ClientSecret=env:S;CABundle=ca.pem"
    text.write_text(text.read_text().replace("Backend=graph", "Backend=ews"))
    with pytest.raises(ConnectionFileError, match="members_of needs a connection_string"):
        load_connection(text)


def test_group_answers_validate_against_the_csdl(graph: GraphClient) -> None:
    if not CSDL.is_file():
        pytest.skip("Microsoft's Graph CSDL is not in ../shared/graph-schema")
    csdl = load_csdl(CSDL.resolve())
    [staff] = graph.get("groups", params={"$filter": "mail eq 'all-staff@sandbox.test'"})["value"]
    assert csdl.check("group", staff) == []
    assert csdl.check("group", graph.get(f"groups/{staff['id']}")) == []
    members = list(graph.items(f"groups/{staff['id']}/transitiveMembers"))
    assert members and all(csdl.check("directoryObject", m) == [] for m in members)
    users = list(graph.items(f"groups/{staff['id']}/transitiveMembers/microsoft.graph.user"))
    assert users and all(csdl.check("user", u) == [] for u in users)
    # the check is not vacuous: a property groups do not have is reported
    assert csdl.check("group", {**staff, "jobTitle": "x"}) != []


def test_dagster_sensor_makes_one_partition_per_member(tmp_path: Path, sandbox, graph) -> None:
    spec = group_spec(tmp_path, sandbox)
    defs = build_definitions(Path(spec.path).parent)
    sensor = next(s for s in defs.sensors or () if s.name == "staff_for_each_sensor")
    with dg.DagsterInstance.ephemeral() as instance:
        sandbox.control("graph").call("POST", "app-roles", {"roles": []})
        with dg.build_sensor_context(instance=instance, definitions=defs) as context:
            skipped = sensor(context)
        assert isinstance(skipped, dg.SkipReason)
        assert "all-staff@sandbox.test" in (skipped.skip_message or "")
        sandbox.control("graph").reset()
        with dg.build_sensor_context(instance=instance, definitions=defs) as context:
            result = sensor(context)
        [added] = result.dynamic_partitions_requests
        assert isinstance(added, dg.AddDynamicPartitionsRequest)
        assert sorted(added.partition_keys) == MEMBERS
