"""Presidio's own recognisers for e-mail, IP, IBAN and phone, fixed where they fail us.

- E-mail: Presidio's pattern is `\\b`- and `\\w`-based, so in "邮箱bob@example.com"
  the match is "邮箱bob@example.com". Ours is ASCII-bounded (internationalised
  addresses are not matched). Its validation calls `tldextract.extract`, whose
  module-level extractor downloads the public suffix list on first use; with no
  network that blocks on DNS before falling back. Ours owns an extractor that only
  reads the snapshot bundled with tldextract and writes no cache.
- IP: Presidio's IPv4 pattern starts with `\\b` and its IPv6 pattern is bounded by
  `\\w`, so "IP是192.168.1.1" and "地址2001:db8::1哦" are missed. Same alternatives,
  ASCII boundaries; `ipaddress` still has the last word (Presidio's invalidation).
- IBAN: Presidio's pattern is upper case only and takes the longest match or
  nothing. Ours reads runs (`runs`): any case, spaced or dashed, the longest
  prefix of the run that passes mod 97.
- Phone: Presidio's phonenumbers matcher, with the regions we serve. The matcher
  keeps the "(" of "(+44 20 7946 0958)" but not the ")": we drop the lone "(";
  and it reads decimals such as "39.9042" and dates such as "2024 06 01 10" as
  numbers in some plans: we drop those.
  Text with fewer than 7 digits is not searched at all.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import tldextract
from presidio_analyzer import Pattern, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts
from presidio_analyzer.predefined_recognizers import (
    EmailRecognizer,
    IpRecognizer,
    PhoneRecognizer,
)
from stdnum import iban
from stdnum.iso7064 import mod_97_10

from edgegate_security.pii.boundaries import NUMBER_END, SPACE_OR_HYPHEN
from edgegate_security.pii.findings import Entity
from edgegate_security.pii.runs import Candidate, Group, RunRecognizer

# National-format numbers are read in these numbering plans; "+CC ..." numbers are
# found whatever the list. Each plan costs one pass over the text and flags some
# numbers that are no phone numbers: about 7% of random 6-12 digit numbers are
# valid in CN's plan and in US's, and 60% of those starting with 0 in DE's (whose
# plan also reads "39.9042" as a number). So: mainland landlines, and the two
# national formats English text uses most; the rest in international form.
DEFAULT_PHONE_REGIONS: tuple[str, ...] = ("CN", "US", "GB")

# The local part allows what addresses use in practice, not all of RFC 5322: with
# "=", "?" or "/" allowed, "?mail=bob@example.com" would be one address.
_LOCAL = r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# "bob @ example.com" is written to dodge scrapers; a space on one side only is not.
_EMAIL = (
    r"(?<![A-Za-z0-9_%+.-])"
    + rf"{_LOCAL}(?:@| @ )(?:{_LABEL}\.)+{_LABEL}"
    + r"(?![A-Za-z0-9-]|\.[A-Za-z0-9])"
)


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail recogniser with a CJK-safe pattern and an offline suffix list."""

    def __init__(self) -> None:
        # No URLs: never fetch; no cache_dir: never write. The bundled snapshot is it.
        # Set before Presidio's constructor, which calls `load`.
        self._suffixes = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=())
        super().__init__(patterns=[Pattern("email_ascii", _EMAIL, 0.5)])

    def load(self) -> None:
        """Parse the bundled suffix list now rather than on the first request."""
        self._suffixes("example.com")

    def validate_result(self, pattern_text: str) -> bool:
        domain = pattern_text.rpartition("@")[2]
        parts = self._suffixes(domain)
        return bool(parts.domain and parts.suffix)


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_V4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_H = r"[0-9A-Fa-f]{1,4}"
_V6 = "|".join(
    (
        rf"(?:{_H}:){{6}}{_V4}",
        rf"(?:{_H}:){{0,5}}:(?:{_H}:){{0,4}}{_V4}",
        rf"(?:{_H}:){{7}}{_H}",
        rf"(?:{_H}:){{2,7}}:",  # one group and "::" ("5678::") is no address either
        rf"(?:{_H}:){{1,6}}:{_H}",
        rf"(?:{_H}:){{1,5}}(?::{_H}){{1,2}}",
        rf"(?:{_H}:){{1,4}}(?::{_H}){{1,3}}",
        rf"(?:{_H}:){{1,3}}(?::{_H}){{1,4}}",
        rf"(?:{_H}:){{1,2}}(?::{_H}){{1,5}}",
        rf"{_H}:(?::{_H}){{1,6}}",
        # "::" and one group ("::1", "::138") is loopback, or two colons (full width, folded)
        # before a number ("::138 1234 5678"), not anyone's address: two groups at least.
        rf":(?::{_H}){{2,7}}",
    )
)
# A ":" may come before the address when it ends a label ("IP:", "IPv6:", a
# full-width colon folded), not when it ends a hex group of a longer address.
_AFTER_LABEL = r"(?<!::)(?<!\.:)" + "".join(
    rf"(?<![^0-9A-Za-z][0-9A-Fa-f]{{{n}}}:)(?<!^[0-9A-Fa-f]{{{n}}}:)" for n in range(1, 5)
)
_IP_PATTERNS = (
    (
        "ipv4",
        rf"(?<![0-9A-Za-z.]){_V4}(?:/(?:3[0-2]|[12]?[0-9]))?(?![0-9A-Za-z]|\.[0-9])",
    ),
    (
        "ipv6",
        rf"(?<![0-9A-Za-z.]){_AFTER_LABEL}(?:{_V6})(?:%[0-9A-Za-z]+)?(?:/(?:12[0-8]|1[01][0-9]|[1-9]?[0-9]))?"
        + r"(?![0-9A-Za-z]|:[0-9A-Za-z:]|\.[0-9])",
    ),
)


