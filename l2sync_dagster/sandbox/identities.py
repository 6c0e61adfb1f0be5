"""The demo tenant every sandbox service shares: users, the app registration, mailboxes.

``L2SYNC_SANDBOX_STAFF=N`` in the sandbox's environment (or :func:`use_staff` before it
starts) adds N staff mailboxes (``staff0001@sandbox.test`` ...), members of ``all-staff@`` and
``employees@``: the tenant of the fan-out benchmark and demo.
"""

import os

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


def staff_mailboxes(count: int) -> tuple[str, ...]:
    """The generated staff mailboxes of a tenant of ``count`` (the benchmark's employees)."""
    return tuple(f"staff{i:04d}@{DOMAIN}" for i in range(1, count + 1))


#: the generated staff mailboxes (none unless L2SYNC_SANDBOX_STAFF is set)
STAFF: tuple[str, ...] = staff_mailboxes(int(os.environ.get("L2SYNC_SANDBOX_STAFF") or 0))

#: every mailbox the mail services hold
MAILBOXES: tuple[str, ...] = ("sync@sandbox.test", "alice@sandbox.test",
                              "sales@sandbox.test", *STAFF)


def use_staff(count: int) -> None:
    """Give the tenant ``count`` generated staff mailboxes (before the sandbox starts)."""
    global STAFF, MAILBOXES
    STAFF = staff_mailboxes(count)
    MAILBOXES = (*MAILBOXES[:3], *STAFF)


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
