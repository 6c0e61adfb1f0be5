"""Provider options declared once: key, type, default, required-ness and description.

A provider subclasses :class:`ProviderOptions`, declaring each option as a pydantic field with
:func:`option`; :meth:`ProviderOptions.parse` reads a :class:`ConnectionString` (keys
case-insensitive, ``env:VAR`` resolved as the connection string does, unknown keys refused with
:meth:`ConnectionString.check_keys`) and :func:`markdown_table` writes the README table.
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
           secret: bool = False, low: float | None = None, high: float | None = None) -> Any:
    """Declare one option: its connection-string ``key`` and one-line ``description``."""
    extra = {"key": key, "required": required, "secret": secret, "low": low, "high": high}
    return Field(default=default, description=description, json_schema_extra=extra)


def _extra(info: FieldInfo) -> dict[str, Any]:
    extra = info.json_schema_extra
    return extra if isinstance(extra, dict) else {}


class ProviderOptions(BaseModel):
    """Base of a provider's options; subclasses set ``provider`` and declare fields."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    provider: ClassVar[str] = ""

    @classmethod
    def keys(cls) -> list[str]:
        """The connection-string keys, as declared."""
        return [_extra(info)["key"] for info in cls.model_fields.values()]

    @classmethod
    def parse(cls, cs: ConnectionString) -> "ProviderOptions":
        """The options of ``cs``; errors keep the connection string's wording."""
        required = [_extra(i)["key"] for i in cls.model_fields.values() if _extra(i)["required"]]
        cs.check_keys(cls.keys(), required=required)
        values: dict[str, Any] = {}
        for name, info in cls.model_fields.items():
            extra = _extra(info)
            key = extra["key"]
            if key not in cs:
                continue
            if extra["secret"]:
                values[name] = cs.secret(key)
            elif info.annotation in (bool, bool | None):
                values[name] = cs.get_bool(key, info.default)
            elif info.annotation in (int, int | None, float, float | None):
                what = "a whole number" if info.annotation in (int, int | None) else "a number"
                values[name] = cs.get_number(key, info.default, extra["low"], extra["high"],
                                             what=what, label=cls.provider)
            elif extra["required"]:
                values[name] = cs.require(key)
            else:
                raw = cs.get(key)
                values[name] = info.default if raw == "" else raw
        return cls(**values)


def _default_text(info: FieldInfo) -> str:
    extra = _extra(info)
    if extra["required"]:
        return "required"
    if info.default is None:
        return ""
    if isinstance(info.default, bool):
        return "true" if info.default else "false"
    return f"`{info.default}`"


def markdown_table(models: list[type[ProviderOptions]]) -> str:
    """The README table of the options of ``models``: one row per option."""
    rows = ["| Provider | Key | Default | Description |", "|---|---|---|---|"]
    for model in models:
        for info in model.model_fields.values():
            extra = _extra(info)
            rows.append(f"| `{model.provider}` | `{extra['key']}` | {_default_text(info)} "
                        f"| {info.description} |")
    return "\n".join(rows) + "\n"


__all__ = ["ConnectionStringError", "ProviderOptions", "SecretValue", "markdown_table", "option"]
