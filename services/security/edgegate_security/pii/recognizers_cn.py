"""Recognisers Presidio lacks: resident id, mainland mobile, bank card, USCC.

Each is a regex for the shape plus `validate_result` for the checksum (python-stdnum)
or numbering plan (phonenumbers). A shape whose checksum fails scores 0 and is
dropped by Presidio, so "checksum-invalid is never flagged" holds by construction.
"""

from __future__ import annotations

import re

import phonenumbers
from presidio_analyzer import Pattern, PatternRecognizer
from stdnum import luhn
from stdnum.cn import ric, uscc

from edgegate_security.pii.boundaries import NUMBER_END, NUMBER_START
from edgegate_security.pii.findings import Entity

_SEPARATORS = re.compile(r"[\s()+-]")


class CnResidentIdRecognizer(PatternRecognizer):
    """18-character resident identity number: region, birth date, sequence, check digit.

    stdnum checks the ISO 7064 check digit, the date and that the region code
    existed in the birth year. The 15-digit numbers retired in 2013 are not matched.
    """

    def __init__(self) -> None:
        regex = (
            NUMBER_START
            + r"[1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])"
            + r"[0-9]{3}[0-9Xx]"
            + NUMBER_END
        )
        super().__init__(
            supported_entity=Entity.CN_RESIDENT_ID.value,
            name="CnResidentIdRecognizer",
            patterns=[Pattern("cn_resident_id", regex, 0.5)],
        )

    def validate_result(self, pattern_text: str) -> bool:
        try:
            return bool(ric.is_valid(pattern_text))
        except KeyError:
            # stdnum 2.2 raises instead of answering for region codes its table
            # lists without a county (e.g. 521101): not a region it can confirm.
            return False


class CnMobileRecognizer(PatternRecognizer):
    """Mainland mobile number: 1[3-9] and nine digits, optional +86/0086, spaces or dashes.

    The shape alone is enough to flag (score 0.5): a leaked number from a range
    newer than our libphonenumber metadata is still a leak. phonenumbers confirming
    an allocated mobile range lifts the score to 1.
    """

    def __init__(self) -> None:
        prefix = r"(?:\((?:\+|00)86\)|(?:\+|00)86)[ -]?"
        regex = (
            rf"(?:(?<![0-9A-Za-z+]){prefix}|{NUMBER_START})"
            + r"1[3-9][0-9](?:[ -]?[0-9]{4}){2}"
            + NUMBER_END
        )
        super().__init__(
            supported_entity=Entity.CN_MOBILE.value,
            name="CnMobileRecognizer",
            patterns=[Pattern("cn_mobile", regex, 0.5)],
        )

    def validate_result(self, pattern_text: str) -> bool | None:
        try:
            number = phonenumbers.parse(pattern_text, "CN")
        except phonenumbers.NumberParseException:
            return None
        mobile = phonenumbers.number_type(number) in (
            phonenumbers.PhoneNumberType.MOBILE,
            phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
        )
        return True if mobile and phonenumbers.is_valid_number(number) else None


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


class BankCardRecognizer(PatternRecognizer):
    """Payment card number: UnionPay (62, 16-19 digits) and the other major networks.

    Accepts one run of digits, groups of four with an optional last group of one
    to three (4-4-4-4-3 is how 19-digit UnionPay cards are printed), or 4-6-5
    (American Express), separated by spaces or dashes. The number must pass Luhn
    and sit in a known issuer range, so long numbers (order ids, timestamps)
    mostly pass by.

    Grouped digits are read as one number, never as a card plus a remainder: a
    mistyped 19-digit card whose first 16 digits happen to pass Luhn is not
    flagged, and neither is a card followed by more groups (an IBAN, a 20-digit
    reference). The price: "4111 1111 1111 1111 123" reads as one 19-digit number.
    """

    def __init__(self) -> None:
        start = NUMBER_START + r"(?<![0-9][ -])"
        shapes = {
            "bank_card": r"[0-9]{13,19}" + NUMBER_END,
            "bank_card_groups": r"[0-9]{4}(?:[ -][0-9]{4}){2,3}(?:[ -][0-9]{1,3})?"
            + r"(?![0-9A-Za-z]|[ -][0-9])",
            "bank_card_amex": r"[0-9]{4}[ -][0-9]{6}[ -][0-9]{5}" + NUMBER_END,
        }
        super().__init__(
            supported_entity=Entity.BANK_CARD.value,
            name="BankCardRecognizer",
            patterns=[Pattern(name, start + shape, 0.5) for name, shape in shapes.items()],
        )

    def validate_result(self, pattern_text: str) -> bool:
        digits = _SEPARATORS.sub("", pattern_text)
        return (
            digits.isascii()
            and 13 <= len(digits) <= 19
            and _card_network_known(digits)
            and bool(luhn.is_valid(digits))
        )


_ORG_CODE_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


def _org_code_valid(code: str) -> bool:
    """GB 11714 check of the organisation code that USCC characters 9-17 embed."""
    total = sum(int(c, 36) * w for c, w in zip(code[:8], _ORG_CODE_WEIGHTS, strict=True))
    check = 11 - total % 11
    expected = "X" if check == 10 else "0" if check == 11 else str(check)
    return code[8] == expected


class CnUsccRecognizer(PatternRecognizer):
    """Unified social credit code (GB 32100): 18 characters with two check characters.

    stdnum checks the final mod-31 character; we also check the embedded
    organisation code (mod 11), which keeps random 18-digit numbers, such as a
    resident id with a typo, from passing for a USCC one time in 31.
    """

    def __init__(self) -> None:
        chars = "0-9A-HJ-NPQRTUWXY"
        regex = NUMBER_START + rf"[0-9]{{8}}[{chars}]{{10}}" + NUMBER_END
        super().__init__(
            supported_entity=Entity.CN_USCC.value,
            name="CnUsccRecognizer",
            patterns=[Pattern("cn_uscc", regex, 0.5)],
        )

    def validate_result(self, pattern_text: str) -> bool:
        code = pattern_text.upper()
        return bool(uscc.is_valid(code)) and _org_code_valid(code[8:17])
