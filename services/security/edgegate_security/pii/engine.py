"""The PII engine: Presidio finds, we settle overlaps, then mask, hash or tokenize.

Construction builds a Presidio `AnalyzerEngine` on the no-op NLP engine (no spaCy
model, nothing downloaded) with exactly our recognisers, then analyses one
sample so every lazily built part (compiled patterns, the suffix list, phone
metadata) exists before the first request. After that the engine holds no
mutable state: one instance may serve many threads at once.

Presidio is asked for language "en" whatever the text's language: every
recogniser here is a pattern or phonenumbers, and none needs a tokenizer.
"""

from __future__ import annotations

import bisect
import logging
import re
from collections.abc import Mapping, Sequence

from presidio_analyzer import AnalyzerEngine, EntityRecognizer, RecognizerRegistry
from presidio_analyzer.nlp_engine import NlpEngineProvider

from edgegate_security.pii import operators
from edgegate_security.pii.findings import Entity, Finding, resolve_overlaps
from edgegate_security.pii.folding import fold
from edgegate_security.pii.operators import Hasher, Operator
from edgegate_security.pii.recognizers_cn import (
    BankCardRecognizer,
    CnMobileRecognizer,
    CnResidentIdRecognizer,
    CnUsccRecognizer,
)
from edgegate_security.pii.recognizers_intl import (
    DEFAULT_PHONE_REGIONS,
    international_recognizers,
)
from edgegate_security.pii.tokens import OPENING, TOKEN_PATTERN, TokenCipher

_LANGUAGE = "en"
_NO_OP_NLP = {
    "nlp_engine_name": "no_op",
    "models": [{"lang_code": _LANGUAGE, "model_name": "none"}],
}
_WARM_UP = (
    "手机13812345678, mail bob@example.com, IP 192.168.1.1 / 2001:db8::1, "
    "IBAN DE89370400440532013000, call +44 20 7946 0958 or +81 3-1234-5678, "
    "身份证11010519491231002X, 卡号6222021234567890128, 代码91350100M000100Y43"
)


# Every entity found here holds a digit (identity, card, phone and credit
# numbers, IBAN check digits, IPv4), an "@" (e-mail) or a ":" (IPv6), in
# ASCII, full width or small form (`\d` is any decimal digit): text with none
# of them skips folding and Presidio altogether. Most chat messages are such
# text, so this is the hot path's biggest saving.
_MAY_HOLD_PII = re.compile(r"[\d@:\uff20\ufe6b\uff1a\ufe55]")


def _analyzer(*, phone_regions: Sequence[str]) -> AnalyzerEngine:
    recognizers: list[EntityRecognizer] = [
        CnResidentIdRecognizer(),
        CnMobileRecognizer(),
        BankCardRecognizer(),
        CnUsccRecognizer(),
        *international_recognizers(phone_regions=phone_regions),
    ]
    nlp_engine = NlpEngineProvider(nlp_configuration=_NO_OP_NLP).create_engine()
    registry = RecognizerRegistry(recognizers=recognizers, supported_languages=[_LANGUAGE])
    return AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=[_LANGUAGE])


def _outside(findings: list[Finding], spans: list[tuple[int, int]]) -> list[Finding]:
    """Findings that touch none of `spans` (sorted, disjoint): tokens are not PII again."""
    starts = [start for start, _ in spans]
    kept = []
    for f in findings:
        i = bisect.bisect_left(starts, f.end)  # spans[:i] start before f ends
        if i == 0 or spans[i - 1][1] <= f.start:
            kept.append(f)
    return kept


