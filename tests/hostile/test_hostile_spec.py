"""The hostile corpus for connection files, connection strings and select statements.

Each family runs in one driver subprocess (``spec_corpus.py``), many cases in-process through
``l2sync``'s ``main``. Every case: ends within its timeout, prints no traceback, exits non-zero
when refused (zero when it must be accepted), prints short lines that name the file (and line,
key or side where the case says), never shows the secret marker nor stores it in the state
database, and leaves the target unchanged when refused.
"""

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from spec_corpus import FAMILIES, FILE, MARKER, Case

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
MAX_LINE = 500


@functools.cache
def _drivers() -> dict[str, subprocess.Popen[str]]:
    """One driver process per family, all started at once (they run side by side)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), str(HERE), os.environ.get("PYTHONPATH", "")])}
    env.pop("L2SYNC_STATE_URL", None)
    return {family: subprocess.Popen([sys.executable, str(HERE / "spec_corpus.py"), family],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=env, cwd=REPO)
            for family in FAMILIES}


@functools.cache
def results(family: str) -> dict[str, dict[str, Any]]:
    """The family's results by case id (its driver runs once)."""
    proc = _drivers()[family]
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 0, stderr[-3000:]
    out = {}
    for line in stdout.splitlines():
        item = json.loads(line)
        out[item["id"]] = item
    return out


CASES = [(family, case) for family, make in FAMILIES.items() for case in make()]


def test_corpus_sizes() -> None:
    sizes = {family: len(make()) for family, make in FAMILIES.items()}
    assert sizes["yaml"] >= 50 and sizes["connection_string"] >= 50 and sizes["select"] >= 20
    ids = [case.id for _, case in CASES]
    assert len(ids) == len(set(ids))


PARAMS = [
    pytest.param(family, case, id=f"{family}-{case.id}", marks=[pytest.mark.xfail(
        strict=True, reason=case.known)] if case.known else [])
    for family, case in CASES
]


@pytest.mark.parametrize(("family", "case"), PARAMS)
def test_hostile_input(family: str, case: Case) -> None:
    r = results(family)[case.id]
    shown = (r["out"] + r["err"])[-3000:]
    assert not r["timed_out"], f"no end within {case.timeout}s"
    assert r["crashed"] is None, r["crashed"]
    assert r["elapsed"] < case.timeout
    assert "Traceback" not in r["out"] + r["err"], shown
    assert r["max_line"] < MAX_LINE, f"a line of {r['max_line']} characters: {shown[:600]}"
    assert MARKER not in r["out"] + r["err"], shown
    assert not r["secret_in_state"], "the secret reached the state store"
    if case.refused is True:
        assert r["code"] not in (0, None), shown
    elif case.refused is False:
        assert r["code"] == 0, shown
    if r["code"] != 0:
        if case.parser is None:
            assert FILE in r["err"], shown
            if case.line is not None:
                assert f"{FILE} line {case.line}:" in r["err"], shown
        for name in case.names:
            assert name in r["err"], (name, shown)
        assert r["target_same"], "a refused run changed the target"
