"""FindItem ``QueryString``: the subset of Advanced Query Syntax the sandbox understands.

Terms are ``word``, ``"a phrase"``, ``Property:word`` or ``Property:"a phrase"``, combined by
``AND`` (also between terms with nothing in between), ``OR`` and ``NOT`` (NOT binds tightest,
then AND, then OR; no parentheses). A term matches when one of the property's values contains
it, ignoring case (Exchange matches indexed words; the sandbox matches text). Properties:
Subject, Body, From, To, Cc, Bcc, Participants (all four), Category/Categories; a term without
one (or with a word before a colon that names none of them) looks at the Subject, the Body and
the participants.
"""

import re
from collections.abc import Callable

from l2sync_dagster.sandbox.ews import content
from l2sync_dagster.sandbox.ews.soap import t
from l2sync_dagster.sandbox.ews.store import Item

_TOKEN = re.compile(r'(?:(\w+):)?(?:"([^"]*)"|(\S+))')
_PEOPLE = ("From", "ToRecipients", "CcRecipients", "BccRecipients")
_SINGLE = {"from": ("From",), "to": ("ToRecipients",), "cc": ("CcRecipients",),
           "bcc": ("BccRecipients",), "participants": _PEOPLE}
_PROPERTIES = frozenset({"subject", "body", "category", "categories", *_SINGLE})


def _people(item: Item, names: tuple[str, ...]) -> list[str]:
    out = []
    for name in names:
        holder = item.element.find(t(name))
        for mb in holder.iter(t("Mailbox")) if holder is not None else ():
            out += [mb.findtext(t("Name")) or "", mb.findtext(t("EmailAddress")) or ""]
    return out


def _values(item: Item, prop: str | None) -> list[str]:
    """The texts a term on ``prop`` (lower-cased name, None for none) is looked for in."""
    subject = [item.element.findtext(t("Subject")) or ""]
    body = [content.plain_text(item) or ""]
    if prop is None:
        return subject + body + _people(item, _PEOPLE)
    if prop == "subject":
        return subject
    if prop == "body":
        return body
    if prop in _SINGLE:
        return _people(item, _SINGLE[prop])
    holder = item.element.find(t("Categories"))  # category, categories
    return [s.text or "" for s in holder] if holder is not None else []


Test = Callable[[Item], bool]


def _term(prop: str | None, text: str) -> Test:
    needle = text.lower()
    return lambda item: any(needle in v.lower() for v in _values(item, prop))


def parse(query: str) -> Test:
    """A predicate on items for an AQS query string."""
    alternatives: list[list[Test]] = [[]]
    negate = False
    for m in _TOKEN.finditer(query):
        prop, phrase, word = m.group(1), m.group(2), m.group(3)
        if prop is None and phrase is None and word in ("AND", "OR", "NOT"):
            if word == "OR":
                alternatives.append([])
            elif word == "NOT":
                negate = True
            continue
        if prop is not None and prop.lower() not in _PROPERTIES:
            prop, phrase, word = None, None, m.group(0)  # a colon inside a plain word
        test = _term(prop.lower() if prop else None, phrase if phrase is not None else word)
        if negate:
            test, negate = (lambda item, inner=test: not inner(item)), False
        alternatives[-1].append(test)
    groups = [g for g in alternatives if g]
    return lambda item: any(all(test(item) for test in g) for g in groups) if groups else True
