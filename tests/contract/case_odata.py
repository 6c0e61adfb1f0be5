"""Contract case for the ``odata`` provider: SAP CAP, an OData v4 server we did not write.

The entity set ``People`` of the CAP service in ``tests/odata_cap`` (see
:mod:`odata_cap_server`): UUID keys, made by the sync here (``KeyGeneration=client``: CAP takes
a key sent with the POST, and the engine journals it first, so a crash between CAP's answer and
the journal is recovered by key; server-made keys are tested in test_provider_odata_cap.py),
text properties ``name`` and ``city``, CAP's ``managed`` timestamps (``createdAt`` is
read-only: ``Core.Computed``; nothing writable stands for it) and ``modifiedAt``, the watermark
and ETag. One server runs for the whole session, started by the first case that needs it.
The user is another OData client (raw HTTP, not our provider).
Under CI=true the server must start; elsewhere, without node/npm, the case skips with the reason.
"""

import atexit
import os
import tempfile
from pathlib import Path

import pytest
from odata_cap_server import CapServer, CapUnavailable, start

try:
    from contract.harness import CaseFactory, SideCase
except ImportError:  # pragma: no cover - depends on how the suite is collected
    from harness import CaseFactory, SideCase  # type: ignore[no-redef]

_SERVER: list[CapServer] = []


class CapUser:
    """Another OData client of the CAP service."""

    def __init__(self, server: CapServer) -> None:
        self.server = server

    def create(self, name: str, city: str) -> str:
        """POST a record; CAP makes the UUID."""
        return str(self.server.create(name=name, city=city)["ID"])

    def update(self, key: str, *, name: str | None = None, city: str | None = None) -> None:
        """PATCH the given properties."""
        values = {k: v for k, v in (("name", name), ("city", city)) if v is not None}
        self.server.update(key, **values)

    def delete(self, key: str) -> None:
        """DELETE the record."""
        self.server.delete(key)

    def records(self) -> dict[str, tuple[str | None, str | None]]:
        """Every record: key -> (name, city)."""
        return {str(r["ID"]): (r.get("name"), r.get("city")) for r in self.server.people()}


def _server() -> CapServer:
    if not _SERVER:
        try:
            srv = start(Path(tempfile.mkdtemp(prefix="l2sync-cap-")))
        except CapUnavailable as exc:
            if os.environ.get("CI") == "true":
                pytest.fail(f"the CAP OData server must run under CI: {exc}")
            pytest.skip(str(exc))
        atexit.register(srv.stop)
        _SERVER.append(srv)
    return _SERVER[0]


def _odata(request: pytest.FixtureRequest, tmp_path: Path) -> SideCase:
    srv = _server()
    srv.clear()
    return SideCase(
        id="odata", provider="odata",
        connection_string=f"URL={srv.url}/People;KeyGeneration=client;BatchSize=10",
        query="SELECT name, city FROM People",
        filtered_query="SELECT name, city FROM People WHERE city = 'in'",
        limited_query="SELECT TOP 2 name, city FROM People",
        name_field="name", city_field="city", user=CapUser(srv), modified="modifiedAt",
        read_only_field="createdAt", writable_alternative=None, stamps=False)


CASES: dict[str, CaseFactory] = {"odata": _odata}
