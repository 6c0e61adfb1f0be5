"""The demo tenant every sandbox service shares: users, the app registration, mailboxes."""

TENANT = "sandbox"
DOMAIN = "sandbox.test"

#: user principal name -> password
USERS: dict[str, str] = {
    "sync@sandbox.test": "sandbox",
    "alice@sandbox.test": "sandbox",
    "sales@sandbox.test": "sandbox",
}

#: the service user the demo connections use
SERVICE_USER = "sync@sandbox.test"

#: client credentials: client id -> secret
CLIENTS: dict[str, str] = {"l2sync-sandbox": "sandbox"}
CLIENT_ID = "l2sync-sandbox"
CLIENT_SECRET = "sandbox"

#: every mailbox the mail services hold
MAILBOXES: tuple[str, ...] = ("sync@sandbox.test", "alice@sandbox.test", "sales@sandbox.test")

#: who may impersonate (ApplicationImpersonation role); the app registration may too
IMPERSONATORS: frozenset[str] = frozenset({"sync@sandbox.test", "l2sync-sandbox"})

#: delegate access: user -> mailboxes (besides their own) they may open
DELEGATES: dict[str, frozenset[str]] = {
    "sync@sandbox.test": frozenset({"sales@sandbox.test"}),
}


def may_open(principal: str, mailbox: str, *, impersonation: bool) -> bool:
    """Whether ``principal`` may open ``mailbox`` by impersonation or delegate access."""
    principal, mailbox = principal.lower(), mailbox.lower()
    if impersonation:
        return principal in IMPERSONATORS
    return principal == mailbox or mailbox in DELEGATES.get(principal, frozenset())
