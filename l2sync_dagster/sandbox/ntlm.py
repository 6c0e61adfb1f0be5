"""NTLM sign-in for the EWS sandbox, as on-premises Exchange (IIS) offers it.

NTLM is connection based: the client sends NEGOTIATE, the server answers 401 with a CHALLENGE,
the client sends AUTHENTICATE with its request on the same connection, and from then on the
connection is signed in (IIS keeps it so). The messages are checked by pyspnego's NTLM acceptor
(the library requests-ntlm and exchangelib use on the client side), which reads the accounts
from the file named by ``NTLM_USER_FILE``: the sandbox writes its demo users there, as
``user@sandbox.test`` and as ``SANDBOX\\user``.
"""

import base64
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import spnego
import spnego.exceptions

from l2sync_dagster.sandbox import identities
from l2sync_dagster.sandbox.tokens import Principal

#: the NetBIOS domain of the demo users (``SANDBOX\\sync`` is ``sync@sandbox.test``)
NETBIOS_DOMAIN = identities.TENANT.upper()
_NEGOTIATE = b"\x01\x00\x00\x00"  # message type of an NTLM NEGOTIATE message (bytes 8..11)
_lock = threading.Lock()
_user_file: Path | None = None


def ensure_user_file() -> None:
    """Write the demo users where pyspnego's acceptor looks for them (once per process)."""
    global _user_file
    with _lock:
        if _user_file is not None and _user_file.is_file():
            return
        folder = Path(tempfile.mkdtemp(prefix="l2sync-ntlm-"))
        path = folder / "users"
        lines = []
        for upn, password in identities.USERS.items():
            user = upn.split("@", 1)[0]
            lines += [f":{upn}:{password}", f"{NETBIOS_DOMAIN}:{user}:{password}"]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        path.chmod(0o600)
        os.environ["NTLM_USER_FILE"] = str(path)
        _user_file = path


def _principal_of(name: str) -> Principal | None:
    if "\\" in name:
        domain, user = name.split("\\", 1)
        if domain.upper() != NETBIOS_DOMAIN:
            return None
        name = f"{user}@{identities.DOMAIN}"
    name = name.lower()
    return Principal(name, "user") if name in identities.USERS else None


def ntlm_step(connection: dict[str, Any], authorization: str
              ) -> tuple[Principal | None, str | None]:
    """One NTLM message of ``Authorization: NTLM <token>`` on this connection.

    Returns ``(principal, None)`` once signed in, ``(None, "NTLM <challenge>")`` to send back
    with a 401, ``(None, None)`` when the sign-in failed.
    """
    try:
        token = base64.b64decode(authorization.split(None, 1)[1].strip(), validate=True)
    except (IndexError, ValueError):
        return None, None
    ctx = connection.get("ntlm")
    if ctx is None or token[8:12] == _NEGOTIATE:
        ensure_user_file()
        ctx = spnego.server(protocol="ntlm")
        connection["ntlm"] = ctx
    try:
        out = ctx.step(token)
    except spnego.exceptions.SpnegoError:
        connection.pop("ntlm", None)
        return None, None
    if not ctx.complete:
        return None, "NTLM " + base64.b64encode(out or b"").decode()
    connection.pop("ntlm", None)
    principal = _principal_of(str(ctx.client_principal or ""))
    if principal is not None:
        connection["ntlm_principal"] = principal
    return principal, None
