"""Connection-string options and sign-in shared by the ``odata`` and ``dataverse`` providers."""

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from l2sync_dagster.spec.connection_string import ConnectionString, ConnectionStringError

DEFAULT_BATCH_SIZE = 100
MAX_BATCH_SIZE = 1000
DEFAULT_CONCURRENCY = 4
DEFAULT_PAGE_SIZE = 5000
#: seconds per HTTP request (``Timeout``), sign-in included
DEFAULT_TIMEOUT_S = 120
BATCH_FORMATS = ("auto", "multipart", "json", "none")
AUTH_KEYS = ("TenantId", "ClientId", "ClientSecret", "CertificatePath", "CertificateThumbprint",
             "User", "Password", "Authentication", "Authority", "CABundle")
SEGMENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def split_url(url: str) -> tuple[str, str]:
    """(service root, entity set) of ``<service root>/<entity set>``."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    root_path, _, entity_set = path.rpartition("/")
    if not entity_set or not SEGMENT_RE.match(entity_set):
        raise ConnectionStringError(
            f"URL must end with the entity set (<service root>/<entity set>), not {url!r}")
    return f"{parts.scheme}://{parts.netloc}{root_path}", entity_set


def check_url(url: str, label: str) -> str:
    """``url`` when it is an absolute http(s) URL of an entity set without a query."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConnectionStringError(f"{label}: URL must be an http(s) URL, not {url!r}")
    if parts.query or parts.fragment:
        raise ConnectionStringError(f"{label}: URL must not contain a query (?...); put query "
                                    "options in the connection's query")
    split_url(url)
    return url


def default_scope(url: str) -> str:
    """``<scheme>://<host>/.default``: the token scope of the service at ``url``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/.default"


def ca_bundle(value: str | None, base_dir: Path | None) -> str | None:
    """The ``CABundle`` path (relative ones from ``base_dir``); it must exist."""
    if not value:
        return None
    path = Path(value)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.is_file():
        raise ConnectionStringError(f"CABundle: no such file {path}")
    return str(path)


def refuse(cs: ConnectionString, keys: Iterable[str], mode: str) -> None:
    """Refuse ``keys`` that make no sense with the authentication ``mode``."""
    for k in keys:
        if k in cs:
            raise ConnectionStringError(f"key {k} is not used with Authentication={mode}")


def microsoft_auth(cs: ConnectionString, scope: str, base_dir: Path | None,
                    oauth_alias: bool = False) -> Any:
    """A MicrosoftAuth (msal) for the connection string's sign-in keys and ``scope``."""
    """MicrosoftAuth from the authentication keys of ``cs`` only."""
    from l2sync_dagster.providers.msauth import MicrosoftAuth

    parts = []
    for k in MicrosoftAuth.KEYS:
        raw = cs.raw(k)
        if raw is None:
            continue
        if k.lower() == "authentication" and oauth_alias:
            continue
        parts.append(f'{k}="{raw.replace(chr(34), chr(34) * 2)}"')
    sub = ConnectionString(";".join(parts), label=cs._label)  # noqa: SLF001
    return MicrosoftAuth.from_connection_string(sub, scope=scope, base_dir=base_dir)


def bearer_auth(ms: Any) -> Callable[[dict[str, str], bool], None]:
    """A header hook adding ``Authorization: Bearer`` from MicrosoftAuth (refreshed on 401)."""

    def add(headers: dict[str, str], refresh: bool) -> None:
        token = ms.refresh() if refresh and hasattr(ms, "refresh") else ms.token()
        headers["Authorization"] = f"Bearer {token}"

    return add


def int_option(cs: ConnectionString, key: str, default: int, low: int, high: int,
               label: str) -> int:
    """The integer option ``key`` (``default`` when absent), checked to lie in low..high."""
    value = cs.get_number(key, default, low, high, what="a whole number", label=label)
    return int(default if value is None else value)


def seconds_option(cs: ConnectionString, key: str, default: float, label: str) -> float:
    """A number of seconds from 1 to 3600 (``default`` when absent)."""
    value = cs.get_number(key, default, 1, 3600, what="a number of seconds", label=label)
    return float(default if value is None else value)


def common_options(cs: ConnectionString, label: str) -> dict[str, Any]:
    """KeyGeneration, Batch, BatchSize, Concurrency, MaxPageSize and Timeout, checked."""
    kg = (cs.get("KeyGeneration") or "server").strip().lower()
    if kg not in ("server", "client"):
        raise ConnectionStringError(f"{label}: KeyGeneration must be server or client, "
                                    f"not {kg!r}")
    batch = (cs.get("Batch") or "auto").strip().lower()
    if batch not in BATCH_FORMATS:
        raise ConnectionStringError(f"{label}: Batch must be one of {', '.join(BATCH_FORMATS)}, "
                                    f"not {batch!r}")
    return {
        "key": cs.get("Key") or None,
        "modified": cs.get("Modified") or None,
        "key_generation": kg,
        "batch": batch,
        "batch_size": int_option(cs, "BatchSize", DEFAULT_BATCH_SIZE, 1, MAX_BATCH_SIZE, label),
        "concurrency": int_option(cs, "Concurrency", DEFAULT_CONCURRENCY, 1, 52, label),
        "page_size": int_option(cs, "MaxPageSize", DEFAULT_PAGE_SIZE, 1, 5000, label),
        "timeout_s": seconds_option(cs, "Timeout", DEFAULT_TIMEOUT_S, label),
    }
