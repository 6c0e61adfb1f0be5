"""Shared fixtures. Keep this file to fixtures that several test modules use."""

from collections.abc import Iterator

import pytest
from mariadb_server import MariaDbServer
from postgres_server import PostgresServer
from sandbox_process import SandboxProcess

from l2sync_dagster.providers.sql import SqlProvider
from l2sync_dagster.sandbox.schemas import KINDS, find_schema_dir

PG_PASSWORD_ENV = "PG_TEST_PASSWORD"
MARIADB_PASSWORD_ENV = "MARIADB_TEST_PASSWORD"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the whole session.

    ``postgres.url`` is a SQLAlchemy URL without password (``postgresql://sync@127.0.0.1:PORT/
    l2sync_test``); ``postgres.password`` is the password of the ``sync`` role. Skips (fails on
    CI) when Debian's postgresql package is not installed.
    """
    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_password_env(postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """Sets ``PG_TEST_PASSWORD`` to the server's password and returns the variable name, for
    connection strings like ``URL=...;Password=env:PG_TEST_PASSWORD``."""
    monkeypatch.setenv(PG_PASSWORD_ENV, postgres.password)
    return PG_PASSWORD_ENV


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDbServer]:
    """A real MariaDB server for the whole session, its time zone -05:00 (not UTC).

    ``mariadb.url`` is a SQLAlchemy URL without password (``mysql+pymysql://sync@127.0.0.1:PORT/
    l2sync_test``); ``mariadb.password`` is the password of the ``sync`` user (every privilege).
    Skips (fails on CI) when Debian's mariadb-server package is not installed.
    """
    server = MariaDbServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mariadb_password_env(mariadb: MariaDbServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """Sets ``MARIADB_TEST_PASSWORD`` to the server's password and returns the variable name."""
    monkeypatch.setenv(MARIADB_PASSWORD_ENV, mariadb.password)
    return MARIADB_PASSWORD_ENV


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    """``l2sync sandbox`` running for the whole session (every service built so far).

    Tests reset what they touch (``sandbox.control(name).reset()``). At the end, any response
    a service produced that failed its own schema check fails the session.
    """
    proc = SandboxProcess.start(tmp_path_factory.mktemp("sandbox") / "state")
    try:
        yield proc
        bad = proc.invalid_responses()
        assert not bad, f"the sandbox produced invalid responses: {bad}"
    finally:
        proc.stop()


def _require_schema(kind: str) -> None:
    # Under CI=true the sandbox refuses to start without the schemas, so these never skip there.
    if find_schema_dir(kind) is None:
        env, folder, _ = KINDS[kind]
        pytest.skip(f"checks Microsoft's {kind} schema validation: put the schema files in "
                    f"../shared/{folder} or set {env} (CI requires them)")


@pytest.fixture
def ews_schema() -> None:
    """For tests of what only schema validation catches; skips without the EWS schemas."""
    _require_schema("ews")


@pytest.fixture
def graph_schema() -> None:
    """For tests of what only the CSDL check catches; skips without the Graph CSDL."""
    _require_schema("graph")


@pytest.fixture
def source_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The queries the sql provider was asked to read, in order."""
    seen: list[str] = []
    real = SqlProvider.read

    def counting(self, query, cursor=None, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(query.text)
        return real(self, query, cursor=cursor, **kwargs)

    monkeypatch.setattr(SqlProvider, "read", counting)
    return seen
