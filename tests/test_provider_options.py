"""The declared provider options: parsing from a connection string, errors, secrets, table."""

from pathlib import Path
from typing import Any, ClassVar

import pytest

from l2sync_dagster.providers.file import FileOptions
from l2sync_dagster.providers.options import ProviderOptions, markdown_table, option
from l2sync_dagster.providers.options_table import BEGIN, END, README_PROVIDERS, readme_table
from l2sync_dagster.providers.registry import available_providers, provider_class
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
    assert "| `demo` | `BatchSize` | `100` | records per request; 1 to 1000 |" in table
    assert "| `file` | `Path` | required |" in table
    assert table.count("\n") == 2 + 5 + 4


# --- every provider's declared options ----------------------------------------------------

SECRET = "s3cr3t-do-not-show"
SECRET_ENV = "L2S_OPTIONS_SECRET"
SIGN_IN = f"TenantId=t;ClientId=c;ClientSecret=env:{SECRET_ENV}"
#: a connection string each provider accepts without reaching a server
VALID = {
    "sql": "URL=sqlite:///options.db",
    "file": "Path=options.csv",
    "exchange": "URL=https://127.0.0.1:1/EWS/Exchange.asmx;User=a@b.test;"
                f"Password=env:{SECRET_ENV};Authentication=Basic",
    "sharepoint": f"URL=https://contoso.sharepoint.com/sites/s/Lists/L;{SIGN_IN}",
    "dataverse": f"URL=https://org.crm4.dynamics.com/api/data/v9.2/accounts;{SIGN_IN}",
    "odata": f"URL=http://127.0.0.1:1/svc/People;Authentication=OAuth;{SIGN_IN}",
}


def open_with(name: str, extra: str = "") -> Any:
    """The provider ``name`` from its valid string with the ``Key=value`` pairs of ``extra``
    added or replacing those of the same key."""
    pairs = dict(part.split("=", 1) for part in VALID[name].split(";"))
    pairs.update(part.split("=", 1) for part in extra.split(";") if part)
    text = ";".join(f"{k}={v}" for k, v in pairs.items())
    return provider_class(name).from_connection_string(ConnectionString(text, label=name),
                                                       base_dir=Path("."))


def numeric_options(name: str) -> list[tuple[str, float, float]]:
    model = provider_class(name).options
    return [(extra["key"], extra["low"], extra["high"])
            for info in model.model_fields.values()
            if (extra := info.json_schema_extra) and extra["low"] is not None]  # type: ignore


@pytest.fixture(autouse=True)
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)


def test_every_provider_declares_its_options() -> None:
    assert set(README_PROVIDERS) == set(available_providers())
    for name in README_PROVIDERS:
        model = provider_class(name).options
        assert model.provider == name
        open_with(name)  # the sample string is valid


@pytest.mark.parametrize("name", README_PROVIDERS)
def test_unknown_key_is_refused_naming_it_and_the_allowed_keys(name: str) -> None:
    with pytest.raises(ConnectionStringError) as err:
        open_with(name, "Colour=red")
    message = str(err.value)
    assert "unknown key Colour" in message
    assert all(key in message for key in provider_class(name).options.keys())


@pytest.mark.parametrize("name, key, low, high", [
    (name, key, low, high) for name in README_PROVIDERS
    for key, low, high in numeric_options(name)])
def test_numbers_out_of_range_are_refused_naming_key_and_range(name: str, key: str, low: float,
                                                               high: float) -> None:
    for bad in (f"{high + 1:g}", f"{low - 1:g}", "many"):
        with pytest.raises(ConnectionStringError) as err:
            open_with(name, f"{key}={bad}")
        assert f"{key} must be a" in str(err.value) and f"from {low:g} to {high:g}" in \
            str(err.value), str(err.value)
        assert SECRET not in str(err.value)


