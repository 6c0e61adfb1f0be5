"""Providers are found by name through the entry-point group."""

from pathlib import Path

import pytest

from l2sync_dagster.providers.base import Provider, ProviderError
from l2sync_dagster.providers.file import FileProvider
from l2sync_dagster.providers.registry import available_providers, open_provider, provider_class
from l2sync_dagster.providers.sql import SqlProvider


def test_builtin_providers_are_registered() -> None:
    assert {"sql", "file"} <= set(available_providers())
    assert provider_class("sql") is SqlProvider
    assert provider_class("File") is FileProvider


def test_unknown_provider_lists_available_ones() -> None:
    with pytest.raises(ProviderError, match="unknown provider 'nope'") as info:
        provider_class("nope")
    assert "file" in str(info.value) and "sql" in str(info.value)


def test_open_provider(tmp_path: Path) -> None:
    sql = open_provider("sql", "URL=sqlite:///x.db", tmp_path)
    try:
        assert isinstance(sql, Provider)
        assert str(tmp_path / "x.db") in sql.safe_url  # type: ignore[attr-defined]
    finally:
        sql.close()
    file = open_provider("file", "Path=data.csv", tmp_path)
    assert isinstance(file, FileProvider) and file.path == (tmp_path / "data.csv").resolve()
