# Full-width examples in the docstring are the point, not confusables.
# ruff: noqa: RUF002
"""Fold the ways people type digits and letters into the ASCII our patterns read.

Chinese input methods type full-width digits and letters (`１３８`, `ＤＥ８９`),
word processors put no-break and thin spaces, en dashes and minus signs between
digit groups, and copied text carries zero-width characters. A value typed so is
still the same value, so detection runs on a folded copy and the findings are
mapped back onto the original text: masking replaces what the user wrote.

The folding is NFKC's compatibility mapping restricted to the decompositions
that only change how a character looks (`<wide>`, `<narrow>`, `<font>`,
`<noBreak>`, spaces), onto the ASCII characters PII is written with. Only the Basic
Multilingual Plane is folded (mathematical alphanumerics are for formulas, and
scanning for them doubles the cost). Superscript,
subscript and circled digits are left alone: "13812345678¹" is a footnote mark
after a number, not a twelfth digit. Every folded character is one code point, so
offsets only shift where zero-width characters are dropped, and `Folded` keeps a
map for that case only.
"""

from __future__ import annotations

import functools
import re
import string
import unicodedata
from dataclasses import dataclass

# What PII is written with: the folding never produces anything else.
_TARGETS = frozenset(string.ascii_letters + string.digits + "@.:-+()/%_ ")
_KEPT_TAGS = ("<wide>", "<narrow>", "<font>", "<noBreak>", "<compat>")
# Dashes and minus signs NFKC leaves as they are; all are typed between digit groups.
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"
# Invisible characters that copying and some editors put inside numbers.
_INVISIBLE = "\u00ad\u200b\u200c\u200d\u2060\ufeff"
_HAS_INVISIBLE = re.compile(f"[{_INVISIBLE}]")
# Ideographic full stops: typed between digits, as "192。168。1。1" in Chinese mode,
# they are dots; anywhere else they end a sentence and stay.
_STOPS = "\u3002\uff61"


@functools.cache
def fold_table() -> dict[int, int]:
    """Code point -> ASCII code point for every character the folding changes.

    Built on first use (about 0.1 s) rather than at import; `PiiEngine` builds it
    in its constructor so no request pays for it.
    """
    table: dict[int, int] = {ord(c): ord("-") for c in _DASHES}
    for cp in range(0x80, 0x10000):
        char = chr(cp)
        tag = unicodedata.decomposition(char).partition(" ")[0]
        if tag not in _KEPT_TAGS or (tag == "<compat>" and not char.isspace()):
            continue
        folded = unicodedata.normalize("NFKC", char)
        if len(folded) == 1 and folded in _TARGETS:
            table[cp] = ord(folded)
        elif char.isspace():
            table[cp] = ord(" ")
    return table


@functools.cache
def _special() -> re.Pattern[str]:
    """Finds runs of what `fold` may change: foldable, full stops, invisible.

    `str.translate` looks every character up in the table (half a microsecond
    each); one scan with a single character class finds the few that need it.
    """
    chars = "".join(chr(cp) for cp in sorted(fold_table())) + _STOPS + _INVISIBLE
    return re.compile(f"[{re.escape(chars)}]+")


@dataclass(frozen=True, slots=True)
class Folded:
    """`text` folded; `origin[i]` is where folded character i came from (None: same place)."""

    text: str
    origin: tuple[int, ...] | None = None

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original text's span for folded `[start, end)` (end > start)."""
        if self.origin is None:
            return start, end
        return self.origin[start], self.origin[end - 1] + 1


def fold(text: str) -> Folded:
    """`text` as our patterns read it, with the way back to the original offsets."""
    if text.isascii():
        return Folded(text)
    table = fold_table()
    chars: list[str] | None = None
    dropped: set[int] = set()
    for m in _special().finditer(text):
        for i in range(m.start(), m.end()):
            c = text[i]
            if c in _INVISIBLE:
                dropped.add(i)
            elif c not in _STOPS:
                chars = chars or list(text)
                chars[i] = chr(table[ord(c)])
            elif _is_digit(text, i - 1, table) and _is_digit(text, i + 1, table):
                chars = chars or list(text)
                chars[i] = "."
    if not dropped:
        return Folded(text if chars is None else "".join(chars))
    kept = tuple(i for i in range(len(text)) if i not in dropped)
    source = text if chars is None else chars
    return Folded("".join(source[i] for i in kept), kept)


def _is_digit(text: str, i: int, table: dict[int, int]) -> bool:
    return 0 <= i < len(text) and 48 <= table.get(ord(text[i]), ord(text[i])) <= 57
