"""The declared provider options: parsing from a connection string, errors, secrets, table."""

from typing import ClassVar

import pytest

from l2sync_dagster.providers.file import FileOptions
from l2sync_dagster.providers.options import ProviderOptions, markdown_table, option
from l2sync_dagster.spec.connection_string import (
    ConnectionString,
    ConnectionStringError,
    SecretValue,
)


class DemoOptions(ProviderOptions):
    provider: ClassVar[str] = "demo"
    url: str | None = option("URL", "service address", required=True)
    batch_size: int = option("BatchSize", "records per request", 100, low=1, high=1000)
    timeout: float = option("Timeout", "seconds per request", 30.0, low=0.1, high=600)
    verify: bool = option("Verify", "check TLS", True)
    password: SecretValue | None = option("Password", "the password", secret=True)


def parse(text: str, **environ: str) -> DemoOptions:
    return DemoOptions.parse(ConnectionString(text, environ=environ))


def test_defaults_types_and_case_insensitive_keys() -> None:
    got = parse("url=http://127.0.0.1;batchsize=7;TIMEOUT=2.5;verify=no")
    assert (got.url, got.batch_size, got.timeout, got.verify) == ("http://127.0.0.1", 7, 2.5,
                                                                  False)
    default = parse("URL=http://127.0.0.1")
    assert (default.batch_size, default.timeout, default.verify) == (100, 30.0, True)


@pytest.mark.parametrize("text, message", [
    ("URL=x;BatchSize=0", "demo: BatchSize must be a whole number from 1 to 1000, not '0'"),
    ("URL=x;BatchSize=1.5", "demo: BatchSize must be a whole number from 1 to 1000"),
    ("URL=x;Verify=maybe", "Verify must be true or false, not 'maybe'"),
    ("URL=x;Bogus=1", "unknown key Bogus; allowed keys are BatchSize, Password"),
    ("BatchSize=3", "missing required key URL"),
    ("URL=", "missing required key URL"),
])
def test_errors_keep_the_connection_string_wording(text: str, message: str) -> None:
    with pytest.raises(ConnectionStringError, match=message.replace(".", r"\.")):
        parse(text)


def test_secret_is_resolved_and_never_shown() -> None:
    got = parse("URL=x;Password=env:PW", PW="hunter2")
    assert isinstance(got.password, SecretValue) and got.password.reveal() == "hunter2"
    assert "hunter2" not in repr(got) and "hunter2" not in str(got)
    with pytest.raises(ConnectionStringError, match="never the secret itself") as err:
        parse("URL=x;Password=hunter2")
    assert "hunter2" not in str(err.value)


def test_env_reference_of_a_plain_option() -> None:
    assert parse("URL=env:U", U="http://127.0.0.1").url == "http://127.0.0.1"
    with pytest.raises(ConnectionStringError, match="not set"):
        parse("URL=env:MISSING")


def test_markdown_table_lists_every_declared_option() -> None:
    table = markdown_table([DemoOptions, FileOptions])
    assert "| `demo` | `BatchSize` | `100` | records per request |" in table
    assert "| `file` | `Path` | required |" in table
    assert table.count("\n") == 2 + 5 + 4
