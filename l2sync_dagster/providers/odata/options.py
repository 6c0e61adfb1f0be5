"""Connection-string options and sign-in of the ``odata`` and ``dataverse`` providers."""

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from l2sync_dagster.providers.microsoft_options import MicrosoftSignIn
from l2sync_dagster.providers.options import SecretValue, option
from l2sync_dagster.spec.connection_string import ConnectionString, ConnectionStringError


class ODataServiceOptions(MicrosoftSignIn):
    """The options the ``odata`` and ``dataverse`` providers share."""

    title: ClassVar[str] = "`odata`, `dataverse`"
    url: str | None = option("URL", "`<service root>/<entity set>` (Dataverse: the Web API URL "
                             "of a table)", required=True)
    key_generation: str = option(
        "KeyGeneration", "who makes the key of a new record: the service, or the sync (which "
        "journals it before sending, so a crash never leaves an unknown record)", "server",
        choices=("server", "client"))
    batch: str = option("Batch", "how writes are sent; `auto` is multipart `$batch`, JSON "
                        "`$batch` when the service refuses multipart, single requests when it "
                        "has no `$batch`", "auto", choices=("auto", "multipart", "json", "none"))
    batch_size: int = option("BatchSize", "changes per `$batch` request", 100, low=1, high=1000)
    concurrency: int = option("Concurrency", "requests in flight at once", 4, low=1, high=52)
    page_size: int = option("MaxPageSize", "records per page asked for when reading (Prefer: "
                            "odata.maxpagesize)", 5000, low=1, high=5000)


class ODataOptions(ODataServiceOptions):
    """The ``odata`` provider's options."""

    provider: ClassVar[str] = "odata"
    authentication: str | None = option(
        "Authentication", "how to sign in (default: from the keys given)",
        choices=("None", "Basic", "Bearer", "OAuth", "Microsoft_Modern", "Microsoft_Modern_CRM",
                 "ClientCredentials"))
    token: SecretValue | None = option("Token", "a bearer token (Authentication=Bearer)",
                                       secret=True)
    scope: str | None = option("Scope", "token scope with OAuth (default "
                               "`<scheme>://<host>/.default` of URL)")
    key: str | None = option("Key", "the key property (default: the entity type's key in "
                             "`$metadata`)")
    modified: str | None = option("Modified", "a last-modified property: incremental reads "
                                  "filter `Modified ge <watermark>` (without it every read is "
                                  "complete)")


class DataverseOptions(ODataServiceOptions):
    """The ``dataverse`` provider's options."""

    provider: ClassVar[str] = "dataverse"
    key_generation: str = option(
        "KeyGeneration", "who makes the key of a new record: the sync (the default: it journals "
        "the GUID before sending, so a crash never leaves an unknown record), or the server",
        "client", choices=("client", "server"))


def service_options(options: type[ODataServiceOptions], cs: ConnectionString
                    ) -> tuple[Any, dict[str, Any]]:
    """(the parsed options, the provider constructor's keyword arguments from them)."""
    opts = options.parse(cs)
    kwargs = {"key_generation": opts.key_generation, "batch": opts.batch,
              "batch_size": opts.batch_size, "concurrency": opts.concurrency,
              "page_size": opts.page_size, "timeout_s": opts.timeout}
    return opts, kwargs

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


def refuse(cs: ConnectionString, keys: Iterable[str], mode: str) -> None:
    """Refuse ``keys`` that make no sense with the authentication ``mode``."""
    for k in keys:
        if k in cs:
            raise ConnectionStringError(f"key {k} is not used with Authentication={mode}")


def microsoft_auth(cs: ConnectionString, scope: str, base_dir: Path | None) -> Any:
    """A MicrosoftAuth (msal) for the connection string's sign-in keys and ``scope``."""
    from l2sync_dagster.providers.msauth import MicrosoftAuth

    return MicrosoftAuth.from_connection_string(cs, scope=scope, base_dir=base_dir)


def bearer_auth(ms: Any) -> Callable[[dict[str, str], bool], None]:
    """A header hook adding ``Authorization: Bearer`` from MicrosoftAuth (refreshed on 401)."""

    def add(headers: dict[str, str], refresh: bool) -> None:
        token = ms.refresh() if refresh and hasattr(ms, "refresh") else ms.token()
        headers["Authorization"] = f"Bearer {token}"

    return add
