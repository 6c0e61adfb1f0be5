"""for_each: one connection over many mailboxes, each value its own partition (archive,
cursors, lock, run records), run from the command line (--each, --all --workers) and by
Dagster (dynamic partitions kept by a sensor).

The mechanics need no Exchange: a CRM in SQLite holds contacts by owner; each mailbox gets its
own CSV file (``{mailbox}`` in the file path) with the contacts it owns (``{mailbox}`` in the
SQL WHERE); the mailboxes come from a SELECT over a staff table, or from a list.
"""

import datetime as dt
import json
import sqlite3
import threading
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from dagster._core.instance_for_test import instance_for_test

from l2sync_dagster import cli
from l2sync_dagster.engine.mapping import MappingError
from l2sync_dagster.orchestration.definitions import build_definitions
from l2sync_dagster.spec.loader import ConnectionFileError, load_connection
from l2sync_dagster.state.store import StateStore, default_state_url
from l2sync_dagster.sync.for_each import for_each_values
from l2sync_dagster.sync.runner import Sync

FROM_SQL = """\
direction: left_to_right
for_each:
  mailbox: {provider: sql, connection_string: "URL=sqlite:///data/crm.db",
            query: "select email from staff where active = 1"}
left:
  provider: sql
  connection_string: "URL=sqlite:///data/crm.db"
  query: "SELECT id, name FROM contacts WHERE owner = '{mailbox}'"
  key: id
right:
  provider: file
  connection_string: "Path=out/{mailbox}.csv"
  key: id
"""

FROM_LIST = FROM_SQL.replace(
    """  mailbox: {provider: sql, connection_string: "URL=sqlite:///data/crm.db",
            query: "select email from staff where active = 1"}""",
    "  mailbox: [alice@contoso.com, bob@contoso.com]")

STAFF = [("alice@contoso.com", 1), ("bob@contoso.com", 1), ("carol@contoso.com", 0)]
CONTACTS = [("1", "Ada", "alice@contoso.com"), ("2", "Ben", "alice@contoso.com"),
            ("3", "Cy", "bob@contoso.com")]


def make_project(tmp: Path, text: str = FROM_SQL) -> Path:
    """connections/staff.yaml, data/crm.db (staff, contacts), one empty CSV per mailbox."""
    (tmp / "connections").mkdir()
    (tmp / "data").mkdir()
    (tmp / "out").mkdir()
    (tmp / "connections" / "staff.yaml").write_text(text)
    with sqlite3.connect(tmp / "data" / "crm.db") as db:
        db.execute("CREATE TABLE staff (email TEXT, active INTEGER)")
        db.executemany("INSERT INTO staff VALUES (?, ?)", STAFF)
        db.execute("CREATE TABLE contacts (id TEXT PRIMARY KEY, name TEXT, owner TEXT)")
        db.executemany("INSERT INTO contacts VALUES (?, ?, ?)", CONTACTS)
    for mailbox, _ in STAFF:
        (tmp / "out" / f"{mailbox}.csv").write_text("id,name\n")
    return tmp / "connections"


def rows(tmp: Path, mailbox: str) -> dict[str, str]:
    frame = pd.read_csv(tmp / "out" / f"{mailbox}.csv", dtype=str, keep_default_na=False)
    return dict(zip(frame["id"], frame["name"], strict=True))


def staff(tmp: Path, statement: str, *args: object) -> None:
    with sqlite3.connect(tmp / "data" / "crm.db") as db:
        db.execute(statement, args)


# --- the file ------------------------------------------------------------------------------


def test_values_from_a_select_and_a_list(tmp_path: Path) -> None:
    folder = make_project(tmp_path)
    spec = load_connection(folder / "staff.yaml")
    assert for_each_values(spec).values == ["alice@contoso.com", "bob@contoso.com"]
    one = spec.for_value("Alice@Contoso.com")
    assert one.name == "staff[alice@contoso.com]"
    assert one.right.connection_string == "Path=out/alice@contoso.com.csv"
    assert "owner = 'alice@contoso.com'" in (one.left.query or "")
    assert one.dagster_name == spec.dagster_name == "staff"
    (folder / "list.yaml").write_text(FROM_LIST)
    assert for_each_values(load_connection(folder / "list.yaml")).values == [
        "alice@contoso.com", "bob@contoso.com"]


