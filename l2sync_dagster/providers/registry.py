"""Find providers by name through the entry-point group ``l2sync_dagster.providers``.

A third party adds a provider by declaring an entry point in that group in its own package;
nothing here needs to change.
"""

import functools
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from l2sync_dagster.providers.base import Provider, ProviderError
from l2sync_dagster.spec.connection_string import ConnectionString

GROUP = "l2sync_dagster.providers"


def available_providers() -> dict[str, EntryPoint]:
    """The installed providers by name."""
    return dict(_installed())


@functools.cache
def _installed() -> tuple[tuple[str, EntryPoint], ...]:
    # reading the installed packages' metadata takes ~20 ms; once per process is enough
    return tuple((ep.name, ep) for ep in entry_points(group=GROUP))


def provider_class(name: str) -> type:
    """The provider class registered under ``name`` (case-insensitive).

    Raises ProviderError listing the available names when there is none, or when its module
    cannot be imported.
    """
    found = available_providers()
    ep = found.get(name) or {k.lower(): v for k, v in found.items()}.get(name.strip().lower())
    if ep is None:
        available = ", ".join(sorted(found)) or "none (is l2sync-dagster installed?)"
        raise ProviderError(f"unknown provider {name!r}; available providers: {available}")
    try:
        cls = ep.load()
    except Exception as exc:
        raise ProviderError(
            f"provider {ep.name!r} ({ep.value}) could not be loaded: {exc}"
        ) from exc
    if not isinstance(cls, type):
        raise ProviderError(f"provider {ep.name!r} ({ep.value}) is not a class")
    return cls


def open_provider(
    name: str, connection_string: str | ConnectionString, base_dir: Path | None = None
) -> Provider:
    """An instance of provider ``name`` built from its connection string.

    ``base_dir`` is where relative paths in the connection string resolve (the project
    directory).
    """
    cls = provider_class(name)
    return cls.from_connection_string(connection_string, base_dir=base_dir)
