"""The l2sync command line, run as a real subprocess like a user runs it."""

import json
import os
import subprocess
import sys
from pathlib import Path

from project_helpers import demo_project

L2SYNC = str(Path(sys.executable).with_name("l2sync"))


def l2sync(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([L2SYNC, *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_verify_preview_plan_run_status(tmp_path):
    demo_project(tmp_path)
    r = l2sync("verify", "customers_demo", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "email <-> email_address" in r.stdout

    r = l2sync("preview", "customers_demo", "--side", "right", "--limit", "1", cwd=tmp_path)
    assert r.returncode == 0 and "Grace" in r.stdout

    csv_before = (tmp_path / "data/demo/customers.csv").read_bytes()
    r = l2sync("plan", "customers_demo", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "insert" in r.stdout and "first-sync match" in r.stdout
    assert (tmp_path / "data/demo/customers.csv").read_bytes() == csv_before  # dry run

    r = l2sync("run", "customers_demo", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    counts = json.loads(r.stdout)
    assert counts["right"]["inserted"] == 3 and counts["left"]["inserted"] == 1
    assert counts["conflicts"] == 1 and counts["status"] == "succeeded"

    r = l2sync("run", "connections/customers_demo.yaml", "--json", cwd=tmp_path)
    again = json.loads(r.stdout)
    assert again["right"]["inserted"] == 0 and again["left"]["updated"] == 0

    r = l2sync("status", "customers_demo", cwd=tmp_path)
    assert r.returncode == 0 and "succeeded" in r.stdout and "pairs in the archive: 5" in r.stdout


def test_errors_are_one_line_and_name_what_to_fix(tmp_path):
    conns = demo_project(tmp_path)
    r = l2sync("run", "no_such_connection", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "customers_demo" in r.stderr

    (conns / "bad.yaml").write_text("direction: sideways\nleft: {}\n")
    r = l2sync("plan", "bad", cwd=tmp_path)
    assert r.returncode == 1 and "bad.yaml line 1: direction must be one of" in r.stderr

    text = (conns / "customers_demo.yaml").read_text()
    (conns / "env.yaml").write_text(text.replace(
        'URL=sqlite:///data/demo/crm.db"', 'URL=sqlite:///data/demo/crm.db;Password=env:NOPE_X"'))
    os.environ.pop("NOPE_X", None)
    r = l2sync("run", "env", cwd=tmp_path)
    assert r.returncode == 1 and "NOPE_X" in r.stderr


def test_second_run_while_locked_fails_fast(tmp_path):
    demo_project(tmp_path)
    from l2sync_dagster.spec.loader import find_connection
    from l2sync_dagster.state.store import StateStore, default_state_url

    spec = find_connection("customers_demo", tmp_path / "connections")
    store = StateStore(default_state_url(tmp_path))
    store.acquire_lock(spec.name, "other-run")  # held by this (live) test process
    r = l2sync("run", "customers_demo", cwd=tmp_path)
    assert r.returncode == 1 and "being synced by run other-run" in r.stderr
    assert "l2sync unlock customers_demo" in r.stderr
    r = l2sync("unlock", "customers_demo", cwd=tmp_path)
    assert r.returncode == 0 and "lock removed" in r.stdout
    store.close()
