"""``dagster dev`` started as a child process the way a user starts it, and its GraphQL API.

Dagster maps SIGTERM to SIGINT and ignores both when SIGINT was ignored at start (a shell runs
background jobs that way), so the child gets SIGINT reset to the default and its own session;
it is stopped with SIGINT, and only when it does not exit in time is its process group killed.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from loopback import free_port

REPO = Path(__file__).resolve().parent.parent
DAGSTER = Path(sys.executable).parent / "dagster"

DEFINITIONS_PY = """\
from pathlib import Path

from l2sync_dagster.orchestration.definitions import build_definitions

defs = build_definitions(Path(__file__).resolve().parent / "connections")
"""



def _default_sigint() -> None:  # runs in the child between fork and exec
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class GraphQLError(RuntimeError):
    """A GraphQL response with ``errors``."""


@dataclass
class DagsterDev:
    """A running ``dagster dev`` serving ``project/definitions.py`` on ``url``."""

    process: subprocess.Popen
    url: str
    project: Path
    log_path: Path

    @classmethod
    @contextlib.contextmanager
    def running(cls, project: Path, timeout: float = 60) -> Iterator["DagsterDev"]:
        """Start it in ``project`` (which holds ``connections/``), wait until its code location
        has loaded, yield it, stop it."""
        home = project / ".dagster_home"
        home.mkdir(exist_ok=True)
        shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
        (project / "definitions.py").write_text(DEFINITIONS_PY)
        port = free_port()
        log_path = project / "dagster_dev.log"
        env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONUNBUFFERED": "1"}
        env.pop("DAGSTER_IS_DEFS_VALIDATION_CLI", None)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [str(DAGSTER), "dev", "-h", "127.0.0.1", "-p", str(port), "-f", "definitions.py"],
                cwd=project, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_default_sigint)
        dev = cls(proc, f"http://127.0.0.1:{port}", project, log_path)
        try:
            dev.wait_ready(timeout)
            yield dev
        finally:
            dev.stop()

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of dagster dev's output (for failure messages)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, timeout: float) -> None:
        """Until the webserver answers and its code location is loaded (or raise)."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dagster dev exited ({self.process.returncode}):\n"
                                   f"{self.log_tail()}")
            try:
                if requests.get(f"{self.url}/server_info", timeout=2).ok:
                    status = self.location_status()
                    if status == "LOADED":
                        return
                    last = f"code location {status}"
            except (requests.ConnectionError, requests.Timeout) as exc:
                last = type(exc).__name__
            time.sleep(0.3)
        raise RuntimeError(f"dagster dev not ready after {timeout}s ({last}):\n{self.log_tail()}")

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """``data`` of a GraphQL request; raises :class:`GraphQLError` on ``errors``."""
        resp = requests.post(f"{self.url}/graphql",
                             json={"query": query, "variables": variables or {}}, timeout=30)
        resp.raise_for_status()
        body = resp.json()
        if body.get("errors"):
            raise GraphQLError(str(body["errors"]))
        return body["data"]

    def location_status(self) -> str:
        """The load status of the (single) code location: LOADING, LOADED, ..."""
        data = self.graphql("""{ workspaceOrError { __typename ... on Workspace {
            locationEntries { name loadStatus
              locationOrLoadError { __typename ... on PythonError { message } } } } } }""")
        entries = data["workspaceOrError"].get("locationEntries") or []
        if not entries:
            return "MISSING"
        entry = entries[0]
        error = entry["locationOrLoadError"]
        if error and error["__typename"] == "PythonError":
            raise RuntimeError(f"code location failed to load: {error['message']}")
        return entry["loadStatus"]

    def repository(self) -> tuple[str, str]:
        """(location name, repository name) of the loaded code location."""
        data = self.graphql("""{ repositoriesOrError { __typename ... on RepositoryConnection {
            nodes { name location { name } } } } }""")
        (repo,) = data["repositoriesOrError"]["nodes"]
        return repo["location"]["name"], repo["name"]

    def stop(self, timeout: float = 30) -> int | None:
        """SIGINT and wait; SIGKILL to its process group only when it does not exit in time."""
        proc = self.process
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
                raise RuntimeError(f"dagster dev ignored SIGINT for {timeout}s; killed:\n"
                                   f"{self.log_tail()}") from None
        # children (webserver, daemon, code server) share the session; none may outlive it
        deadline = time.monotonic() + 10
        while _group_alive(proc.pid):
            if time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                raise RuntimeError("dagster dev left child processes behind; killed them")
            time.sleep(0.2)
        return proc.returncode


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies waiting for init do not count:
    init in a container may reap them late or never)."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: ask the kernel, zombies included
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # the process ended meanwhile
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            return True
    return False
