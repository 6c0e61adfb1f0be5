"""SAP CAP (``@sap/cds``) as a third-party OData v4 server for the ``odata`` provider's tests.

The CAP project lives in ``tests/odata_cap`` (``package.json`` + ``package-lock.json``; the
Makefile's ``odata-cap`` target runs ``npm ci`` there, and :func:`ensure_installed` does the same
when the tests run without ``make``). The service ``/odata/v4/test`` has one entity set,
``People`` (``cuid`` UUID keys that the server makes unless the client sends one, ``name``,
``city``, ``age`` and CAP's ``managed`` timestamps, read-only to clients; ``modifiedAt`` is the
ETag). The database is SQLite in memory (through sql.js, WebAssembly shipped in its npm package,
so ``npm ci --ignore-scripts`` compiles and downloads nothing): every start is empty.

This is not our code: it is the OData implementation many SAP projects run, and it reads the
URLs inside a ``$batch`` the way the OData v4 spec's relative form says.
"""

import os
import shutil
import subprocess
import time
from pathlib import Path

import requests
from loopback import free_port

PROJECT = Path(__file__).parent / "odata_cap"
SERVICE_PATH = "/odata/v4/test"


class CapUnavailable(RuntimeError):
    """Node/npm or the CAP packages are missing (the reason says which)."""


def ensure_installed() -> None:
    """``npm ci --ignore-scripts`` in ``tests/odata_cap`` unless its node_modules match the
    lock file."""
    marker = PROJECT / "node_modules" / ".package-lock.json"
    lock = PROJECT / "package-lock.json"
    if marker.is_file() and marker.stat().st_mtime >= lock.stat().st_mtime and \
            (PROJECT / "node_modules" / "@sap" / "cds" / "bin" / "serve.js").is_file():
        return
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise CapUnavailable("node and npm are needed for the CAP OData server "
                             "(apt-get install nodejs npm), then `make odata-cap`")
    proc = subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=PROJECT,
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise CapUnavailable(f"npm ci in {PROJECT} failed: {proc.stderr[-2000:]}")


class CapServer:
    """A running ``cds-serve`` on a loopback port; ``url`` is the service root."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.log = log
        self.url = f"http://127.0.0.1:{port}{SERVICE_PATH}"
        self.http = requests.Session()

    # --- another client: what a user or another application does ------------------------------
    def people(self) -> list[dict]:
        """Every record of People (following next links)."""
        out: list[dict] = []
        link = f"{self.url}/People"
        while link:
            resp = self.http.get(link, timeout=30)
            resp.raise_for_status()
            data = resp.json()
            out.extend(data["value"])
            nxt = data.get("@odata.nextLink")
            link = requests.compat.urljoin(f"{self.url}/", nxt) if nxt else ""
        return out

    def create(self, **values: object) -> dict:
        """POST one record; returns it as the server answers."""
        resp = self.http.post(f"{self.url}/People", json=values, timeout=30)
        resp.raise_for_status()
        return resp.json()

    def update(self, key: str, **values: object) -> None:
        """PATCH fields of one record."""
        self.http.patch(f"{self.url}/People({key})", json=values, timeout=30,
                        headers={"If-Match": "*"}).raise_for_status()

    def delete(self, key: str) -> None:
        """DELETE one record."""
        self.http.delete(f"{self.url}/People({key})", timeout=30,
                         headers={"If-Match": "*"}).raise_for_status()

    def clear(self) -> None:
        """Delete every record."""
        for row in self.people():
            self.delete(row["ID"])

    def stop(self) -> None:
        """End the server process (the one this object started)."""
        self.http.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def start(log_dir: Path) -> CapServer:
    """Install if needed, start ``cds-serve`` on a free loopback port, wait for $metadata."""
    ensure_installed()
    port = free_port()
    log = log_dir / "cap-server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env["NODE_ENV"] = "test"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["node", str(PROJECT / "node_modules" / "@sap" / "cds" / "bin" / "serve.js"),
             "--port", str(port)], cwd=PROJECT, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = CapServer(proc, port, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"cds-serve exited with {proc.returncode}: "
                               f"{log.read_text(errors='replace')[-2000:]}")
        try:
            if server.http.get(f"{server.url}/$metadata", timeout=2).status_code == 200:
                return server
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"cds-serve did not answer on port {port} within 60 s: "
                       f"{log.read_text(errors='replace')[-2000:]}")
