"""Runs many ``l2sync`` commands in one process, as a user would type them, one after another.

Reads a JSON list of cases on stdin: ``{"id", "cwd", "argv", "env", "timeout"}``; prints a JSON
list of results: ``{"id", "rc", "stdout", "stderr", "seconds"}``. Each case runs
``l2sync_dagster.cli.main(argv)`` in its project folder with its environment variables, with
stdout/stderr captured and a SIGALRM timeout (``rc`` is ``"timeout"`` when it fires). Starting
one process for many cases keeps a corpus of hostile inputs fast.
"""

import contextlib
import io
import json
import os
import signal
import sys
import time
import traceback


class _Timeout(BaseException):
    """Raised by the alarm; BaseException so that no ``except Exception`` swallows it."""


def _alarm(_signum: int, _frame: object) -> None:
    raise _Timeout


def run_case(case: dict) -> dict:
    """Run one case and return its result."""
    from l2sync_dagster import cli

    out, err = io.StringIO(), io.StringIO()
    saved_env = {k: os.environ.get(k) for k in case.get("env", {})}
    os.environ.update(case.get("env", {}))
    here = os.getcwd()
    os.chdir(case["cwd"])
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(int(case.get("timeout", 20)))
    start = time.monotonic()
    rc: int | str
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = cli.main(case["argv"])
    except _Timeout:
        rc = "timeout"
    except SystemExit as exc:  # argparse
        rc = exc.code if isinstance(exc.code, int) else 2
    except BaseException:  # noqa: BLE001 - a crash is a finding, reported with its traceback
        rc = "crash"
        err.write(traceback.format_exc())
    finally:
        signal.alarm(0)
        os.chdir(here)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return {"id": case["id"], "rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue(),
            "seconds": round(time.monotonic() - start, 3)}


def main() -> None:
    """Read the cases from stdin, print the results to stdout."""
    cases = json.load(sys.stdin)
    results = [run_case(c) for c in cases]
    sys.stdout.write(json.dumps(results))


if __name__ == "__main__":
    main()
