"""Recognisers Presidio lacks: resident id, mainland mobile, bank card, USCC.

Each reads values out of runs of digit groups (`runs`), in whatever grouping
people write them: "110105 19870623 0414", "6222-0212-3456-7890-128",
"138.1234.5678". The engine folds full-width and other look-alike characters
to ASCII before they get here.

A valid checksum is enough to flag a value: a de-identification tool that lets
a checksum-valid number through because a registry does not know it leaks the
numbers registries are slowest to learn (new counties, new card ranges).
Registries (python-stdnum's region table and calendar check, card networks'
issuer ranges, phonenumbers' mobile ranges) only raise the score to 1.
"""

from __future__ import annotations

import re

import phonenumbers
from stdnum import luhn
from stdnum.cn import ric, uscc

from edgegate_security.pii.boundaries import (
    NUMBER_END,
    NUMBER_START,
    SPACE_HYPHEN_OR_DOT,
    SPACE_OR_HYPHEN,
)
from edgegate_security.pii.findings import Entity
from edgegate_security.pii.runs import Candidate, Group, RunRecognizer

CONFIRMED = 1.0  # the checksum holds and a registry knows the value
CHECKSUM_ONLY = 0.8  # a strong checksum holds; no registry confirms it
WEAK = 0.5  # Luhn alone, or a mobile's shape alone
_DIGIT_RUN = NUMBER_START + rf"[0-9]+(?:{SPACE_OR_HYPHEN}[0-9]+)*" + NUMBER_END


class CnResidentIdRecognizer(RunRecognizer):
    """18-character resident identity number: region, birth date, sequence, check digit.

    The shape (a date-shaped birth field) and the ISO 7064 mod 11-2 check
    digit flag it; stdnum confirming the date is real and the region code
    existed in the birth year lifts the score. The 15-digit numbers retired in
    2013 are not matched.
    """

    _SHAPE = re.compile(
        r"[1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9X]"
    )

    def __init__(self) -> None:
        run = NUMBER_START + rf"[0-9]+(?:{SPACE_OR_HYPHEN}[0-9]+)*(?:{SPACE_OR_HYPHEN}?[Xx])?"
        super().__init__(
            entity=Entity.CN_RESIDENT_ID.value,
            name="CnResidentIdRecognizer",
            run=run + NUMBER_END,
            min_chars=18,
            max_chars=18,
            strong=True,
        )

    def score(self, candidate: Candidate) -> float | None:
        number = candidate.compact
        if not self._SHAPE.fullmatch(number) or ric.calc_check_digit(number) != number[-1]:
            return None
        try:
            return CONFIRMED if ric.is_valid(number) else CHECKSUM_ONLY
        except KeyError:
            # stdnum 2.2 raises instead of answering for region codes its table
            # lists without a county (e.g. 521101): the checksum still holds.
            return CHECKSUM_ONLY


class CnMobileRecognizer(RunRecognizer):
    """Mainland mobile number: 1[3-9] and nine digits, optional +86/0086, grouped any way.

    The shape alone is enough to flag: a leaked number from a range newer than
    our libphonenumber metadata is still a leak. phonenumbers confirming an
    allocated mobile range lifts the score to 1.
    """

    _PREFIX = re.compile(r"\(?(?:\+|00)86\)?")
    _NATIONAL = re.compile(r"1[3-9][0-9]{9}")

    def __init__(self) -> None:
        prefix = rf"(?:\((?:\+|00)86\)|(?:\+|00)86){SPACE_HYPHEN_OR_DOT}?"
        run = (
            rf"(?:(?<![0-9A-Za-z+]){prefix}|{NUMBER_START})"
            + rf"[0-9]+(?:{SPACE_HYPHEN_OR_DOT}[0-9]+)*"
            + NUMBER_END
        )
        super().__init__(
            entity=Entity.CN_MOBILE.value,
            name="CnMobileRecognizer",
            run=run,
            min_chars=11,
            max_chars=15,
            strong=False,
        )

    def score(self, candidate: Candidate) -> float | None:
        prefix = self._PREFIX.match(candidate.raw)
        digits = candidate.compact
        if prefix:
            digits = digits[len(prefix.group().strip("()+")) :]
        if not self._NATIONAL.fullmatch(digits):
            return None
        number = phonenumbers.parse(digits, "CN")
        mobile = phonenumbers.number_type(number) in (
            phonenumbers.PhoneNumberType.MOBILE,
            phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
        )
        return CONFIRMED if mobile and phonenumbers.is_valid_number(number) else WEAK


def _card_network_known(digits: str) -> bool:
    """Whether the number falls in a major network's issuer range with a length it issues."""
    n = len(digits)
    two, four = int(digits[:2]), int(digits[:4])
    return (
        (two == 62 and 16 <= n <= 19)  # UnionPay
        or (digits[0] == "4" and n in (13, 16, 19))  # Visa
        or ((51 <= two <= 55 or 2221 <= four <= 2720) and n == 16)  # Mastercard
        or (two in (34, 37) and n == 15)  # American Express
        or (3528 <= four <= 3589 and 16 <= n <= 19)  # JCB
        or ((four == 6011 or two == 65 or 644 <= int(digits[:3]) <= 649) and 16 <= n <= 19)
    )


class BankCardRecognizer(RunRecognizer):
    """Payment card number: 13 to 19 digits passing Luhn, grouped any way.

    Luhn alone flags it (score 0.5): card networks keep adding ranges (Mir,
    RuPay, new UnionPay BINs), and one missing from our list must not leak. A
    number in a major network's issuer range with a length it issues scores 1.
    One unrelated 13-19 digit number in ten passes Luhn, so such order numbers
    get masked too; a `score_threshold` above 0.5 masks only known ranges.
    """

    def __init__(self) -> None:
        super().__init__(
            entity=Entity.BANK_CARD.value,
            name="BankCardRecognizer",
            run=_DIGIT_RUN,
            min_chars=13,
            max_chars=19,
            strong=False,
        )

    def score(self, candidate: Candidate) -> float | None:
        digits = candidate.compact
        if digits[0] == "0" or not luhn.is_valid(digits):
            return None
        return CONFIRMED if _card_network_known(digits) else WEAK


_ORG_CODE_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


def _org_code_valid(code: str) -> bool:
    """GB 11714 check of the organisation code that USCC characters 9-17 embed."""
    total = sum(int(c, 36) * w for c, w in zip(code[:8], _ORG_CODE_WEIGHTS, strict=True))
    check = 11 - total % 11
    expected = "X" if check == 10 else "0" if check == 11 else str(check)
    return code[8] == expected


class CnUsccRecognizer(RunRecognizer):
    """Unified social credit code (GB 32100): 18 characters with two check characters.

    stdnum checks the final mod-31 character; we also check the embedded
    organisation code (mod 11), which keeps random 18-digit numbers, such as a
    resident id with a typo, from passing for a USCC one time in 31. Letters
    may be lower case; groups may be spaced or dashed.
    """

    def __init__(self) -> None:
        run = rf"[0-9][0-9A-Za-z]*(?:{SPACE_OR_HYPHEN}[0-9A-Za-z]+)*"
        super().__init__(
            entity=Entity.CN_USCC.value,
            name="CnUsccRecognizer",
            run=NUMBER_START + run + NUMBER_END,
            min_chars=18,
            max_chars=18,
            strong=True,
        )

    def starts(self, group: Group) -> bool:
        return group.text[0].isdigit()

    def score(self, candidate: Candidate) -> float | None:
        code = candidate.compact
        valid = uscc.is_valid(code) and _org_code_valid(code[8:17])
        return CONFIRMED if valid else None
