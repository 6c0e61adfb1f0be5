"""Layer2-style connection strings: ``Key=Value;Key="quoted; value"`` with ``env:VAR`` secrets.

Keys are case-insensitive. A value of the form ``env:VAR`` is a reference to an environment
variable; it is resolved when the value is asked for, and values that are secrets never appear in
``repr``, ``str`` or error messages.
"""

import os
from collections.abc import Iterable, Mapping

from l2sync_dagster.contract import FALSE_WORDS, TRUE_WORDS
from l2sync_dagster.spec.masking import is_secret_key, url_secret

SECRET_KEYS = frozenset({"password", "clientsecret", "secret", "token", "apikey", "accesstoken"})


class ConnectionStringError(ValueError):
    """A connection string is malformed, has an unknown key or misses a required one."""


#: longest key echoed in a message
_KEY_ECHO = 60
_CONTROL_NAMES = {0: "NUL", 9: "tab", 10: "line break", 13: "carriage return", 127: "DEL"}


def _secret_key(key: str) -> bool:
    return key.lower() in SECRET_KEYS or is_secret_key(key)


def _show_key(key: str) -> str:
    """A key as echoed in messages: control characters escaped, long keys cut."""
    shown = key.encode("unicode_escape").decode("ascii", "replace") if not key.isprintable() \
        else key
    if len(shown) > _KEY_ECHO:
        shown = f"{shown[:_KEY_ECHO]}... ({len(shown) - _KEY_ECHO:,} more characters)"
    return shown


def _control_char(text: str) -> tuple[int, str] | None:
    """(0-based position, name) of the first control character in ``text``, or None."""
    for i, ch in enumerate(text):
        code = ord(ch)
        if code < 32 or code == 127:
            return i, _CONTROL_NAMES.get(code, f"U+{code:04X}")
    return None


def _not_a_pair(part: int, start: int) -> ConnectionStringError:
    # the text itself is never shown: "Password hunter2" is a secret without its '='
    return ConnectionStringError(
        f"connection string: part {part} (from character {start + 1}) is not Key=Value; "
        "separate parts with ';' and write each as Key=Value (its text is not shown, it may "
        "hold a secret)"
    )


class SecretValue:
    """A resolved secret. ``str()`` and ``repr()`` never show it; ``reveal()`` does."""

    __slots__ = ("_value", "_source")

    def __init__(self, value: str, source: str) -> None:
        self._value = value
        self._source = source

    def reveal(self) -> str:
        """The secret itself, for handing to a client library, never for printing."""
        return self._value

    def __repr__(self) -> str:
        return f"<secret from {self._source}>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretValue) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _split(text: str) -> list[tuple[str, str]]:
    """Split ``k=v;k="v;v"`` into pairs. Quotes may be single or double; doubled quotes escape."""
    pairs: list[tuple[str, str]] = []
    i, n = 0, len(text)
    part = 0
    while i < n:
        while i < n and text[i] in " \t\r\n;":
            i += 1
        if i >= n:
            break
        part += 1
        eq = text.find("=", i)
        if eq < 0:
            raise _not_a_pair(part, i)
        key = text[i:eq].strip()
        if not key or ";" in key:
            raise _not_a_pair(part, i)
        if _control_char(key) is not None or any(ch in key for ch in "\"'"):
            raise _not_a_pair(part, i)
        i = eq + 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] in "\"'":
            quote = text[i]
            i += 1
            buf: list[str] = []
            while True:
                if i >= n:
                    raise ConnectionStringError(
                        f"connection string: unclosed quote in the value of {_show_key(key)}"
                    )
                if text[i] == quote:
                    if i + 1 < n and text[i + 1] == quote:
                        buf.append(quote)
                        i += 2
                        continue
                    i += 1
                    break
                buf.append(text[i])
                i += 1
            value = "".join(buf)
            while i < n and text[i] in " \t":
                i += 1
            if i < n and text[i] != ";":
                raise ConnectionStringError(
                    "connection string: unexpected text after the quoted value of "
                    f"{_show_key(key)}"
                )
        else:
            end = text.find(";", i)
            end = n if end < 0 else end
            value = text[i:end].strip()
            i = end
        pairs.append((key, value))
    return pairs


