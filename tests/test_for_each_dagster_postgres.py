"""for_each spread by Dagster the way a deployment runs it: a Dagster instance whose run, event
and schedule storage is PostgreSQL (``dagster-postgres``), the l2sync state store in the same
PostgreSQL database, and each mailbox's run in its own process (``dagster asset materialize``,
the definitions' default multiprocess executor), several at once. What the processes share is
only what the README says must be shared: the instance, the state store URL, the secrets as
environment variables. A mailbox whose lock another worker holds fails on that lock while the
others go through, and a second pass over every mailbox writes nothing."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from postgres_server import PostgresServer

from l2sync_dagster.state.store import StateStore

MAILBOXES = ["alice@contoso.com", "bob@contoso.com", "carol@contoso.com"]
SECRET_ENV = "FOR_EACH_PG_PASSWORD"


def project(tmp: Path, postgres: PostgresServer) -> Path:
    """connections/staff.yaml: CRM contacts in PostgreSQL, one CSV per mailbox."""
    (tmp / "connections").mkdir()
    (tmp / "out").mkdir()
    (tmp / "connections" / "staff.yaml").write_text(textwrap.dedent(f"""\
        direction: left_to_right
        for_each:
          mailbox: [{", ".join(MAILBOXES)}]
        left:
          provider: sql
          connection_string: "URL={postgres.url};Password=env:{SECRET_ENV}"
          query: "SELECT id, name FROM fe_contacts WHERE owner = '{{mailbox}}'"
          key: id
        right:
          provider: file
          connection_string: "Path=out/{{mailbox}}.csv"
          key: id
        """))
    (tmp / "definitions.py").write_text(
        "from pathlib import Path\n"
        "from l2sync_dagster.orchestration.definitions import build_definitions\n"
        "defs = build_definitions(Path(__file__).resolve().parent / 'connections')\n")
    for mailbox in MAILBOXES:
        (tmp / "out" / f"{mailbox}.csv").write_text("id,name\n")
    with psycopg.connect(host="127.0.0.1", port=postgres.port, user="sync",
                         password=postgres.password, dbname="l2sync_test") as db:
        db.execute("DROP TABLE IF EXISTS fe_contacts")
        db.execute("CREATE TABLE fe_contacts (id text PRIMARY KEY, name text, owner text)")
        for i in range(30):
            db.execute("INSERT INTO fe_contacts VALUES (%s, %s, %s)",
                       (str(i), f"person {i}", MAILBOXES[i % 3]))
    return tmp


def instance_home(tmp: Path, postgres: PostgresServer) -> Path:
    """A DAGSTER_HOME whose storage is the test PostgreSQL (password from the environment).

    ``scheme: postgresql+psycopg2``: SQLAlchemy 2.1 maps a plain ``postgresql://`` to psycopg 3,
    whose server-side parameters break dagster-postgres 0.29's ``NOTIFY run_events, %s``."""
    home = tmp / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(textwrap.dedent(f"""\
        storage:
          postgres:
            postgres_db:
              username: sync
              password: {{env: {SECRET_ENV}}}
              hostname: 127.0.0.1
              port: {postgres.port}
              db_name: l2sync_test
              scheme: postgresql+psycopg2
        telemetry:
          enabled: false
        """))
    return home


def materialize_in_processes(tmp: Path, env: dict[str, str],
                             mailboxes: list[str]) -> dict[str, subprocess.CompletedProcess]:
    """One ``dagster asset materialize`` process per mailbox, all started before any is
    waited for."""
    dagster = str(Path(sys.executable).with_name("dagster"))
    procs = {m: subprocess.Popen(
        [dagster, "asset", "materialize", "-f", "definitions.py", "--select", "group:staff",
         "--partition", m], cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True) for m in mailboxes}
    done = {}
    for m, proc in procs.items():
        out, _ = proc.communicate(timeout=300)
        done[m] = subprocess.CompletedProcess(proc.args, proc.returncode, out)
    return done


def csv_lines(tmp: Path, mailbox: str) -> list[str]:
    return sorted((tmp / "out" / f"{mailbox}.csv").read_text().splitlines()[1:])


@pytest.mark.postgres
def test_mailboxes_run_in_parallel_processes_on_a_postgres_instance(
        tmp_path: Path, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> None:
    tmp = project(tmp_path, postgres)
    home = instance_home(tmp, postgres)
    state_url = postgres.url.replace("sync@", f"sync:{postgres.password}@")
    monkeypatch.setenv(SECRET_ENV, postgres.password)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    env = {**os.environ, "L2SYNC_STATE_URL": state_url}
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("staff_for_each", MAILBOXES)
    store = StateStore(state_url)
    try:
        for mailbox in MAILBOXES:
            store.reset(f"staff[{mailbox}]", history=True)
        # another worker is syncing carol's mailbox: her run must fail on the lock
        store.acquire_lock("staff[carol@contoso.com]", "another-worker")
        first = materialize_in_processes(tmp, env, MAILBOXES)
        store.release_lock("staff[carol@contoso.com]", "another-worker")
        for mailbox in MAILBOXES[:2]:
            assert first[mailbox].returncode == 0, first[mailbox].stdout[-3000:]
            assert "Multiprocess executor: parent process" in first[mailbox].stdout
        assert first["carol@contoso.com"].returncode != 0
        assert "is being synced by run another-worker" in first["carol@contoso.com"].stdout
        assert csv_lines(tmp, "carol@contoso.com") == []
        for i, mailbox in enumerate(MAILBOXES[:2]):
            assert csv_lines(tmp, mailbox) == sorted(
                f"{n},person {n}" for n in range(i, 30, 3))
            assert store.archive_size(f"staff[{mailbox}]") == 10

        second = materialize_in_processes(tmp, env, MAILBOXES)
        for mailbox in MAILBOXES:
            assert second[mailbox].returncode == 0, second[mailbox].stdout[-3000:]
            assert store.archive_size(f"staff[{mailbox}]") == 10
        assert csv_lines(tmp, "carol@contoso.com") == sorted(
            f"{n},person {n}" for n in range(2, 30, 3))
        runs = {m: [r["status"] for r in store.runs(f"staff[{m}]")] for m in MAILBOXES}
        assert runs["alice@contoso.com"] == runs["bob@contoso.com"] == ["succeeded"] * 2
    finally:
        store.close()
    with dg.DagsterInstance.get() as instance:
        # the runs, their partitions and materializations are in the PostgreSQL instance
        records = instance.get_run_records()
        by_partition: dict[str, list[str]] = {}
        for record in records:
            partition = record.dagster_run.tags.get("dagster/partition")
            by_partition.setdefault(partition, []).append(record.dagster_run.status.value)
        assert sorted(by_partition["carol@contoso.com"]) == ["FAILURE", "SUCCESS"]
        assert by_partition["alice@contoso.com"] == ["SUCCESS", "SUCCESS"]
        event = instance.get_latest_materialization_event(dg.AssetKey(["staff", "apply_right"]))
        assert event is not None and event.dagster_event.partition in MAILBOXES
