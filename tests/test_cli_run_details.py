"""`l2sync run`: `--json` carries what the run printed (each failed or rejected record with its
key and reason, requests, how each side was read), and transient errors are retried with the
assets' policy."""

import json
import sqlite3
from pathlib import Path

import pytest

from l2sync_dagster import cli
from l2sync_dagster.providers.base import ProviderError
from l2sync_dagster.providers.sql import SqlProvider


def _project(tmp: Path) -> Path:
    (tmp / "connections").mkdir()
    (tmp / "people.csv").write_text("id,name,born\n1,Ann,1990-01-02\n2,Bob,not a date\n"
                                    "3,Cid,1985-05-06\n")
    with sqlite3.connect(tmp / "crm.db") as conn:
        conn.execute("CREATE TABLE people (id TEXT PRIMARY KEY, name TEXT, born DATE)")
    (tmp / "connections" / "people.yaml").write_text("""
direction: left_to_right
left: {provider: file, connection_string: "Path=people.csv", key: id}
right: {provider: sql, connection_string: "URL=sqlite:///crm.db", query: people, key: id}
mapping:
  fields:
    - {left: name, right: name}
    - {left: born, right: born, type: date}
""")
    return tmp / "connections"


def test_json_lists_rejected_records_and_how_sides_were_read(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    conns = _project(tmp_path)
    monkeypatch.chdir(tmp_path)
    code = cli.main(["run", "people", "--json", "--connections", str(conns)])
    out = json.loads(capsys.readouterr().out)
    assert code == 3
    assert out["rejections"] == [{"side": "left", "key": "2", "reason": out["rejections"][0]
                                  ["reason"]}]
    assert "born" in out["rejections"][0]["reason"]
    assert out["failures"] == []
    assert out["reads"]["left"]["feed"] == "full" and out["reads"]["right"]["scope"] == "all"
    assert out["right"]["inserted"] == 2


def test_transient_error_is_retried_like_the_assets(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    conns = _project(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "_RETRY_DELAY", 0.01)
    real = SqlProvider.apply
    calls = {"n": 0}

    def dropped_once(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ProviderError("the connection was dropped", transient=True)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SqlProvider, "apply", dropped_once)
    code = cli.main(["run", "people", "--connections", str(conns)])
    captured = capsys.readouterr()
    assert code == 3, captured.err
    assert "retry 1 of 3" in captured.err
    with sqlite3.connect(tmp_path / "crm.db") as conn:
        assert sorted(r[0] for r in conn.execute("SELECT name FROM people")) == ["Ann", "Cid"]


def test_configuration_errors_are_not_retried(tmp_path: Path, capsys, monkeypatch) -> None:
    conns = _project(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "_RETRY_DELAY", 0.01)

    def bad(self, *args, **kwargs):
        raise ProviderError("no such column: born")

    monkeypatch.setattr(SqlProvider, "apply", bad)
    assert cli.main(["run", "people", "--connections", str(conns)]) == 1
    assert "retry" not in capsys.readouterr().err
