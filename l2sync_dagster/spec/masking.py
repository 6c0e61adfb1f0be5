"""Secrets never leave the process in text: one masking function for every message and record.

:func:`mask_secrets` replaces the value of every secret key (``Password=...``,
``"client_secret": "..."``, ``?password=...``), any userinfo of a URL (``scheme://u:pw@host``)
and bearer tokens with ``***``; references such as ``Password=env:DB_PASSWORD`` stay readable.
Apply it to every message, log line, metadata entry and stored run record.
:func:`url_secret` tells a connection-string value that carries credentials inside a URL, which
is refused like a literal secret.
"""

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote, urlsplit

MASK = "***"

#: words that make a key a secret (compared without case, ``_`` and ``-``); a key ending in one
#: of them (``DbPassword``, ``x-api-key``) is a secret too
SECRET_WORDS = (
    "password", "passwd", "pwd", "clientsecret", "secret", "token", "apikey", "accesstoken",
    "refreshtoken", "accountkey", "sharedaccesskey", "privatekey", "clientassertion", "sig",
)

_WORD = "|".join(
    "[_-]?".join(re.escape(ch) for ch in word) if len(word) > 3 else re.escape(word)
    for word in sorted(SECRET_WORDS, key=len, reverse=True)
)
_KEY = rf"[A-Za-z0-9_.$-]*?(?:{_WORD})"
_QUOTED = r"\"(?:[^\"]|\"\")*\"?|'(?:[^']|'')*'?"

# ?password=x&...: inside a URL's query a value ends at & or #
_QUERY_PAIR = re.compile(rf"(?i)(?<=[?&])({_KEY})(=)([^&#\s;\"']*)")
# Key=Value as in connection strings and free text
_PAIR = re.compile(rf"(?i)(?<![A-Za-z0-9_])({_KEY})(\s*(?:=|%3D)\s*)({_QUOTED}|[^;\s\"',)\]}}]*)")
# "key": "value" and 'key': 'value' (JSON, Python reprs)
_QUOTED_PAIR = re.compile(
    rf"(?i)([\"'])({_KEY})\1(\s*:\s*)(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')"
)
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/?#@\s\"']+)@")
_BEARER = re.compile(r"(?i)\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}")


def _is_reference(value: str) -> bool:
    return value.strip().strip("\"'").lower().startswith("env:")


def _mask_pair(match: re.Match[str]) -> str:
    key, sep, value = match.group(1), match.group(2), match.group(3)
    if not value or value.startswith(MASK) or _is_reference(value):
        return match.group(0)
    return f"{key}{sep}{MASK}"


def _mask_quoted(match: re.Match[str]) -> str:
    quote, key, sep, value = match.groups()
    if _is_reference(value):
        return match.group(0)
    return f"{quote}{key}{quote}{sep}{value[0]}{MASK}{value[0]}"


def mask_secrets(text: str, known: Iterable[str] = ()) -> str:
    """``text`` with every secret replaced by ``***``.

    Masks values of secret keys in ``Key=Value``, ``?key=value`` and ``"key": "value"`` forms
    (``env:`` references are kept), the userinfo of URLs, ``Bearer``/``Basic`` credentials, and
    every occurrence of the ``known`` values (resolved secrets, at least 4 characters).
    """
    if not text:
        return text
    out = str(text)
    for value in sorted({k for k in known if k and len(k) >= 4}, key=len, reverse=True):
        out = out.replace(value, MASK)
    out = _USERINFO.sub(lambda m: f"{m.group(1)}{MASK}@", out)
    out = _QUERY_PAIR.sub(_mask_pair, out)
    out = _PAIR.sub(_mask_pair, out)
    out = _QUOTED_PAIR.sub(_mask_quoted, out)
    out = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", out)
    return out


def is_secret_key(key: str) -> bool:
    """True for a key whose value is a secret (``Password``, ``client_secret``, ``x-api-key``)."""
    low = re.sub(r"[_\-\s]", "", key.lower())
    return any(low.endswith(word) for word in SECRET_WORDS)


def url_secret(value: str) -> str | None:
    """What makes ``value`` a URL carrying credentials, or None.

    A password in the userinfo (``postgresql://u:pw@host``, ``https://u:pw@host``) or a
    secret parameter in the query (``?password=...``, ``?sig=...``) counts; a user name alone
    (``postgresql://sync@host``) does not.
    """
    if "://" not in value:
        return None
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        return None
    netloc = parts.netloc
    if "@" in netloc:
        userinfo = netloc.rsplit("@", 1)[0]
        if ":" in userinfo:
            return "a password in its user:password@ part"
    for name, param in parse_qsl(parts.query, keep_blank_values=True):
        if is_secret_key(name) and param and not _is_reference(param):
            return f"a secret in the URL parameter {name[:40]}"
        inner = unquote(param)
        if mask_secrets(inner) != inner:  # odbc_connect=...PWD=... and the like
            return f"a secret inside the URL parameter {name[:40]}"
    return None