@pytest.mark.parametrize("name, key", [
    (name, info.json_schema_extra["key"]) for name in README_PROVIDERS  # type: ignore
    for info in provider_class(name).options.model_fields.values()
    if info.json_schema_extra["choices"]])  # type: ignore
def test_a_word_not_in_the_list_is_refused_naming_the_choices(name: str, key: str) -> None:
    with pytest.raises(ConnectionStringError) as err:
        open_with(name, f"{key}=Nonsense")
    choices = provider_class(name).options.info(key).json_schema_extra["choices"]  # type: ignore
    assert f"{key} must be one of {', '.join(choices)}, not 'Nonsense'" in str(err.value)
    assert SECRET not in str(err.value)


@pytest.mark.parametrize("name", [n for n in README_PROVIDERS if n not in ("sql", "file")])
def test_a_secret_never_appears_in_an_error(name: str) -> None:
    """The secret behind ClientSecret/Password=env:VAR is resolved, but no refusal of another
    key shows it; a literal secret is refused without being echoed."""
    for extra in ("Colour=red", "Timeout=0", "CABundle=missing.pem", "Backend=x;Batch=x"):
        with pytest.raises(ConnectionStringError) as err:
            open_with(name, extra)
        assert SECRET not in str(err.value) and SECRET not in repr(err.value)
    literal = VALID[name].replace(f"env:{SECRET_ENV}", SECRET)
    with pytest.raises(ConnectionStringError, match="never the secret itself") as err:
        provider_class(name).from_connection_string(literal)
    assert SECRET not in str(err.value)


#: where each provider keeps the value of a tuning option
USED = {
    ("sql", "BatchSize"): lambda p: p.batch_size,
    ("file", "Encoding"): lambda p: p.encoding,
    ("exchange", "PageSize"): lambda p: p.settings.page_size,
    ("exchange", "BatchSize"): lambda p: p.settings.batch_size,
    ("exchange", "ReadBatchSize"): lambda p: p.settings.read_batch_size,
    ("exchange", "Timeout"): lambda p: p.settings.timeout_s,
    ("exchange", "MaxRetryWait"): lambda p: p.settings.max_retry_wait_s,
    ("sharepoint", "PageSize"): lambda p: p.page_size,
    ("sharepoint", "Timeout"): lambda p: p.client.timeout_s,
    ("dataverse", "KeyGeneration"): lambda p: p.key_generation,
    ("odata", "KeyGeneration"): lambda p: p.key_generation,
    ("odata", "BatchSize"): lambda p: p.batch_size,
    ("odata", "Concurrency"): lambda p: p.concurrency,
    ("odata", "MaxPageSize"): lambda p: p.page_size,
    ("odata", "Timeout"): lambda p: p.client.timeout_s,
    ("dataverse", "Timeout"): lambda p: p.client.timeout_s,
}


@pytest.mark.parametrize("name, key", list(USED))
def test_defaults_are_the_declared_ones_and_a_given_value_is_used(name: str, key: str) -> None:
    model = provider_class(name).options
    get = USED[(name, key)]
    assert get(open_with(name)) == model.default(key)
    info = model.info(key)
    extra = info.json_schema_extra
    if extra["choices"]:  # type: ignore
        other = next(c for c in extra["choices"] if c.lower() != model.default(key))  # type: ignore
        assert get(open_with(name, f"{key}={other}")) == other.lower()
    elif extra["low"] is not None:  # type: ignore
        assert get(open_with(name, f"{key}={extra['low']:g}")) == extra["low"]  # type: ignore
    else:
        assert get(open_with(name, f"{key}=latin-1")) == "latin-1"


def test_readme_table_is_the_generated_one() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    start, end = readme.index(BEGIN), readme.index(END) + len(END) + 1
    assert readme[start:end] == readme_table(), (
        "README's provider options differ from the declarations: run python -m "
        "l2sync_dagster.providers.options_table and paste its output")
    for name in README_PROVIDERS:
        for key in provider_class(name).options.keys():
            assert f"| `{key}` |" in readme[start:end], (name, key)
