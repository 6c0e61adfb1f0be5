"""The one tokenizer of the select-statement parsers (Exchange and OData/Dataverse): a scan
driven by each parser's own token pattern, the token it yields, and the cursor parsers walk
tokens with. Each parser keeps its grammar (which tokens exist, what its errors say)."""

import re
from collections.abc import Callable
from dataclasses import dataclass

#: token kinds that are names or keywords (case-insensitive), per parser pattern
WORD_KINDS = frozenset({"word", "ident"})


@dataclass(frozen=True)
class Token:
    """One token: its kind (the pattern's group name), its text and its 0-based position."""

    kind: str
    text: str
    pos: int

    @property
    def low(self) -> str:
        """The text in lower case."""
        return self.text.lower()

    @property
    def upper(self) -> str:
        """A word's text in upper case (for keyword tests); '' for any other token."""
        return self.text.upper() if self.kind in WORD_KINDS else ""


def tokenize(text: str, pattern: re.Pattern[str],
             unmatched: Callable[[str, int], Exception]) -> list[Token]:
    """``text`` as tokens of ``pattern`` (named groups; ``ws`` is dropped). ``unmatched(text,
    pos)`` makes the error for a character no group matches."""
    out: list[Token] = []
    pos = 0
    while pos < len(text):
        m = pattern.match(text, pos)
        if m is None:
            raise unmatched(text, pos)
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append(Token(kind, m.group(), pos))
        pos = m.end()
    return out


class TokenCursor:
    """A position in a token list; ``ended(what)`` makes the error for a statement that ends
    where ``what`` was expected."""

    def __init__(self, toks: list[Token], ended: Callable[[str], Exception]) -> None:
        self.toks = toks
        self.i = 0
        self._ended = ended

    def peek(self, offset: int = 0) -> Token | None:
        """The token ``offset`` places ahead (None past the end)."""
        j = self.i + offset
        return self.toks[j] if j < len(self.toks) else None

    def next(self, what: str) -> Token:
        """Consume the next token; the statement must not end here."""
        tok = self.peek()
        if tok is None:
            raise self._ended(what)
        self.i += 1
        return tok
