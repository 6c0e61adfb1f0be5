"""exchangelib's own test suite (tests/test_items/*, tests/test_folder.py) against the EWS sandbox.

Usage (from the repository root)::

    /work/main/.venv/bin/python bench/exchangelib_suite/run.py --mirror PATH/TO/exchangelib.git

Takes exchangelib's ``tests/`` at the tag of the installed version (``git archive`` from the
bare mirror into a temporary folder; nothing of it is kept), starts ``l2sync sandbox --only ews``
on loopback, writes the suite's ``settings.yml`` for it and runs every chosen module with pytest
and a per-test timeout (pytest-timeout) plus a per-module subprocess timeout. The suite's test
dependencies live in bench/exchangelib_suite/.venv (made here when missing; it sees the
project's venv through a .pth file). Results per module go to bench/results/exchangelib_suite.json
with the tests we deliberately do not support and exchangelib's own schema-invalid requests
(unsupported.py).
"""

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
from unsupported import CLIENT_BUGS, OPERATIONS, UNSUPPORTED, client_bug_for, reason_for  # noqa: E402

VENV = HERE / ".venv"
SUITE_PYTHON = VENV / "bin" / "python"
#: exchangelib's test requirements that its item and folder tests import, plus the timeout plugin
SUITE_PACKAGES = ("psutil", "requests_mock", "python-dateutil", "pytz", "pytest-timeout")
DEFAULT_MODULES = ("tests/test_items", "tests/test_folder.py")
OUT = ROOT / "bench" / "results" / "exchangelib_suite.json"
#: the demo user the suite logs in as (a mailbox of the sandbox tenant)
ACCOUNT = "sync@sandbox.test"


def installed_version() -> str:
    """exchangelib's version in the project's venv (this interpreter)."""
    import exchangelib

    return exchangelib.__version__


def ensure_venv() -> None:
    """bench/exchangelib_suite/.venv with the suite's extra packages, on top of this venv."""
    if SUITE_PYTHON.exists():
        return
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    site = next(VENV.glob("lib/python3*/site-packages"))
    parent = [p for p in sys.path if p.endswith("site-packages")]
    (site / "project_venv.pth").write_text("\n".join(parent) + "\n")
    subprocess.run([str(SUITE_PYTHON), "-m", "pip", "install", "-q", *SUITE_PACKAGES], check=True)


