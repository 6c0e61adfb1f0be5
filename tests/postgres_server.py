"""A throw-away PostgreSQL server for the test session (Debian's ``postgresql`` package).

The server lives in a temporary directory, listens only on 127.0.0.1 on a free port (its unix
socket stays in the temporary directory), uses scram-sha-256 password authentication and has a
login role ``sync`` owning the database ``l2sync_test``. PostgreSQL refuses to run as root, so
when the tests run as root the server runs as the ``postgres`` system user.
"""

import glob
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from loopback import free_port

ROLE = "sync"
DATABASE = "l2sync_test"


def find_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` that has initdb and pg_ctl."""
    found = []
    for initdb in glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        bindir = Path(initdb).parent
        if (bindir / "pg_ctl").exists():
            version = bindir.parent.name
            found.append((int(version) if version.isdigit() else 0, bindir))
    return max(found)[1] if found else None


def require_bindir() -> Path:
    """The PostgreSQL binaries, or skip (fail on CI) when the package is not installed."""
    bindir = find_bindir()
    if bindir is None:
        message = (
            "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin; "
            "`make test` installs the postgresql package"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return bindir



@dataclass
class PostgresServer:
    """A running server. ``url`` has no password; connect with ``password``."""

    bindir: Path
    root: Path
    port: int
    password: str
    superuser_password: str
    as_user: str | None

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the test database for the ``sync`` role, without the password."""
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self.root / "data"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.as_user:
            cmd = ["runuser", "-u", self.as_user, "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(
                f"{args[0]} failed ({proc.returncode}): {proc.stderr.strip()}\n{tail}"
            )
        return proc

    @classmethod
    def start(cls) -> "PostgresServer":
        """initdb, start on a free loopback port, create the role and the database."""
        bindir = require_bindir()
        as_user = "postgres" if os.geteuid() == 0 else None
        root = Path(tempfile.mkdtemp(prefix="l2sync-pg-"))
        server = cls(bindir, root, 0, secrets.token_urlsafe(18), secrets.token_urlsafe(18), as_user)
        try:
            pwfile = root / "superuser.pw"
            pwfile.write_text(server.superuser_password + "\n")
            if as_user:
                shutil.chown(root, as_user)
                shutil.chown(pwfile, as_user)
            server._run(
                "initdb",
                "-D",
                str(server.data_dir),
                "-U",
                "postgres",
                "--no-sync",
                "--auth-local=scram-sha-256",
                "--auth-host=scram-sha-256",
                f"--pwfile={pwfile}",
                "--encoding=UTF8",
                "--no-locale",
            )
            pwfile.unlink()
            server._start_on_free_port()
            server._create_role_and_database()
        except BaseException:
            server.stop()
            raise
        return server

    def _start_on_free_port(self) -> None:
        # a port found free can be taken before the server binds it: try a few
        for attempt in range(5):
            self.port = free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            try:
                self._run(
                    "pg_ctl",
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.root / "server.log"),
                    "-w",
                    "-t",
                    "30",
                    "-o",
                    options,
                    "start",
                )
                return
            except RuntimeError:
                if attempt == 4:
                    raise
                time.sleep(0.2)

    def _create_role_and_database(self) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            password=self.superuser_password,
            dbname="postgres",
            autocommit=True,
        ) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(ROLE), sql.Literal(self.password)
                )
            )
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(DATABASE), sql.Identifier(ROLE)
                )
            )

    def new_database(self, prefix: str) -> str:
        """A fresh database owned by the ``sync`` role (its statistics its own); its SQLAlchemy
        URL with the password."""
        import uuid

        import psycopg
        from psycopg import sql

        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres",
                             password=self.superuser_password, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(ROLE)))
        return (self.url.replace(f"{ROLE}@", f"{ROLE}:{self.password}@")
                .rsplit("/", 1)[0] + f"/{name}")

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its directory."""
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
