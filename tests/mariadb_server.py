"""A throw-away MariaDB server for the test session (Debian's ``mariadb-server`` package).

The server lives in a temporary directory, listens only on 127.0.0.1 on a free port (its unix
socket stays in the temporary directory) and has a user ``sync`` with a password and every
privilege, and a database ``l2sync_test``. Its time zone is ``-05:00``, not UTC, so that every
test sees a database whose clock differs from the client's UTC (as a server in New York would).
MariaDB refuses to run as root without being told to; when the tests run as root the server runs
as the ``mysql`` system user the package created.
"""

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from loopback import free_port

USER = "sync"
DATABASE = "l2sync_test"
#: the server's time zone: any offset from UTC shows clock mix-ups
TIME_ZONE = "-05:00"
MARIADBD = Path("/usr/sbin/mariadbd")
INSTALL_DB = Path("/usr/bin/mariadb-install-db")


def require_binaries() -> None:
    """Skip (fail on CI) when the MariaDB server package is not installed."""
    if MARIADBD.exists() and INSTALL_DB.exists():
        return
    message = (f"MariaDB server binaries not found ({MARIADBD}, {INSTALL_DB}); `make test` "
               "installs Debian's mariadb-server package")
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)



@dataclass
class MariaDbServer:
    """A running server. ``url`` has no password; connect with ``password``."""

    root: Path
    port: int
    password: str
    as_user: str | None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the test database for the ``sync`` user, without the password."""
        return f"mysql+pymysql://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def url_with_password(self, database: str = DATABASE) -> str:
        """The URL with the password (for the tests' own engines, never for messages)."""
        return f"mysql+pymysql://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    @property
    def socket_path(self) -> Path:
        """The server's unix socket (root connects through it, without a password)."""
        return self.root / "mysqld.sock"

    def _cmd(self, *args: str) -> list[str]:
        return ["runuser", "-u", self.as_user, "--", *args] if self.as_user else list(args)

    def _log_tail(self) -> str:
        log = self.root / "server.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else ""

    @classmethod
    def start(cls) -> "MariaDbServer":
        """Install a data directory, start on a free loopback port, create user and database."""
        require_binaries()
        as_user = "mysql" if os.geteuid() == 0 else None
        root = Path(tempfile.mkdtemp(prefix="l2sync-maria-"))
        server = cls(root, 0, secrets.token_urlsafe(18), as_user)
        try:
            if as_user:
                shutil.chown(root, as_user)
            proc = subprocess.run(
                server._cmd(str(INSTALL_DB), "--no-defaults", f"--datadir={root / 'data'}",
                            "--auth-root-authentication-method=normal", "--skip-test-db",
                            "--skip-name-resolve"),
                capture_output=True, text=True, timeout=120)
            if proc.returncode != 0:
                raise RuntimeError(f"mariadb-install-db failed: {proc.stderr[-2000:]}")
            server._start_on_free_port()
            server._create_user_and_database()
        except BaseException:
            server.stop()
            raise
        return server

    def _start_on_free_port(self) -> None:
        # a port found free can be taken before the server binds it: try a few
        for attempt in range(5):
            self.port = free_port()
            self.process = subprocess.Popen(
                self._cmd(str(MARIADBD), "--no-defaults", f"--datadir={self.root / 'data'}",
                          f"--socket={self.socket_path}", f"--port={self.port}",
                          "--bind-address=127.0.0.1", f"--pid-file={self.root / 'mysqld.pid'}",
                          f"--log-error={self.root / 'server.log'}",
                          f"--default-time-zone={TIME_ZONE}", "--skip-name-resolve",
                          "--skip-log-bin", "--innodb-buffer-pool-size=64M",
                          "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0",
                          "--character-set-server=utf8mb4",
                          "--collation-server=utf8mb4_unicode_ci"),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.process.poll() is None:
                if self._ready():
                    return
                time.sleep(0.1)
            self._kill()
            if attempt == 4:
                raise RuntimeError(f"mariadbd did not start:\n{self._log_tail()}")

    def _ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return self.socket_path.exists()
        except OSError:
            return False

    def admin(self):  # noqa: ANN201 - pymysql is imported lazily
        """A pymysql connection as root through the unix socket (autocommit)."""
        import pymysql

        return pymysql.connect(unix_socket=str(self.socket_path), user="root", autocommit=True)

    def _create_user_and_database(self) -> None:
        conn = self.admin()
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE {DATABASE}")
                cur.execute(f"CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY %s",
                            (self.password,))
                cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'127.0.0.1' "
                            "WITH GRANT OPTION")
        finally:
            conn.close()

    def _kill(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # runuser passes SIGTERM on: a clean shutdown
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """Shut the server down and remove its directory."""
        try:
            self._kill()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