def extract_tests(mirror: Path, tag: str, dest: Path) -> None:
    """exchangelib's ``tests/`` at ``tag`` into ``dest`` (only the tests: the package imported
    is the installed one)."""
    blob = subprocess.run(["git", "--git-dir", str(mirror), "archive", "--format=tar", tag,
                           "tests"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(dest, filter="data")


def start_sandbox(state: Path) -> tuple[subprocess.Popen, str]:
    """``l2sync sandbox --only ews``; returns the process and the EWS endpoint."""
    # CI=true: the sandbox refuses to start without Microsoft's schemas, so every request and
    # response of the run is validated (L2SYNC_SHARED / L2SYNC_EWS_SCHEMA name their folder)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT), "CI": "true"}
    proc = subprocess.Popen([sys.executable, "-m", "l2sync_dagster.cli", "sandbox", "--state",
                             str(state), "--only", "ews"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT)
    url = None
    for line in proc.stdout or ():
        name, _, value = line.strip().partition(" ")
        if name == "ews":
            url = value
        if name == "ready":
            break
    if url is None:
        proc.kill()
        raise RuntimeError("l2sync sandbox did not start (are the EWS schemas found? set "
                           "L2SYNC_SHARED or L2SYNC_EWS_SCHEMA)")
    return proc, url.rstrip("/")


def sandbox_stats(base_url: str) -> dict:
    """What the sandbox counted: requests it refused as schema-invalid, responses it produced
    that failed its own schema check (both should be explained, the second must be empty)."""
    from l2sync_dagster.sandbox.control import SandboxControl

    stats = SandboxControl("ews", base_url).stats()
    return {"rejected_requests": stats.get("rejected_requests", 0),
            "invalid_responses": stats.get("invalid_responses", [])}


def write_settings(suite: Path, endpoint: str) -> None:
    """The suite's settings.yml: the sandbox's host:port as server, the demo user."""
    from urllib.parse import urlsplit

    server = urlsplit(endpoint).netloc
    (suite / "settings.yml").write_text(
        f"server: '{server}'\nautodiscover_server: '{server}'\n"
        f"username: '{ACCOUNT}'\npassword: 'sandbox'\n"
        f"account: '{ACCOUNT}'\nalias: '{ACCOUNT}'\nverify_ssl: True\n")


def modules_of(suite: Path, chosen: list[str]) -> list[str]:
    """The test modules (relative paths) the chosen files and folders stand for."""
    out = []
    for c in chosen:
        p = suite / c
        if p.is_dir():
            out += sorted(str(f.relative_to(suite)) for f in p.glob("test_*.py"))
        else:
            out.append(c)
    return out


def run_module(suite: Path, module: str, endpoint: str, per_test: int, per_module: int) -> dict:
    """One module under pytest; counts and the names of failed tests from its junit report."""
    junit = suite / (module.replace("/", "_") + ".xml")
    env = {**os.environ, "EXCHANGELIB_SUITE_ENDPOINT": endpoint, "PYTHONPATH": str(HERE)}
    env.pop("REQUESTS_CA_BUNDLE", None)
    t0 = time.monotonic()
    try:
        subprocess.run([str(SUITE_PYTHON), "-m", "pytest", "-q", "-p", "plain_http",
                        "-p", "no:cacheprovider", f"--timeout={per_test}",
                        f"--junitxml={junit}", module], cwd=suite, env=env,
                       capture_output=True, timeout=per_module)
    except subprocess.TimeoutExpired:
        return {"error": f"module timed out after {per_module} s", "passed": 0, "failed": 0,
                "skipped": 0, "seconds": per_module}
    seconds = round(time.monotonic() - t0, 1)
    if not junit.exists():
        return {"error": "no junit report", "passed": 0, "failed": 0, "skipped": 0,
                "seconds": seconds}
    passed, failed, skipped = [], [], []
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}.{case.get('name')}"
        if case.find("skipped") is not None:
            skipped.append(name)
        elif case.find("failure") is not None or case.find("error") is not None:
            node = case.find("failure") if case.find("failure") is not None else case.find("error")
            failed.append({"test": name, "why": (node.get("message") or "")[:300]})
        else:
            passed.append(name)
    return {"passed": len(passed), "failed": len(failed), "skipped": len(skipped),
            "seconds": seconds, "failures": failed}


def main(argv: list[str] | None = None) -> int:
    """Run the chosen modules and write the results file."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mirror", type=Path, required=True,
                   help="bare git directory of exchangelib's repository")
    p.add_argument("--modules", nargs="*", default=list(DEFAULT_MODULES))
    p.add_argument("--per-test-timeout", type=int, default=120)
    p.add_argument("--per-module-timeout", type=int, default=1800)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    ensure_venv()
    version = installed_version()
    with tempfile.TemporaryDirectory(prefix="exchangelib-suite-") as tmp:
        suite = Path(tmp) / "exchangelib"
        suite.mkdir()
        extract_tests(args.mirror, f"v{version}", suite)
        proc, base_url = start_sandbox(Path(tmp) / "state")
        endpoint = base_url + "/EWS/Exchange.asmx"
        try:
            write_settings(suite, endpoint)
            modules = {}
            for m in modules_of(suite, args.modules):
                modules[m] = run_module(suite, m, endpoint, args.per_test_timeout,
                                        args.per_module_timeout)
                r = modules[m]
                print(f"{m}: {r['passed']} passed, {r['failed']} failed, {r['skipped']} skipped"
                      f" ({r['seconds']} s) {r.get('error', '')}", flush=True)
            stats = sandbox_stats(base_url)
        finally:
            proc.terminate()
            proc.wait(30)
    failures = [f for r in modules.values() for f in r.get("failures", [])]
    for f in failures:
        f["unsupported"] = reason_for(f["test"], f["why"])
        f["client_bug"] = client_bug_for(f["test"], f["why"])
    total = {k: sum(r[k] for r in modules.values()) for k in ("passed", "failed", "skipped")}
    total["tests"] = sum(total.values())
    total["failed_unsupported"] = sum(1 for f in failures if f["unsupported"])
    total["failed_client_bug"] = sum(1 for f in failures if f["client_bug"])
    result = {"exchangelib": version, "commit": _head(), "total": total,
              "sandbox": stats, "history": _history(args.out), "modules": modules,
              "unsupported": UNSUPPORTED, "unsupported_operations": OPERATIONS,
              "client_bugs": {k: reason for k, (_, reason) in CLIENT_BUGS.items()}}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(total))
    return 0


def _history(out: Path) -> list[dict]:
    """Earlier runs' totals (from the results file being replaced), oldest first."""
    if not out.exists():
        return []
    old = json.loads(out.read_text())
    return [*old.get("history", []), {"commit": old.get("commit"), "total": old.get("total")}]


def _head() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