def test_a_value_that_would_change_the_query_is_refused(tmp_path: Path) -> None:
    make_project(tmp_path)
    staff(tmp_path, "INSERT INTO staff VALUES (?, 1)", "x' OR '1'='1")
    found = for_each_values(load_connection(tmp_path / "connections" / "staff.yaml"))
    assert found.values == ["alice@contoso.com", "bob@contoso.com"]
    assert len(found.refused) == 1 and "letters, digits" in found.refused[0]


@pytest.mark.parametrize(("text", "message"), [
    (FROM_LIST.replace("Path=out/{mailbox}.csv", "Path=out/{mailbx}.csv"),
     "line 11: right.connection_string holds the unknown placeholder {mailbx}"),
    (FROM_LIST.replace("{mailbox}", "x"),
     "line 2: for_each needs {mailbox} in a connection string or query"),
    (FROM_LIST.replace("for_each:\n  mailbox: [alice@contoso.com, bob@contoso.com]\n", ""),
     "line 5: left.query holds {mailbox} but the file has no for_each: to fill it"),
    (FROM_LIST.replace("bob@contoso.com", "bob o'neil"),
     "line 3: for_each.mailbox: \"bob o'neil\" is not a mailbox address"),
    (FROM_SQL.replace("where active = 1", "where email = '{mailbox}'"),
     "line 4: for_each.mailbox.query holds the placeholder {mailbox}; the list of mailboxes"),
    (FROM_LIST.replace("for_each:\n", "for_each:\n  on_remove: clear\n"),
     "line 3: for_each.on_remove clear needs match_on: (fields that identify a record"),
    (FROM_LIST.replace("[alice@contoso.com, bob@contoso.com]", "{members_of: all@contoso.com}"),
     "line 3: for_each.mailbox members_of needs a connection_string: to read the group"),
    (FROM_LIST.replace("for_each:\n", "for_each:\n  per_run: 0\n"),
     "line 3: for_each.per_run"),
    (FROM_LIST.replace("for_each:\n", "for_each:\n  workers: many\n"),
     "line 3: for_each.workers"),
])
def test_refused_when_the_file_loads(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "staff.yaml").write_text(text)
    with pytest.raises(ConnectionFileError) as exc:
        load_connection(tmp_path / "staff.yaml")
    assert message in str(exc.value)


# --- the command line ----------------------------------------------------------------------