class PiiEngine:
    """Finds PII in text and anonymizes it; `restore` undoes the `tokenize` operator.

    `operators` maps entity names to operator names (`mask`, `redact`, `replace`,
    `hash`, `tokenize`); entities not named get `default_operator`. `token_key`
    (32 bytes) encrypts tokens and `hash_salt` (16 bytes or more) keys the hash:
    both belong to the service and must survive restarts for tokens and hashes
    to stay valid. Findings scoring below `score_threshold` are dropped; generic
    phone numbers score 0.4, IP addresses 0.6, checksum-validated values 1.0.
    `phone_regions` are the numbering plans national-format numbers are read in.
    """

    def __init__(
        self,
        *,
        token_key: bytes,
        hash_salt: bytes,
        operators: Mapping[str, str] | None = None,
        default_operator: str = Operator.MASK,
        score_threshold: float = 0.3,
        phone_regions: Sequence[str] = DEFAULT_PHONE_REGIONS,
    ) -> None:
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError("score_threshold must be within [0, 1]")
        if not phone_regions:
            raise ValueError("phone_regions needs a region: it also gates +CC numbers")
        self._tokens = TokenCipher(key=token_key)
        self._hasher = Hasher(salt=hash_salt)
        self._default = Operator(default_operator)
        self._operators = {Entity(e).value: Operator(op) for e, op in (operators or {}).items()}
        self._threshold = score_threshold
        # Presidio logs every analyze call at INFO ("Fetching all recognizers..."):
        # on the hot path that costs more than the analysis of a short message.
        logging.getLogger("presidio-analyzer").setLevel(logging.WARNING)
        self._analyzer = _analyzer(phone_regions=phone_regions)
        self._entities = self._analyzer.get_supported_entities(language=_LANGUAGE)
        self.analyze(_WARM_UP)

    def analyze(self, text: str) -> list[Finding]:
        """PII in `text`, sorted by start, never overlapping; existing tokens are skipped."""
        if not _MAY_HOLD_PII.search(text):
            return []
        folded = fold(text)
        results = self._analyzer.analyze(
            text=folded.text,
            language=_LANGUAGE,
            entities=self._entities,
            score_threshold=self._threshold,
        )
        findings = [
            Finding(str(r.entity_type), *folded.span(r.start, r.end), float(r.score))
            for r in results
        ]
        if OPENING in text:
            findings = _outside(findings, [m.span() for m in TOKEN_PATTERN.finditer(text)])
        return resolve_overlaps(findings)

    def anonymize(
        self, text: str, *, tenant: str, findings: Sequence[Finding] | None = None
    ) -> tuple[str, list[Finding]]:
        """`text` with each finding's operator applied, and the findings applied.

        The findings' offsets refer to `text`, not to the result. Pass `findings`
        (from `analyze`, perhaps filtered) to skip analysing twice; overlapping
        ones are settled as `analyze` would.
        """
        if findings is None:
            chosen = self.analyze(text)
        else:
            for f in findings:
                Entity(f.entity)
                if not 0 <= f.start < f.end <= len(text):
                    raise ValueError(f"finding {f} lies outside the text")
            chosen = resolve_overlaps(findings)
        parts: list[str] = []
        cursor = 0
        for f in chosen:
            parts += (text[cursor : f.start], self._apply(f.entity, text[f.start : f.end], tenant))
            cursor = f.end
        parts.append(text[cursor:])
        return "".join(parts), chosen

    def restore(self, text: str, *, tenant: str) -> str:
        """`text` with `tenant`'s tokens replaced by their values; other tokens stay as they are."""
        return self._tokens.restore(text, tenant=tenant)

    def restore_counted(self, text: str, *, tenant: str) -> tuple[str, int]:
        """`restore`, with how many tokens opened."""
        return self._tokens.restore_counted(text, tenant=tenant)

    def _apply(self, entity: str, value: str, tenant: str) -> str:
        match self._operators.get(entity, self._default):
            case Operator.MASK:
                return operators.mask(value, entity)
            case Operator.REDACT:
                return ""
            case Operator.REPLACE:
                return operators.replace(entity)
            case Operator.HASH:
                return self._hasher.digest(value, entity=entity, tenant=tenant)
            case Operator.TOKENIZE:
                return self._tokens.seal(value, entity=entity, tenant=tenant)