class CjkSafeIpRecognizer(IpRecognizer):
    """Presidio's IP recogniser with ASCII boundaries; `ipaddress` validation is kept."""

    def __init__(self) -> None:
        super().__init__(patterns=[Pattern(name, regex, 0.6) for name, regex in _IP_PATTERNS])


class IbanRunRecognizer(RunRecognizer):
    """IBAN: country code, two check digits, up to 30 letters and digits, mod 97.

    Mod 97 with the right shape flags it (score 0.8); stdnum knowing the
    country's length and BBAN format (and national check digits) lifts it to 1.
    Written compact or in groups of four (the last shorter), as IBANs are printed.
    """

    _SHAPE = re.compile(r"[A-Z]{2}[0-9]{2}[0-9A-Z]{11,30}")

    def __init__(self) -> None:
        run = (
            r"(?<![0-9A-Za-z])[A-Za-z]{2}[0-9]{2}[0-9A-Za-z]*"
            + rf"(?:{SPACE_OR_HYPHEN}[0-9A-Za-z]+)*"
            + NUMBER_END
        )
        super().__init__(
            entity=Entity.IBAN_CODE.value,
            name="IbanRunRecognizer",
            run=run,
            min_chars=15,
            max_chars=34,
            strong=True,
        )

    def starts(self, group: Group) -> bool:
        return re.match(r"[A-Za-z]{2}[0-9]{2}", group.text) is not None

    def laid_out(self, groups: list[Group]) -> bool:
        """Compact, or printed in fours: a word after an IBAN is no part of it."""
        return all(len(g.text) == 4 for g in groups[:-1])

    def score(self, candidate: Candidate) -> float | None:
        number = candidate.compact
        if not self._SHAPE.fullmatch(number) or not mod_97_10.is_valid(number[4:] + number[:4]):
            return None
        return 1.0 if iban.is_valid(number) else 0.8


_DECIMAL = re.compile(r"[0-9]+\.[0-9]+")
# A date, written with one separator: "2024 06 01 10:30" is no phone number.
_DATE = re.compile(r"(?:19|20)[0-9]{2}([ ./-])(?:0[1-9]|1[0-2])\1(?:0[1-9]|[12][0-9]|3[01])")
# No valid number anywhere has fewer digits, country code included: the
# shortest plans (Niue, Tokelau, Saint Helena) have 4-digit numbers behind a
# 3-digit code, and ours (CN, US, GB) need more. Text with fewer digits skips
# the matcher, which costs most of an analysis ("the 3 points of the 15:30 call").
MIN_PHONE_DIGITS = 7


class BalancedPhoneRecognizer(PhoneRecognizer):
    """Presidio's phone recogniser without unpaired "(", decimal numbers or dates."""

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        if sum(map(str.isdigit, text)) < MIN_PHONE_DIGITS:
            return []
        # Presidio annotates its None default as plain NlpArtifacts; it never reads it here.
        results: list[RecognizerResult] = super().analyze(
            text,
            entities,
            nlp_artifacts,  # type: ignore[arg-type]
        )
        for result in results:
            if text[result.start] == "(" and ")" not in text[result.start : result.end]:
                result.start += 1  # an unpaired bracket, and any space after it, is not the number
                while text[result.start].isspace():
                    result.start += 1
        return [
            r
            for r in results
            if not _DECIMAL.fullmatch(text, r.start, r.end) and not _DATE.match(text, r.start)
        ]


def international_recognizers(
    *, phone_regions: Sequence[str]
) -> list[EmailRecognizer | IpRecognizer | IbanRunRecognizer | PhoneRecognizer]:
    """Presidio's recognisers for the international entity types, our fixes applied."""
    return [
        OfflineEmailRecognizer(),
        CjkSafeIpRecognizer(),
        IbanRunRecognizer(),
        BalancedPhoneRecognizer(
            supported_entity=Entity.PHONE_NUMBER.value, supported_regions=tuple(phone_regions)
        ),
    ]
