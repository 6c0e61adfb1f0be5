"""``l2sync sandbox`` started as a child process, the way users start it.

Tests use the session fixture ``sandbox`` (conftest.py). At the end of the session every
service must report no invalid responses (a response that failed the sandbox's own schema
check, or a crashed handler): that is a test failure.
"""

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from l2sync_dagster.sandbox.control import SandboxControl


@dataclass
class SandboxProcess:
    """A running ``l2sync sandbox``: ``urls`` per service, ``ca_path``, ``notices``."""

    process: subprocess.Popen
    urls: dict[str, str]
    ca_path: Path
    notices: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, state_dir: Path, *extra: str, timeout: float = 60) -> "SandboxProcess":
        """Start it and wait for ``ready``."""
        cmd = [sys.executable, "-m", "l2sync_dagster.cli", "sandbox", "--state", str(state_dir),
               *extra]
        err_path = state_dir.parent / f"{state_dir.name}.stderr"
        state_dir.mkdir(parents=True, exist_ok=True)
        err = open(err_path, "w")  # noqa: SIM115 - lives as long as the process
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        urls: dict[str, str] = {}
        ca: Path | None = None
        lines: queue.Queue[str] = queue.Queue()
        # a reader thread: select() on a buffered pipe misses lines already in the buffer
        threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout or ()] + [lines.put("")],
                         daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                line = ""
            if not line:
                proc.kill()
                raise RuntimeError(f"l2sync sandbox did not start: {err_path.read_text()}")
            name, _, value = line.strip().partition(" ")
            if name == "ready":
                break
            if name == "ca":
                ca = Path(value)
            else:
                urls[name] = value
        assert ca is not None, "l2sync sandbox printed no ca line"
        notices = err_path.read_text().splitlines()
        return cls(proc, urls, ca, notices)

    def control(self, name: str) -> SandboxControl:
        """The control client of one service."""
        return SandboxControl(name, self.urls[name], self.ca_path)

    def invalid_responses(self) -> dict[str, list[str]]:
        """Per service, the responses that failed validation (should be empty)."""
        out = {}
        for name in self.urls:
            bad = self.control(name).stats()["invalid_responses"]
            if bad:
                out[name] = bad
        return out

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit code."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
