"""Match boundaries and separators that work in Chinese text.

Python's `\\b` sits between a word character and a non-word character, and CJK
ideographs are word characters just like ASCII letters and digits. So
`\\b13812345678\\b` finds nothing in "手机13812345678", and a `\\w`-based e-mail
pattern swallows "邮箱" into "邮箱bob@example.com". Our patterns bound matches
with explicit ASCII classes instead (the text is folded to ASCII first, see
`folding`).
"""

from __future__ import annotations

# A number must not continue a longer run of digits or letters, nor a number
# written just before it ("SE31 4002 ...": those digits belong to the IBAN). "+"
# is excluded too, so the digits of "+4915112345678" are a phone number, never a card.
NUMBER_START = r"(?<![0-9A-Za-z+])(?<![0-9][ .-])(?<![0-9]  )"
NUMBER_END = r"(?![0-9A-Za-z])"

# One separator between digit groups: one or two spaces (text copied out of
# PDFs and tables), or a hyphen (or dot) with or without spaces around it. Dots
# only where the format is written with them.
SPACE_OR_HYPHEN = r"(?: ?- ?| {1,2})"
SPACE_HYPHEN_OR_DOT = r"(?: ?[-.] ?| {1,2})"
