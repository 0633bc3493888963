"""Match boundaries that work in Chinese text.

Python's `\\b` sits between a word character and a non-word character, and CJK
ideographs are word characters just like ASCII letters and digits. So
`\\b13812345678\\b` finds nothing in "手机13812345678", and a `\\w`-based e-mail
pattern swallows "邮箱" into "邮箱bob@example.com". Our patterns bound matches
with explicit ASCII classes instead.
"""

from __future__ import annotations

import string

# A number must not continue a longer run of digits or letters. "+" is excluded
# too, so the digits of "+4915112345678" are read as a phone number, never as a card.
NUMBER_START = r"(?<![0-9A-Za-z+])"
NUMBER_END = r"(?![0-9A-Za-z])"

# Full-width digits, letters, "@" and "+", as Chinese input methods type them,
# read as ASCII. One code point for one, so offsets into the folded text are
# offsets into the original. Full-width punctuation stays: a full-width colon
# (U+FF1A) read as ":" would glue a Chinese label to the IPv6 address after it.
FULL_WIDTH_FOLD = {ord(c) + 0xFEE0: ord(c) for c in string.ascii_letters + string.digits + "@+"}
