"""What the engine reports: entity types, findings, and how overlaps are settled.

Several recognisers often claim the same characters: a mainland mobile number
is also a valid generic phone number, an 18-digit resident id can pass the Luhn
check of a card, an e-mail address can start with a phone number. The caller
wants one answer per span, so overlaps go to the most specific type, then the
higher score, then the longer span.
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Iterable
from dataclasses import dataclass


class Entity(enum.StrEnum):
    """The PII types the engine knows. The values are part of the API (audit, config)."""

    CN_RESIDENT_ID = "CN_RESIDENT_ID"
    CN_MOBILE = "CN_MOBILE"
    BANK_CARD = "BANK_CARD"
    CN_USCC = "CN_USCC"
    EMAIL_ADDRESS = "EMAIL_ADDRESS"
    IP_ADDRESS = "IP_ADDRESS"
    IBAN_CODE = "IBAN_CODE"
    PHONE_NUMBER = "PHONE_NUMBER"


# Higher wins an overlap. An e-mail address is a container (its local part may be a
# phone number or an id), checksummed numbers beat unchecked ones, and the generic
# phone number loses to everything: it is the least specific reading of digits.
SPECIFICITY: dict[str, int] = {
    Entity.EMAIL_ADDRESS: 100,
    Entity.CN_RESIDENT_ID: 90,
    Entity.CN_USCC: 80,
    Entity.IBAN_CODE: 70,
    Entity.BANK_CARD: 60,
    Entity.IP_ADDRESS: 40,
    Entity.CN_MOBILE: 30,
    Entity.PHONE_NUMBER: 10,
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One piece of PII: `text[start:end]` is an `entity`; offsets count code points."""

    entity: str
    start: int
    end: int
    score: float


def _priority(finding: Finding) -> tuple[int, float, int, int]:
    length = finding.end - finding.start
    return (-SPECIFICITY.get(finding.entity, 0), -finding.score, -length, finding.start)


def resolve_overlaps(findings: Iterable[Finding]) -> list[Finding]:
    """Keep one finding per overlapping group, the best by `_priority`; sorted by start.

    Greedy by priority: a finding is kept when it overlaps nothing kept before it.
    The kept intervals stay sorted, so each check is a binary search (inputs with
    thousands of findings stay linear-logarithmic).
    """
    starts: list[int] = []
    kept: list[Finding] = []
    for finding in sorted(findings, key=_priority):
        if finding.end <= finding.start:
            continue
        i = bisect.bisect_right(starts, finding.start)
        if i > 0 and kept[i - 1].end > finding.start:
            continue
        if i < len(kept) and kept[i].start < finding.end:
            continue
        starts.insert(i, finding.start)
        kept.insert(i, finding)
    return kept
