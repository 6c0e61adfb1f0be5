"""The Layer2 walkthrough as a new user runs it, through the `l2sync` command line against the
sandbox: Dynamics 365 accounts -> a SharePoint list with `SELECT TOP 5 ...`, one way, then the
same file switched to both ways (TOP refused with the reason), then without TOP. No duplicate,
no lost row, and a second run has nothing to do.
"""

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from l2sync_dagster.demo.microsoft import _graph, _list_items, running_sandbox
from l2sync_dagster.sandbox.control import SandboxControl
from l2sync_dagster.spec.loader import find_connection

REPO = Path(__file__).resolve().parent.parent
NAME = "dynamics_accounts_to_sharepoint"
QUERY = ('query: "SELECT name, emailaddress1, telephone1, address1_city, revenue '
         'FROM accounts"')
TOP5 = ('query: "SELECT TOP 5 name, emailaddress1, telephone1, address1_city, revenue '
        'FROM accounts"')


def _l2sync(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "l2sync_dagster.cli", "--connections",
         str(project / "connections"), *args],
        cwd=project, capture_output=True, text=True, timeout=300)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "connections").mkdir()
    shutil.copy(REPO / "connections" / f"{NAME}.yaml", tmp_path / "connections")
    return tmp_path


def test_top5_one_way_then_both_ways(project: Path) -> None:
    path = project / "connections" / f"{NAME}.yaml"
    _edit(path, QUERY, TOP5)
    with running_sandbox() as sbx:
        dataverse = SandboxControl("dataverse", sbx.urls["dataverse"], sbx.ca_path)
        graph = _graph(find_connection(NAME, project / "connections"))

        def accounts() -> list[dict]:
            return dataverse.call("GET", "rows/accounts")["value"]

        def items() -> list[dict]:
            return [i["fields"] for i in _list_items(graph, "Customers")]

        n_accounts, n_items = len(accounts()), len(items())
        assert n_accounts > 5 and n_items > 0
        # 1. one way with TOP 5: five accounts arrive, the list keeps its own customers
        for _ in range(2):
            r = _l2sync(project, "run", NAME, "--json")
            assert r.returncode == 0, r.stderr
        assert n_items < len(items()) <= n_items + 5
        titles = Counter(i.get("Title") for i in items())
        assert all(c == 1 for c in titles.values()), titles
        # 2. the same file switched to both ways: TOP is refused, with the reason
        _edit(path, "direction: left_to_right", "direction: bidirectional")
        r = _l2sync(project, "run", NAME)
        assert r.returncode != 0
        assert "TOP 5" in (r.stdout + r.stderr) and "writes to it" in (r.stdout + r.stderr)
        assert "Traceback" not in r.stderr
        assert len(accounts()) == n_accounts  # nothing was written
        # 3. without TOP: every account in the list and every list customer in Dynamics, once
        _edit(path, TOP5, QUERY)
        r = _l2sync(project, "run", NAME, "--json")
        assert r.returncode == 0, r.stdout + r.stderr
        r = _l2sync(project, "run", NAME, "--json")
        assert r.returncode == 0, r.stdout + r.stderr
        again = json.loads(r.stdout)
        assert all(again[s].get(op, 0) == 0 for s in ("left", "right")
                   for op in ("inserted", "updated", "deleted")), again
        names = Counter(a["name"] for a in accounts())
        titles = Counter(i.get("Title") for i in items())
        assert all(c == 1 for c in names.values()), names
        assert all(c == 1 for c in titles.values()), titles
        assert set(names) == set(titles)
        graph.close()
