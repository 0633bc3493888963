"""Content inspection: one verdict per message, on the way in and on the way out.

Checks run cheapest first and the first denial wins: size limits, encoding,
the operator's deny patterns, prompt-injection heuristics. A message that
passes them goes through PII masking; if anything was masked the verdict is
"allow with redactions" and the caller forwards the redacted parts only.

Patterns match a *normalised* copy of the text (NFKC, case-folded, invisible
characters removed), so full-width letters or zero-width spaces cannot slip an
instruction past them; redaction offsets always refer to the original text.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from edgegate_security.core.reasons import Reason


class Verdict(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    ALLOW_WITH_REDACTIONS = "allow_with_redactions"


class Direction(enum.StrEnum):
    INPUT = "input"
    OUTPUT = "output"


class PiiFinding(Protocol):
    @property
    def entity(self) -> str: ...
    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...
    @property
    def score(self) -> float: ...


class Redactor(Protocol):
    """The PII engine, as inspection uses it."""

    def anonymize(self, text: str, *, tenant: str) -> tuple[str, Sequence[PiiFinding]]: ...


@dataclass(frozen=True, slots=True)
class Piece:
    """One part of a message as inspection sees it.

    `text` for text parts; `data` for bytes that claim to be text (a binary part
    with a text/* type), decoded here so invalid UTF-8 gets a verdict, not a
    crash; neither for tensors and other binaries, which only count for size.
    """

    size_bytes: int
    text: str | None = None
    data: bytes | None = None


MAX_PART_BYTES = 1 << 20
MAX_TOTAL_BYTES = 4 << 20
MAX_PARTS = 2048  # OpenAI's limit on the inputs of one embeddings request
# PII analysis costs ~20 us per finding: text made of nothing but addresses costs
# about a second per 32K characters. Longer text is refused rather than let one
# message hold a core for minutes; raise it for long documents.
MAX_SCAN_CHARS = 64 * 1024
INJECTION_THRESHOLD = 1.0


@dataclass(frozen=True, slots=True)
class Limits:
    max_part_bytes: int = MAX_PART_BYTES
    max_total_bytes: int = MAX_TOTAL_BYTES
    max_parts: int = MAX_PARTS
    max_scan_chars: int = MAX_SCAN_CHARS  # text PII masking reads, all parts together


@dataclass(frozen=True, slots=True)
class DenyPattern:
    """An operator's rule: a regular expression over the normalised text, with a label."""

    name: str
    pattern: re.Pattern[str]

    @classmethod
    def compile(cls, *, name: str, regex: str) -> DenyPattern:
        return cls(name=name, pattern=re.compile(regex, re.IGNORECASE))


@dataclass(frozen=True, slots=True)
class Redaction:
    part_index: int
    entity: str
    start: int
    end: int
    score: float


@dataclass(frozen=True, slots=True)
class Inspection:
    verdict: Verdict
    reason: Reason | None = None
    detail: str = ""  # for people: which limit, which pattern
    texts: tuple[str | None, ...] = ()  # each piece's text after redaction
    redactions: tuple[Redaction, ...] = ()


# Prompt-injection heuristics: phrases that try to override the instructions a
# model was given, in English and Chinese, with a weight each. One strong phrase
# (1.0) denies; weak ones (0.5) deny only together. Matched on normalised text.
_INJECTION: tuple[tuple[float, re.Pattern[str]], ...] = tuple(
    (weight, re.compile(regex))
    for weight, regex in (
        (
            1.0,
            r"\b(ignore|disregard|forget|override)\b.{0,40}\b(previous|prior|above|earlier|"
            r"all|any|your|the|system)\b.{0,20}\b(instructions?|prompts?|rules|directives)",
        ),
        (1.0, r"\b(reveal|print|show|repeat|output)\b.{0,40}\bsystem prompt"),
        (1.0, r"\byou are (now )?(dan|in developer mode|jailbroken|unrestricted)\b"),
        (1.0, r"<\|im_start\|>\s*system|\[/?inst\]|<<sys>>"),
        (
            1.0,
            r"(忽略|无视|忘记|忘掉|不要理会).{0,12}(之前|以上|上面|先前|所有|全部|系统)"
            r".{0,8}(指令|指示|提示|规则|设定)",
        ),
        (1.0, r"(输出|显示|告诉我|泄露|打印).{0,10}(系统提示|系统指令|system prompt)"),
        (0.5, r"\b(pretend|act as if) you (have no|are not bound by)\b"),
        (0.5, r"\bdo anything now\b"),
        (0.5, r"(?m)^\s*(system|assistant)\s*:"),
        (0.5, r"你现在是.{0,10}(没有限制|不受约束|越狱)"),
    )
)
# Every pattern above needs one of these words: text with none of them scores 0
# without running the patterns (one scan instead of ten; most text has none).
_TRIGGERS = re.compile(
    r"ignore|disregard|forget|override|reveal|print|show|repeat|output|you are|"
    r"<\|im_start\|>|\[/?inst\]|<<sys>>|pretend|act as if|do anything now|system|assistant|"
    r"忽略|无视|忘记|忘掉|不要理会|输出|显示|告诉我|泄露|打印|你现在是"
)
# Invisible characters that split words without showing: zero-width space,
# joiners, word joiner, BOM, soft hyphen.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))


def normalise(text: str) -> str:
    """What patterns see: NFKC (full-width -> ASCII), case-folded, invisibles gone."""
    return unicodedata.normalize("NFKC", text).translate(_INVISIBLE).casefold()


def injection_score(text: str) -> float:
    return _score(normalise(text))


def _score(norm: str) -> float:
    if not _TRIGGERS.search(norm):
        return 0.0
    return full_injection_score(norm)


def full_injection_score(norm: str) -> float:
    """Every pattern's weight, without the trigger-word shortcut (tests compare the two)."""
    return sum(weight for weight, pattern in _INJECTION if pattern.search(norm))


class Inspector:
    def __init__(
        self,
        *,
        limits: Limits | None = None,
        deny_patterns: Sequence[DenyPattern] = (),
        injection_threshold: float = INJECTION_THRESHOLD,
        redactor: Redactor | None = None,
    ) -> None:
        """`injection_threshold` 0 turns the prompt-injection heuristics off."""
        self._limits = limits or Limits()
        self._deny = tuple(deny_patterns)
        self._injection_threshold = injection_threshold
        self._redactor = redactor

    def inspect(self, pieces: Sequence[Piece], *, direction: Direction, tenant: str) -> Inspection:
        denial = self._check_size(pieces)
        if denial is not None:
            return denial
        texts: list[str | None] = []
        for i, piece in enumerate(pieces):
            if piece.data is None:
                texts.append(piece.text)
                continue
            try:
                texts.append(piece.data.decode("utf-8"))
            except UnicodeDecodeError as exc:
                return _deny(Reason.INVALID_ENCODING, f"part {i} is not valid UTF-8: {exc.reason}")
        for i, text in enumerate(texts):
            if text is not None and (denial := self._check_text(i, text, direction)):
                return denial
        return self._redact(texts, tenant=tenant)

    def _check_size(self, pieces: Sequence[Piece]) -> Inspection | None:
        limits = self._limits
        if len(pieces) > limits.max_parts:
            return _deny(Reason.INPUT_TOO_LARGE, f"{len(pieces)} parts; at most {limits.max_parts}")
        total = 0
        for i, piece in enumerate(pieces):
            if piece.size_bytes > limits.max_part_bytes:
                return _deny(
                    Reason.INPUT_TOO_LARGE,
                    f"part {i} is {piece.size_bytes} bytes; at most {limits.max_part_bytes}",
                )
            total += piece.size_bytes
        if total > limits.max_total_bytes:
            return _deny(
                Reason.INPUT_TOO_LARGE, f"{total} bytes in all; at most {limits.max_total_bytes}"
            )
        return None

    def _check_text(self, index: int, text: str, direction: Direction) -> Inspection | None:
        norm = normalise(text)
        for rule in self._deny:
            if rule.pattern.search(norm):
                detail = f"part {index} matches deny pattern {rule.name!r}"
                return _deny(Reason.DENY_PATTERN, detail)
        # Outputs are the model's own words: instructions in them target nobody.
        if direction is Direction.INPUT and self._injection_threshold > 0:
            score = _score(norm)
            if score >= self._injection_threshold:
                return _deny(
                    Reason.PROMPT_INJECTION,
                    f"part {index} reads as a prompt injection (score {score:.1f})",
                )
        return None

    def _redact(self, texts: list[str | None], *, tenant: str) -> Inspection:
        if self._redactor is None:
            return Inspection(verdict=Verdict.ALLOW, texts=tuple(texts))
        scanned = sum(len(text) for text in texts if text)
        if scanned > self._limits.max_scan_chars:
            return _deny(
                Reason.INPUT_TOO_LARGE,
                f"{scanned} characters of text; PII masking reads at most "
                f"{self._limits.max_scan_chars}",
            )
        out: list[str | None] = []
        redactions: list[Redaction] = []
        for i, text in enumerate(texts):
            if not text:
                out.append(text)
                continue
            masked, findings = self._redactor.anonymize(text, tenant=tenant)
            out.append(masked)
            redactions += (Redaction(i, f.entity, f.start, f.end, f.score) for f in findings)
        if not redactions:
            return Inspection(verdict=Verdict.ALLOW, texts=tuple(out))
        return Inspection(
            verdict=Verdict.ALLOW_WITH_REDACTIONS,
            reason=Reason.PII_REDACTED,
            detail=", ".join(sorted({r.entity for r in redactions})),
            texts=tuple(out),
            redactions=tuple(redactions),
        )


def _deny(reason: Reason, detail: str) -> Inspection:
    return Inspection(verdict=Verdict.DENY, reason=reason, detail=detail)