def run_cli(folder: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["--connections", str(folder), "run", "staff", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_each_and_all(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_project(tmp_path)
    code, out, _ = run_cli(folder, "--each", "bob@contoso.com", capsys=capsys)
    assert code == 0, out
    assert rows(tmp_path, "bob@contoso.com") == {"3": "Cy"}
    assert rows(tmp_path, "alice@contoso.com") == {}
    code, out, _ = run_cli(folder, "--all", "--workers", "2", "--json", capsys=capsys)
    assert code == 0
    result = json.loads(out)
    assert result["alice@contoso.com"]["right"]["inserted"] == 2
    assert result["bob@contoso.com"]["right"].get("inserted", 0) == 0  # synced already
    assert rows(tmp_path, "alice@contoso.com") == {"1": "Ada", "2": "Ben"}
    # each value has its own archive and runs
    store = StateStore(default_state_url(tmp_path))
    assert store.archive_size("staff[alice@contoso.com]") == 2
    assert store.archive_size("staff[bob@contoso.com]") == 1
    assert len(store.runs("staff[bob@contoso.com]")) == 2
    store.close()
    code, _, err = run_cli(folder, "--each", "carol@contoso.com", capsys=capsys)
    assert code == 1 and "is not one of the connection's 2 for_each values" in err
    code, _, err = run_cli(folder, capsys=capsys)
    assert code == 1 and "give --each VALUE (repeatable) or --all" in err


def test_one_mailbox_failing_never_stops_the_others(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_project(tmp_path)
    target = tmp_path / "out" / "alice@contoso.com.csv"
    target.unlink()
    target.mkdir()  # alice's file cannot be read nor written
    code, out, err = run_cli(folder, "--all", "--workers", "2", capsys=capsys)
    assert code == 1
    assert rows(tmp_path, "bob@contoso.com") == {"3": "Cy"}
    assert "1 of 2 mailboxes synced" in out
    assert "1 mailboxes failed" in err and "alice@contoso.com" in err
    target.rmdir()
    target.write_text("id,name\n")
    code, out, _ = run_cli(folder, "--all", capsys=capsys)
    assert code == 0 and rows(tmp_path, "alice@contoso.com") == {"1": "Ada", "2": "Ben"}


def test_the_lock_is_per_mailbox(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_project(tmp_path)
    store = StateStore(default_state_url(tmp_path))
    store.acquire_lock("staff[alice@contoso.com]", "another-run")
    try:
        code, out, err = run_cli(folder, "--all", capsys=capsys)
    finally:
        store.release_lock("staff[alice@contoso.com]", "another-run")
        store.close()
    assert code == 1
    assert rows(tmp_path, "bob@contoso.com") == {"3": "Cy"}  # not held up by alice's lock
    assert rows(tmp_path, "alice@contoso.com") == {}
    assert "alice@contoso.com" in err and "another-run" in err


# --- Dagster -------------------------------------------------------------------------------


def partitions_sensor(defs: dg.Definitions) -> dg.SensorDefinition:
    return next(s for s in defs.sensors or () if s.name == "staff_for_each_sensor")


def evaluate(defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
    """One tick of the partitions sensor, its requests applied to the instance."""
    sensor = partitions_sensor(defs)
    with dg.build_sensor_context(instance=instance, definitions=defs) as context:
        result = sensor(context)
    if isinstance(result, dg.SkipReason):
        return
    for request in result.dynamic_partitions_requests or ():
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)


def materialize(defs: dg.Definitions, instance: dg.DagsterInstance, key: str,
                raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    return dg.materialize(list(defs.assets or []), resources=defs.resources, instance=instance,
                          partition_key=key, raise_on_error=raise_on_error)


@pytest.mark.parametrize("on_remove", ["keep", "clear"])
def test_sensor_adds_and_removes_partitions(tmp_path: Path, on_remove: str) -> None:
    text = FROM_SQL.replace("for_each:\n",
                            f"match_on: [name]\nfor_each:\n  on_remove: {on_remove}\n")
    folder = make_project(tmp_path, text)
    defs = build_definitions(folder)
    with dg.DagsterInstance.ephemeral() as instance:
        evaluate(defs, instance)
        assert sorted(instance.get_dynamic_partitions("staff_for_each")) == [
            "alice@contoso.com", "bob@contoso.com"]
        assert materialize(defs, instance, "alice@contoso.com").success
        assert rows(tmp_path, "alice@contoso.com") == {"1": "Ada", "2": "Ben"}
        staff(tmp_path, "UPDATE staff SET active = 1 WHERE email = 'carol@contoso.com'")
        staff(tmp_path, "UPDATE staff SET active = 0 WHERE email = 'alice@contoso.com'")
        evaluate(defs, instance)
        assert sorted(instance.get_dynamic_partitions("staff_for_each")) == [
            "bob@contoso.com", "carol@contoso.com"]
    store = StateStore(default_state_url(tmp_path))
    kept = store.archive_size("staff[alice@contoso.com]")
    store.close()
    assert kept == (2 if on_remove == "keep" else 0)
    assert rows(tmp_path, "alice@contoso.com") == {"1": "Ada", "2": "Ben"}  # never touched


def test_dagster_partitions_each_their_own_state(tmp_path: Path) -> None:
    folder = make_project(tmp_path)
    defs = build_definitions(folder)
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("staff_for_each", ["alice@contoso.com",
                                                           "bob@contoso.com"])
        target = tmp_path / "out" / "alice@contoso.com.csv"
        target.unlink()
        target.mkdir()
        failed = materialize(defs, instance, "alice@contoso.com", raise_on_error=False)
        assert not failed.success
        assert materialize(defs, instance, "bob@contoso.com").success
        assert rows(tmp_path, "bob@contoso.com") == {"3": "Cy"}
        events = instance.get_latest_materialization_event(dg.AssetKey(["staff", "apply_right"]))
        assert events is not None and events.dagster_event.partition == "bob@contoso.com"
    store = StateStore(default_state_url(tmp_path))
    assert store.archive_size("staff[bob@contoso.com]") == 1
    assert store.archive_size("staff[alice@contoso.com]") == 0
    assert [r["status"] for r in store.runs("staff[alice@contoso.com]")] == ["failed"]
    store.close()


def test_two_concurrent_runs_of_one_partition(tmp_path: Path) -> None:
    """The second run of the same partition is refused by its lock while the first holds it;
    a run of another partition meanwhile goes through."""
    folder = make_project(tmp_path)
    defs = build_definitions(folder, retry=dg.RetryPolicy(max_retries=0))
    inside, release = threading.Event(), threading.Event()
    original = Sync.prepare

    def slow_prepare(self: Sync, **kwargs: object):  # type: ignore[no-untyped-def]
        if self.spec.partition_value == "alice@contoso.com" and not inside.is_set():
            inside.set()
            release.wait(30)
        return original(self, **kwargs)  # type: ignore[arg-type]

    results: dict[str, bool] = {}
    with dg.DagsterInstance.ephemeral() as instance, \
            pytest.MonkeyPatch.context() as mp:
        mp.setattr(Sync, "prepare", slow_prepare)
        instance.add_dynamic_partitions("staff_for_each", ["alice@contoso.com",
                                                           "bob@contoso.com"])
        first = threading.Thread(target=lambda: results.__setitem__(
            "first", materialize(defs, instance, "alice@contoso.com").success))
        first.start()
        assert inside.wait(30)
        second = materialize(defs, instance, "alice@contoso.com", raise_on_error=False)
        other = materialize(defs, instance, "bob@contoso.com")
        release.set()
        first.join(60)
    assert results == {"first": True}
    assert not second.success
    failure = next(e for e in second.all_events if e.is_step_failure)
    assert "locked" in str(failure.event_specific_data.error.message).lower()
    assert other.success
    assert rows(tmp_path, "alice@contoso.com") == {"1": "Ada", "2": "Ben"}


def test_mailboxes_are_not_serialized_per_connection(tmp_path: Path) -> None:
    """The shipped dagster.yaml allows one run per l2sync/connection value and the op pool
    l2sync_<name> one step: a for_each connection's runs carry neither (its partitions'
    own locks keep two runs off one mailbox); the schedule requests runs of up to
    for_each.per_run mailboxes."""
    folder = make_project(tmp_path, FROM_LIST + 'schedule: "0 * * * *"\n')
    defs = build_definitions(folder)
    job = defs.resolve_job_def("staff_job")
    assert job.tags.get("l2sync/for_each") == "staff"
    assert "l2sync/connection" not in job.tags
    (assets,) = [a for a in defs.assets or () if isinstance(a, dg.AssetsDefinition)]
    assert all(node.pool is None for node in [assets.node_def])
    schedule = defs.resolve_schedule_def("staff_schedule")
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("staff_for_each", ["alice@contoso.com",
                                                           "bob@contoso.com"])
        # the context's own instance (made from the ref) is disposed when it closes
        with dg.build_schedule_context(
                instance=instance, repository_def=defs.get_repository_def(),
                scheduled_execution_time=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)) as context:
            requests = schedule.evaluate_tick(context).run_requests or []
    # one run over both (for_each.per_run: 50), a partition range
    assert [(r.tags.get("dagster/asset_partition_range_start"),
             r.tags.get("dagster/asset_partition_range_end")) for r in requests] == [
        ("alice@contoso.com", "bob@contoso.com")]


def test_definitions_load_and_long_values_fit_the_store(tmp_path: Path) -> None:
    folder = make_project(tmp_path, FROM_LIST)
    dg.Definitions.validate_loadable(build_definitions(folder))
    spec = load_connection(folder / "staff.yaml")
    long = "a" * 240 + "@contoso.com"
    identity = spec.for_value(long).name
    assert len(identity) <= 200 and identity.startswith("staff[#")
    assert identity != spec.for_value("b" + long[1:]).name


def test_braces_that_are_the_users_text_stay_as_written(tmp_path: Path) -> None:
    """Only ``{mailbox}`` is a placeholder: an ODBC ``Driver={FreeTDS}`` or a literal in a WHERE
    loads and reaches the provider unchanged, with and without for_each."""
    literal = "owner = '{mailbox}' AND tag <> '{draft}'"
    folder = make_project(tmp_path, FROM_LIST.replace("owner = '{mailbox}'", literal))
    one = load_connection(folder / "staff.yaml").for_value("alice@contoso.com")
    assert "tag <> '{draft}'" in (one.left.query or "")
    assert "owner = 'alice@contoso.com'" in (one.left.query or "")
    plain = (FROM_LIST.replace("for_each:\n  mailbox: [alice@contoso.com, bob@contoso.com]\n", "")
             .replace("owner = '{mailbox}'", "tag <> '{draft}'")
             .replace("Path=out/{mailbox}.csv", "Path=out/{FreeTDS}.csv"))
    (folder / "plain.yaml").write_text(plain)
    spec = load_connection(folder / "plain.yaml")
    assert spec.right.connection_string == "Path=out/{FreeTDS}.csv"
    assert "'{draft}'" in (spec.left.query or "")


def test_cli_warns_of_source_rows_that_are_no_mailbox(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_project(tmp_path)
    staff(tmp_path, "INSERT INTO staff VALUES (?, 1)", "x' OR '1'='1")
    code, _, err = run_cli(folder, "--all", capsys=capsys)
    assert code == 0
    assert "warning:" in err and "letters, digits" in err
    assert rows(tmp_path, "alice@contoso.com") == {"1": "Ada", "2": "Ben"}


CLEARED = FROM_SQL.replace("for_each:\n", "for_each:\n  on_remove: clear\n").replace(
    """  provider: file
  connection_string: "Path=out/{mailbox}.csv"
  key: id""", """  provider: sql
  connection_string: "URL=sqlite:///out/{mailbox}.db"
  query: people
  key: pid""")


def mailbox_people(tmp: Path, mailbox: str) -> list[str]:
    with sqlite3.connect(tmp / "out" / f"{mailbox}.db") as db:
        return sorted(name for (name,) in db.execute("SELECT name FROM people"))


def test_removed_cleared_and_readded_mailbox_gets_no_duplicates(tmp_path: Path) -> None:
    """``on_remove: clear`` forgets which records the sync wrote into a mailbox whose system
    makes its own keys; when the mailbox rejoins, match_on pairs the records already there
    instead of writing them again."""
    folder = make_project(tmp_path, "match_on: [name]\n" + CLEARED)
    for mailbox, _ in STAFF:
        with sqlite3.connect(tmp_path / "out" / f"{mailbox}.db") as db:
            db.execute("CREATE TABLE people (pid INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT)")
    defs = build_definitions(folder)
    with dg.DagsterInstance.ephemeral() as instance:
        evaluate(defs, instance)
        assert materialize(defs, instance, "alice@contoso.com").success
        assert mailbox_people(tmp_path, "alice@contoso.com") == ["Ada", "Ben"]
        staff(tmp_path, "UPDATE staff SET active = 0 WHERE email = 'alice@contoso.com'")
        evaluate(defs, instance)
        store = StateStore(default_state_url(tmp_path))
        assert store.archive_size("staff[alice@contoso.com]") == 0
        store.close()
        staff(tmp_path, "UPDATE staff SET active = 1 WHERE email = 'alice@contoso.com'")
        evaluate(defs, instance)
        assert materialize(defs, instance, "alice@contoso.com").success
    assert mailbox_people(tmp_path, "alice@contoso.com") == ["Ada", "Ben"]


def test_clear_with_a_mirror_from_a_filtered_source_is_refused(tmp_path: Path) -> None:
    """A record that left the source's WHERE stays in the mailbox (out_of_scope: keep); after a
    clear it would no longer be known as the sync's own, and mirror would remove it."""
    text = "mirror: true\nmatch_on: [name]\n" + CLEARED
    folder = make_project(tmp_path, text)
    with sqlite3.connect(tmp_path / "out" / "alice@contoso.com.db") as db:
        db.execute("CREATE TABLE people (pid INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT)")
    spec = load_connection(folder / "staff.yaml").for_value("alice@contoso.com")
    with pytest.raises(MappingError, match="restricts the source of a mirror, and "
                                           "for_each.on_remove is clear"):
        Sync(spec).verify()
    fixed = text.replace("mirror: true\n", "mirror: true\ndeletes: {out_of_scope: delete}\n")
    (folder / "staff.yaml").write_text(fixed)
    Sync(load_connection(folder / "staff.yaml").for_value("alice@contoso.com")).verify()

