"""Provider options declared once: key, type, default, range, choices and description.

A provider subclasses :class:`ProviderOptions`, declaring each option as a pydantic field with
:func:`option`; :meth:`ProviderOptions.parse` reads a :class:`ConnectionString` (keys
case-insensitive, ``env:VAR`` resolved as the connection string does, unknown keys refused with
:meth:`ConnectionString.check_keys`) and :func:`markdown_table` writes the README table, so the
names, types, defaults, error messages and documentation of every option come from one place.
Options several providers share (the Microsoft sign-in) are declared once in a base model that
the providers subclass; a subclass may redeclare an option to narrow it (its choices, default).

``python -m l2sync_dagster.providers.options`` prints the README table.
"""

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo

from l2sync_dagster.spec.connection_string import (
    ConnectionString,
    ConnectionStringError,
    SecretValue,
)


def option(key: str, description: str, default: Any = None, *, required: bool = False,
           secret: bool = False, low: float | None = None, high: float | None = None,
           choices: tuple[str, ...] = (), unit: str = "") -> Any:
    """Declare one option: its connection-string ``key`` and one-line ``description``.

    ``low``/``high`` bound a number, ``unit`` names it in errors ("seconds"); ``choices`` are
    the accepted words as documented (matched case-insensitively, parsed to lower case).
    """
    extra = {"key": key, "required": required, "secret": secret, "low": low, "high": high,
             "choices": list(choices), "unit": unit}
    return Field(default=default, description=description, json_schema_extra=extra)


def _extra(info: FieldInfo) -> dict[str, Any]:
    extra = info.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def _words(choices: list[str]) -> str:
    return ", ".join(choices)


class ProviderOptions(BaseModel):
    """Base of a provider's options; subclasses set ``provider`` and declare fields."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    #: the provider's name: the label of its errors and its name in the README table
    provider: ClassVar[str] = ""
    #: the README table's name for the options declared here (default: the provider's name)
    title: ClassVar[str] = ""

    @classmethod
    def keys(cls) -> list[str]:
        """The connection-string keys, as declared."""
        return [_extra(info)["key"] for info in cls.model_fields.values()]

    @classmethod
    def info(cls, key: str) -> FieldInfo:
        """The declaration of ``key`` (case-insensitive)."""
        for info in cls.model_fields.values():
            if _extra(info)["key"].lower() == key.lower():
                return info
        raise KeyError(key)

    @classmethod
    def default(cls, key: str) -> Any:
        """The declared default of ``key``."""
        return cls.info(key).default

    @classmethod
    def parse(cls, cs: ConnectionString, *, check_keys: bool = True) -> Any:
        """The options of ``cs`` (an instance of ``cls``); errors name the key.

        ``check_keys=False`` reads this model's keys from a string that holds others too (a
        provider reading its sign-in keys); unknown and missing keys are then not checked.
        """
        if check_keys:
            required = [_extra(i)["key"] for i in cls.model_fields.values()
                        if _extra(i)["required"]]
            cs.check_keys(cls.keys(), required=required)
        values: dict[str, Any] = {}
        for name, info in cls.model_fields.items():
            key = _extra(info)["key"]
            if key in cs:
                values[name] = cls._value(cs, key, info)
        return cls(**values)

    @classmethod
    def _value(cls, cs: ConnectionString, key: str, info: FieldInfo) -> Any:
        extra = _extra(info)
        if extra["secret"]:
            return cs.secret(key)
        if info.annotation in (bool, bool | None):
            return cs.get_bool(key, info.default)
        if info.annotation in (int, int | None, float, float | None):
            whole = info.annotation in (int, int | None)
            what = "a whole number" if whole else (
                f"a number of {extra['unit']}" if extra["unit"] else "a number")
            value = cs.get_number(key, info.default, extra["low"], extra["high"], what=what,
                                  label=cls.provider)
            return value if value is None else (int(value) if whole else float(value))
        if extra["required"]:
            return cs.require(key)
        raw = cs.get(key)
        if raw is None or raw.strip() == "":
            return info.default
        if extra["choices"]:
            word = raw.strip().lower()
            if word not in {c.lower() for c in extra["choices"]}:
                prefix = f"{cls.provider}: " if cls.provider else ""
                raise ConnectionStringError(f"{prefix}{key} must be one of "
                                            f"{_words(extra['choices'])}, not {raw!r}")
            return word
        return raw


def _default_text(info: FieldInfo) -> str:
    extra = _extra(info)
    if extra["required"]:
        return "required"
    if info.default is None:
        return ""
    if isinstance(info.default, bool):
        return "true" if info.default else "false"
    return f"`{_number_text(info.default)}`"


def _number_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _description(info: FieldInfo) -> str:
    extra = _extra(info)
    text = str(info.description)
    if extra["choices"]:
        text += "; one of " + ", ".join(f"`{c}`" for c in extra["choices"])
    if extra["low"] is not None and extra["high"] is not None:
        unit = f" {extra['unit']}" if extra["unit"] else ""
        text += f"; {_number_text(extra['low'])} to {_number_text(extra['high'])}{unit}"
    if extra["secret"]:
        text += "; `env:VARIABLE` only"
    return text.replace("|", "\\|")


def _own_fields(model: type[ProviderOptions]) -> list[FieldInfo]:
    """The fields ``model`` declares or redeclares (not those it inherits unchanged)."""
    inherited: dict[str, FieldInfo] = {}
    for base in model.__mro__[1:]:
        if isinstance(base, type) and issubclass(base, ProviderOptions):
            for name, info in base.model_fields.items():
                inherited.setdefault(name, info)
    own = []
    for name, info in model.model_fields.items():
        parent = inherited.get(name)
        if parent is None or parent.description != info.description \
                or parent.default != info.default or _extra(parent) != _extra(info):
            own.append(info)
    return own


def markdown_table(models: list[type[ProviderOptions]]) -> str:
    """The README table of ``models``: one row per option a model declares itself (shared
    options once, under the base model's title)."""
    rows = ["| Provider | Key | Default | Description |", "|---|---|---|---|"]
    for model in models:
        # a title names the options of the model that sets it, not those of its subclasses
        title = model.__dict__.get("title") or f"`{model.provider}`"
        for info in _own_fields(model):
            rows.append(f"| {title} | `{_extra(info)['key']}` | {_default_text(info)} "
                        f"| {_description(info)} |")
    return "\n".join(rows) + "\n"


__all__ = ["ConnectionStringError", "ProviderOptions", "SecretValue", "markdown_table", "option"]
