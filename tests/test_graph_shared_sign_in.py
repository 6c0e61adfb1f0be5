"""One sign-in per identity for the Graph clients of a run over many mailboxes
(``providers.graph.shared``): the same token and connection pool for equal identities, never
for different ones, nothing shared outside the block, and the sandbox sees one token request
and one authority discovery instead of one per mailbox."""

import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sandbox_process import SandboxProcess

from l2sync_dagster.providers.base import Query
from l2sync_dagster.providers.exchange import ExchangeProvider
from l2sync_dagster.providers.graph.client import GraphClient
from l2sync_dagster.providers.graph.shared import active_sign_ins, shared_sign_ins
from l2sync_dagster.providers.msauth import MicrosoftAuth
from l2sync_dagster.spec.connection_string import ConnectionString

SECRET_ENV = "L2SYNC_TEST_SHARED_SECRET"
OTHER_ENV = "L2SYNC_TEST_SHARED_OTHER"
GRAPH = "https://127.0.0.1:1/v1.0"
CONTACTS = Query(text="SELECT GivenName, Surname FROM Contacts")


def _auth(secret_env: str = SECRET_ENV, client_id: str = "app", user: str | None = None
          ) -> MicrosoftAuth:
    who = f"User={user};Password=env:{secret_env}" if user else \
        f"ClientSecret=env:{secret_env}"
    cs = ConnectionString(f"TenantId=t;ClientId={client_id};{who}", label="test")
    return MicrosoftAuth.from_connection_string(cs, scope="https://127.0.0.1:1/.default")


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, "first secret")
    monkeypatch.setenv(OTHER_ENV, "second secret")


def test_equal_identities_share_one_sign_in_and_pool() -> None:
    with shared_sign_ins():
        a, b = GraphClient(GRAPH, _auth()), GraphClient(GRAPH, _auth())
        assert a.auth is b.auth
        assert a._session is b._session
        assert a.budget is b.budget


@pytest.mark.parametrize("other", [
    lambda: _auth(OTHER_ENV),  # another secret
    lambda: _auth(client_id="other-app"),
    lambda: _auth(user="someone@contoso.test"),
])
def test_different_identities_never_share(other) -> None:  # type: ignore[no-untyped-def]
    with shared_sign_ins():
        a, b = GraphClient(GRAPH, _auth()), GraphClient(GRAPH, other())
        assert a.auth is not b.auth
        assert a._session is not b._session


def test_nothing_is_shared_outside_the_block() -> None:
    a, b = GraphClient(GRAPH, _auth()), GraphClient(GRAPH, _auth())
    assert a.auth is not b.auth and a._session is not b._session
    with shared_sign_ins():
        pass
    c = GraphClient(GRAPH, _auth())
    assert c.auth is not a.auth
    assert active_sign_ins() is None


def test_worker_threads_in_a_copied_context_share_and_closing_a_client_keeps_the_pool(
        ) -> None:
    with shared_sign_ins():
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(contextvars.copy_context().run, GraphClient, GRAPH,
                                   _auth()) for _ in range(8)]
            clients = [f.result() for f in futures]
        assert len({id(c.auth) for c in clients}) == 1
        session = clients[0]._session
        closed = threading.Event()
        original = session.close
        session.close = lambda: (closed.set(), original())  # type: ignore[method-assign]
        for c in clients:
            c.close()
        assert not closed.is_set()  # the other clients still use it
    assert closed.is_set()  # closed when the block ends


def _exchange(sandbox: SandboxProcess, email: str) -> ExchangeProvider:
    return ExchangeProvider.from_connection_string(
        f"Backend=graph;URL={sandbox.urls['graph']}/v1.0;Authority={sandbox.urls['token']}"
        f"/sandbox;ClientId=l2sync-sandbox;ClientSecret=env:{SECRET_ENV};"
        f"CABundle={sandbox.ca_path};Email={email}")


def _token_requests(sandbox: SandboxProcess) -> int:
    ops = sandbox.control("token").stats()["requests"]
    return sum(n for op, n in ops.items() if op.startswith(("token.", "discovery")))


@pytest.mark.parametrize("shared", [True, False])
def test_mailboxes_of_one_app_sign_in_once(sandbox: SandboxProcess,
                                           monkeypatch: pytest.MonkeyPatch,
                                           shared: bool) -> None:
    monkeypatch.setenv(SECRET_ENV, "sandbox")
    sandbox.control("graph").reset()
    mailboxes = ["sales@sandbox.test", "sync@sandbox.test", "alice@sandbox.test"]

    def read_all() -> list[int]:
        out = []
        for email in mailboxes:
            provider = _exchange(sandbox, email)
            try:
                out.append(len(provider.read(CONTACTS).frame))
            finally:
                provider.close()
        return out

    sandbox.control("token").reset_stats()
    if shared:
        with shared_sign_ins():
            counts = read_all()
        # one discovery and one token for the three mailboxes
        assert _token_requests(sandbox) == 2
    else:
        counts = read_all()
        assert _token_requests(sandbox) == 2 * len(mailboxes)
    assert len(counts) == len(mailboxes)


def test_an_expired_shared_token_is_renewed_for_every_mailbox(
        sandbox: SandboxProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, "sandbox")
    sandbox.control("graph").reset()
    with shared_sign_ins():
        a = _exchange(sandbox, "sales@sandbox.test")
        b = _exchange(sandbox, "sync@sandbox.test")
        before = (len(a.read(CONTACTS).frame), len(b.read(CONTACTS).frame))
        sandbox.control("token").call("POST", "expire")
        # the first 401 refreshes the shared token; the second mailbox uses the new one
        after = (len(a.read(CONTACTS).frame), len(b.read(CONTACTS).frame))
        assert after == before
        assert a.backend.client.auth is b.backend.client.auth
        a.close()
        b.close()