class ConnectionString:
    """A parsed connection string. Look-ups are case-insensitive; ``env:`` values resolve lazily."""

    def __init__(
        self, text: str, environ: Mapping[str, str] | None = None, label: str = ""
    ) -> None:
        self._environ = os.environ if environ is None else environ
        self._label = label
        self._values: dict[str, tuple[str, str]] = {}
        for key, value in _split(text):
            low = key.lower()
            if low in self._values:
                raise ConnectionStringError(f"{self._where()}key {_show_key(key)} is given twice")
            self._values[low] = (key, value)
        for key, value in self._values.values():
            shown = _show_key(key)
            if _secret_key(key) and value and not value.startswith("env:"):
                ref = shown if shown.isidentifier() else "Password"
                raise ConnectionStringError(
                    f"{self._where()}{shown} must be a reference like {ref}=env:VARIABLE, "
                    "never the secret itself"
                )
            control = _control_char(value)
            if control is not None:
                raise ConnectionStringError(
                    f"{self._where()}the value of {shown} holds a control character "
                    f"({control[1]}) at character {control[0] + 1}"
                )
            found = None if value.startswith("env:") else url_secret(value)
            if found:
                raise ConnectionStringError(
                    f"{self._where()}{shown} holds {found}; never write credentials in a URL: "
                    "put the password in Password=env:VARIABLE (the user may stay in the URL "
                    "or go in User=)"
                )

    def _where(self) -> str:
        return f"{self._label}: " if self._label else ""

    def keys(self) -> list[str]:
        """The keys as written."""
        return [key for key, _ in self._values.values()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._values

    def check_keys(self, allowed: Iterable[str], required: Iterable[str] = ()) -> None:
        """Raise naming the first unknown key or the first missing required key."""
        allowed_low = {k.lower(): k for k in allowed}
        for low, (key, _) in self._values.items():
            if low not in allowed_low:
                raise ConnectionStringError(
                    f"{self._where()}unknown key {_show_key(key)}; allowed keys are "
                    + ", ".join(sorted(allowed_low.values()))
                )
        for req in required:
            if req.lower() not in self._values:
                raise ConnectionStringError(f"{self._where()}missing required key {req}")

    def is_secret(self, key: str) -> bool:
        """True when the value is a secret (a secret key or an ``env:`` reference)."""
        item = self._values.get(key.lower())
        return bool(item) and (_secret_key(key) or item[1].startswith("env:"))

    def raw(self, key: str) -> str | None:
        """The value as written (``env:VAR`` unresolved)."""
        item = self._values.get(key.lower())
        return None if item is None else item[1]

    def _resolve(self, key: str, value: str) -> str:
        if not value.startswith("env:"):
            return value
        var = value[4:].strip()
        if not var:
            raise ConnectionStringError(f"{self._where()}{key}=env: names no variable")
        if var not in self._environ:
            raise ConnectionStringError(
                f"{self._where()}{key} refers to environment variable {_show_key(var)}, "
                "which is not set"
            )
        return self._environ[var]

    def get(self, key: str, default: str | None = None) -> str | None:
        """A non-secret value, resolved. Use :meth:`secret` for secrets."""
        item = self._values.get(key.lower())
        if item is None:
            return default
        if _secret_key(key):
            raise ConnectionStringError(f"{self._where()}{item[0]} is a secret: use secret()")
        return self._resolve(item[0], item[1])

    def require(self, key: str) -> str:
        """A non-secret value that must be present."""
        value = self.get(key)
        if value is None or value == "":
            raise ConnectionStringError(f"{self._where()}missing required key {key}")
        return value

    def secret(self, key: str) -> SecretValue | None:
        """A value wrapped so that it cannot be printed by accident."""
        item = self._values.get(key.lower())
        if item is None:
            return None
        return SecretValue(self._resolve(item[0], item[1]), item[1])

    def get_bool(self, key: str, default: bool = False) -> bool:
        """A true/false value (true, yes, 1 / false, no, 0)."""
        value = self.get(key)
        if value is None or value == "":
            return default
        low = value.strip().lower()
        if low in TRUE_WORDS:
            return True
        if low in FALSE_WORDS:
            return False
        raise ConnectionStringError(
            f"{self._where()}{key} must be true or false, not {_show_key(value)!r}"
        )

    def get_number(self, key: str, default: float | None, low: float, high: float, *,
                   what: str = "a number", label: str = "") -> float | None:
        """The numeric value of ``key`` (``default`` when absent or empty), checked to lie in
        ``low..high``; ``what`` names it in the error (``"a whole number"`` also refuses
        fractions), ``label`` prefixes the error (the provider's name)."""
        raw = self.get(key)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw) if what == "a whole number" else float(raw)
        except ValueError:
            value = float("nan")
        if not low <= value <= high:
            prefix = f"{label}: " if label else self._where()
            raise ConnectionStringError(f"{prefix}{key} must be {what} from {low:g} to {high:g}, "
                                        f"not {_show_key(raw)!r}")
        return value

    def redacted(self) -> str:
        """The string with every secret replaced by ``***`` (references stay visible)."""
        parts = []
        for key, value in self._values.values():
            if _secret_key(key) and not value.startswith("env:"):
                value = "***"
            parts.append(f"{key}={value}")
        return ";".join(parts)

    def __repr__(self) -> str:
        return f"ConnectionString({self.redacted()!r})"

    __str__ = __repr__
