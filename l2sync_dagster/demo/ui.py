"""``make ui``: ``dagster dev`` on http://127.0.0.1:3000 with the sandbox servers running, so
that every connection in ``connections/`` can be materialized from the UI.

The sandbox keeps its data in ``.l2sync/sandbox`` (``make demo`` leaves it there), so runs
started from the UI continue where the demo stopped. Without that folder the sandbox starts
from its demo data and the state of the sandbox connections is reset to match.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

from l2sync_dagster.demo.customers import _seed
from l2sync_dagster.demo.microsoft import (
    SANDBOX_CONNECTIONS,
    fresh_state,
    running_sandbox,
    sandbox_state_dir,
    seed_directory_db,
    seed_exchange_db,
)
from l2sync_dagster.spec.loader import find_connection


def _default_sigint() -> None:
    # dagster dev ignores SIGTERM and SIGINT when SIGINT was ignored at its start (as in a
    # background job); give it the default handler so that Ctrl-C and SIGTERM stop it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(connections: Path = Path("connections"), port: int = 3000) -> int:
    """Start the sandbox, then ``dagster dev`` in the foreground until Ctrl-C."""
    project = Path(find_connection(SANDBOX_CONNECTIONS[0], connections).project_dir)
    state_dir = sandbox_state_dir(project)
    if not state_dir.exists():
        for name in SANDBOX_CONNECTIONS:
            fresh_state(find_connection(name, connections))
        seed_exchange_db(project)
        seed_directory_db(project)
    if not (project / "data" / "demo" / "crm.db").exists():
        _seed(project)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    with running_sandbox(state_dir) as sbx:
        for name, url in sbx.urls.items():
            print(f"sandbox {name:10} {url}", flush=True)
        for service in sbx.services.values():
            if note := service.notice():
                print(f"sandbox {note}", flush=True)
        child = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(port),
             "-f", str(project / "definitions.py")], env=dict(os.environ), cwd=project,
            preexec_fn=_default_sigint)
        try:
            return child.wait()
        except KeyboardInterrupt:
            child.send_signal(signal.SIGINT)
            return child.wait()


if __name__ == "__main__":
    sys.exit(main())
