"""No secret reaches the state store: a run that fails with an error quoting a credential
(a URL with userinfo, a Password=... pair, the resolved value of an env: secret) is recorded
with the secret masked; the whole state database is scanned for the marker."""

import sqlite3
import tempfile
from pathlib import Path

import pytest
from memory_provider import MemoryProvider

from l2sync_dagster.providers.base import ProviderError
from l2sync_dagster.spec.model import ConnectionSpec, EntitySpec, MappingSpec
from l2sync_dagster.state.store import StateStore
from l2sync_dagster.sync.runner import Sync

MARKER = "S3CR3T-MARKER"


@pytest.mark.parametrize("message", [
    f"cannot reach https://sync:{MARKER}@crm.example.test/api",
    f"login failed for URL=postgresql://db/crm;User=sync;Password={MARKER}",
    f'server said {{"client_secret": "{MARKER}"}}',
])
def test_failed_run_records_no_secret(message: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="l2sync-secret-"))
    spec = ConnectionSpec(
        name="secret", path=tmp / "connections" / "secret.yaml", project_dir=tmp,
        direction="left_to_right",
        left=EntitySpec(provider="memory", connection_string="N=l", key="lid"),
        right=EntitySpec(provider="memory", connection_string="N=r", key="rid"),
        mapping=MappingSpec(auto=True))
    left, right = MemoryProvider(["a"], key="lid"), MemoryProvider(["a"], key="rid")
    left.fail_reads = [ProviderError(message)]
    db = tmp / "state.db"
    sync = Sync(spec, StateStore(f"sqlite:///{db}"))
    sync._providers = {"left": left, "right": right}
    with pytest.raises(ProviderError):
        sync.run()
    assert sync.store.runs("secret")[0]["status"] == "failed"
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for t in tables:
            for row in conn.execute(f'SELECT * FROM "{t}"'):
                assert MARKER not in repr(row), (t, row)
