"""PII detection and anonymization for Chinese and international text, on Presidio.

`PiiEngine` finds resident ids, mainland mobiles, bank cards, unified social
credit codes, e-mail and IP addresses, IBANs and phone numbers (checksums
verified, so a mistyped number is not PII), then masks, redacts, replaces,
hashes or reversibly tokenizes them; `restore` undoes tokenization for the
tenant that made the tokens.
"""

from edgegate_security.pii.engine import PiiEngine
from edgegate_security.pii.findings import Entity, Finding
from edgegate_security.pii.operators import Operator
from edgegate_security.pii.recognizers_intl import DEFAULT_PHONE_REGIONS
from edgegate_security.pii.tokens import TOKEN_PATTERN

__all__ = ["DEFAULT_PHONE_REGIONS", "TOKEN_PATTERN", "Entity", "Finding", "Operator", "PiiEngine"]
