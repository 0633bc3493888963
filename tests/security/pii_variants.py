# Chinese sentences use full-width punctuation; full-width values are the point.
# ruff: noqa: RUF001
"""Every entity written out the ways people write it, and hard negatives beside them.

Values come from `pii_corpus`'s generators (valid checksums computed there) in
their compact form; `write` then spaces, dashes, lower-cases or full-widths
them. A value's *variants* are fixed per entity (`STYLES`): spaced and dashed
where digits come in groups, lower case where letters occur, full width for
all. Hard negatives are what ordinary text holds next to PII (dates, times,
amounts, order numbers, look-alikes with a wrong check digit) written the same
ways; each is kept only if it is valid as no type (`valid_as_anything`).

`tally` counts true and false positives per entity; the test and
`bench/pii_recall.py` both use it.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import phonenumbers
from security import pii_corpus as base
from security.pii_corpus import Sample, Span

from edgegate_security.pii import Entity, Finding

WIDE = {c: c + 0xFEE0 for c in range(0x21, 0x7F)} | {0x20: 0x3000}


def wide(text: str) -> str:
    """Full width, as a Chinese input method in full-width mode types it."""
    return text.translate(WIDE)


def _split(value: str, sizes: Sequence[int]) -> list[str]:
    parts, cursor = [], 0
    for size in sizes:
        if cursor < len(value):
            parts.append(value[cursor : cursor + size])
            cursor += size
    if cursor < len(value):
        parts.append(value[cursor:])
    return parts


def _fours(n: int) -> list[int]:
    return [4] * (n // 4 + 1)


# How each entity is grouped when spaced or dashed (alternatives chosen at random).
GROUPINGS: dict[str, Callable[[str], list[list[int]]]] = {
    Entity.CN_RESIDENT_ID: lambda v: [[6, 8, 4], [6, 4, 4, 4], [3, 3, 4, 4, 4]],
    Entity.CN_MOBILE: lambda v: [[3, 4, 4], [3, 8]],
    Entity.BANK_CARD: lambda v: [[4, 6, 5]] if len(v) == 15 else [_fours(len(v))],
    Entity.CN_USCC: lambda v: [[4, 4, 4, 4, 2], [2, 6, 9, 1]],
    Entity.IBAN_CODE: lambda v: [_fours(len(v))],
}
STYLES: dict[str, tuple[str, ...]] = {
    Entity.CN_RESIDENT_ID: ("compact", "spaced", "dashed", "lower", "wide", "wide_spaced"),
    Entity.CN_MOBILE: ("compact", "spaced", "dashed", "dotted", "prefixed", "wide", "wide_spaced"),
    Entity.BANK_CARD: ("compact", "spaced", "dashed", "wide", "wide_spaced"),
    Entity.CN_USCC: ("compact", "spaced", "dashed", "lower", "wide", "wide_lower"),
    Entity.IBAN_CODE: ("compact", "spaced", "dashed", "lower", "lower_spaced", "wide"),
    Entity.EMAIL_ADDRESS: ("compact", "upper", "mixed", "spaced", "wide"),
    Entity.IP_ADDRESS: ("compact", "upper", "wide", "stops"),
    Entity.PHONE_NUMBER: ("compact", "spaced", "dashed", "wide", "wide_spaced"),
}


def _grouped(entity: str, value: str, sep: str, rng: random.Random) -> str:
    return sep.join(_split(value, rng.choice(GROUPINGS[entity](value))))


def _phone(value: str, style: str) -> str:
    number = phonenumbers.parse(value)
    spaced = str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL))
    return {
        "compact": value,
        "spaced": spaced,
        "dashed": spaced.replace(" ", "-"),
        "wide": wide(value),
        "wide_spaced": wide(spaced),
    }[style]


def write(entity: str, value: str, style: str, rng: random.Random) -> str:
    """`value` (compact, as the generators make it) written in `style`."""
    if entity == Entity.PHONE_NUMBER:
        return _phone(value, style)
    if entity == Entity.EMAIL_ADDRESS:
        local, _, domain = value.partition("@")
        mixed = local.capitalize() + "@" + domain.upper()
        forms = {"upper": value.upper(), "mixed": mixed, "spaced": f"{local} @ {domain}"}
        return wide(value) if style == "wide" else forms.get(style, value)
    if entity == Entity.IP_ADDRESS:
        if style == "stops" and ":" not in value:
            return value.replace(".", "。")
        return {"upper": value.upper(), "wide": wide(value)}.get(style, value)
    match style:
        case "spaced" | "dashed" | "dotted":
            sep = {"spaced": " ", "dashed": "-", "dotted": "."}[style]
            return _grouped(entity, value, sep, rng)
        case "prefixed":
            prefix = rng.choice(("+86 ", "+86-", "0086 ", "(+86) ", "+86"))
            return prefix + _grouped(entity, value, rng.choice(" -"), rng)
        case "lower" | "lower_spaced":
            lower = value.lower()
            return lower if style == "lower" else _grouped(entity, lower, " ", rng)
        case "wide" | "wide_lower":
            return wide(value.lower() if style == "wide_lower" else value)
        case "wide_spaced":
            return wide(_grouped(entity, value, " ", rng))
    return value


def _phone_e164(rng: random.Random) -> str:
    while True:
        written = base.phone_number(rng)
        region = None if written.startswith("+") else rng.choice(base.DEFAULT_PHONE_REGIONS)
        number = phonenumbers.parse(written, region)
        if phonenumbers.is_valid_number(number):
            return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def _ip(rng: random.Random) -> str:
    return base.ip_address(rng).split("/")[0]


# Compact values with valid checksums; the generators in `pii_corpus` compute them.
COMPACT: dict[str, Callable[[random.Random], str]] = {
    Entity.CN_RESIDENT_ID: lambda rng: base.resident_id(rng).upper(),
    Entity.CN_MOBILE: base.cn_mobile_digits,
    Entity.BANK_CARD: base.card_digits,
    Entity.CN_USCC: base.cn_uscc,
    Entity.EMAIL_ADDRESS: base.email,
    Entity.IP_ADDRESS: _ip,
    Entity.IBAN_CODE: lambda rng: base.iban_code(rng).replace(" ", ""),
    Entity.PHONE_NUMBER: _phone_e164,
}

# ---------------------------------------------------------------- hard negatives


def _date(rng: random.Random) -> str:
    y, m, d = rng.randint(1950, 2030), rng.randint(1, 12), rng.randint(1, 28)
    return rng.choice(
        (
            f"{y}-{m:02d}-{d:02d}",
            f"{y} {m:02d} {d:02d}",
            f"{y}.{m:02d}.{d:02d}",
            f"{y}{m:02d}{d:02d}",
        )
    )


def _time(rng: random.Random) -> str:
    return f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"


def _amount(rng: random.Random) -> str:
    whole = f"{rng.randint(1, 9_999_999):,}"
    return rng.choice((whole, whole.replace(",", " "))) + f".{rng.randint(0, 99):02d}"


def _order(rng: random.Random) -> str:
    digits = str(rng.randint(1, 9)) + base.digits(rng, rng.randint(7, 21))
    return rng.choice(
        (digits, " ".join(_split(digits, [4] * 6)), "-".join(_split(digits, [4] * 6)))
    )


def _look_alike(rng: random.Random) -> str:
    entity = rng.choice(sorted(set(base.DECOYS) - {"NUMBER", Entity.PHONE_NUMBER}))
    value = re.sub(r"[ -]", "", base.DECOYS[entity](rng))
    style = rng.choice(STYLES.get(entity, ("compact",)))
    return write(entity, value, style if style != "prefixed" else "compact", rng)


NEGATIVES: tuple[Callable[[random.Random], str], ...] = (_date, _time, _amount, _order, _look_alike)


def negative(rng: random.Random) -> str:
    """An ordinary number, in any width, that no type may claim."""
    while True:
        value = rng.choice(NEGATIVES)(rng)
        value = wide(value) if rng.random() < 0.25 else value
        if not base.valid_as_anything(value):
            return value


# ---------------------------------------------------------------- sentences

# {X}: the value; {N}, {M}: hard negatives next to it.
TEMPLATES = {
    "zh": (
        "我的证件号码是{X}，订单{N}已付款。",
        "请联系{X}，日期{N}",
        "资料：{X}；金额{N}元；编号{M}。",
        "（{X}）",
        "备注{X}，下次{N}再说",
        "{N}收到，号码是“{X}”吗？",
    ),
    "en": (
        "My details: {X}, order {N} is paid.",
        "Reach me at {X} before {N}.",
        "Ref {N}; value {X}; amount {M} USD.",
        "({X})",
        'He wrote "{X}" on {N}.',
        "{X}",
    ),
}
NEGATIVE_TEMPLATES = {
    "zh": ("订单{N}，金额{M}元。", "日期{N}，时间{M}", "编号：{N}（校验失败）"),
    "en": ("Order {N} totals {M}.", "On {N} at {M} we met.", "Reference {N} failed."),
}
_SLOT = re.compile(r"\{([XNM])\}")


def _render(template: str, slots: dict[str, tuple[str, str | None]]) -> Sample:
    text, cursor = "", 0
    spans: list[Span] = []
    decoys: list[Span] = []
    for m in _SLOT.finditer(template):
        text += template[cursor : m.start()]
        value, entity = slots[m.group(1)]
        span = Span(entity or "NUMBER", len(text), len(text) + len(value))
        (spans if entity else decoys).append(span)
        text += value
        cursor = m.end()
    return Sample(text + template[cursor:], tuple(spans), tuple(decoys))


def variant_sample(entity: str, style: str, lang: str, rng: random.Random) -> Sample:
    value = write(entity, COMPACT[entity](rng), style, rng)
    slots: dict[str, tuple[str, str | None]] = {
        "X": (value, entity),
        "N": (negative(rng), None),
        "M": (negative(rng), None),
    }
    return _render(rng.choice(TEMPLATES[lang]), slots)


def build_variant_corpus(*, seed: int = 20260611, per_style: int = 24) -> list[Sample]:
    """`per_style` sentences per entity and style, half Chinese, and as many clean ones."""
    rng = random.Random(seed)
    samples = [
        variant_sample(entity, style, ("zh", "en")[i % 2], rng)
        for entity in sorted(STYLES)
        for style in STYLES[entity]
        for i in range(per_style)
    ]
    for i in range(len(samples) // 4):
        template = rng.choice(NEGATIVE_TEMPLATES[("zh", "en")[i % 2]])
        samples.append(_render(template, {"N": (negative(rng), None), "M": (negative(rng), None)}))
    return samples


# ---------------------------------------------------------------- scoring


@dataclass(frozen=True, slots=True)
class Tally:
    """Per entity: true positives, false positives, false negatives; and what went wrong."""

    tp: Counter[str]
    fp: Counter[str]
    fn: Counter[str]
    errors: list[str]

    def recall(self, entity: str) -> float:
        return self.tp[entity] / max(1, self.tp[entity] + self.fn[entity])

    def precision(self, entity: str) -> float:
        return self.tp[entity] / max(1, self.tp[entity] + self.fp[entity])

    def table(self) -> dict[str, dict[str, float | int]]:
        return {
            str(e): {
                "tp": self.tp[e],
                "fp": self.fp[e],
                "fn": self.fn[e],
                "recall": round(self.recall(e), 4),
                "precision": round(self.precision(e), 4),
            }
            for e in Entity
        }

    def text(self) -> str:
        """The table as the tests print it (pytest -s shows it)."""
        lines = [f"{'entity':<16}{'TP':>6}{'FP':>6}{'FN':>6}{'recall':>9}{'precision':>11}"]
        for entity, row in self.table().items():
            lines.append(
                f"{entity:<16}{row['tp']:>6}{row['fp']:>6}{row['fn']:>6}"
                f"{row['recall']:>9.3f}{row['precision']:>11.3f}"
            )
        return "\n".join(lines)

    def short_of(self, *, recall: float, precision: float) -> list[str]:
        """The entity types below either floor."""
        return [e for e in Entity if self.recall(e) < recall or self.precision(e) < precision]


def decoys_flagged(samples: Iterable[Sample], analysed: Iterable[list[Finding]]) -> list[str]:
    """Every finding that overlaps a sample's decoy (a number that must not be masked)."""
    return [
        f"{f.entity} over decoy {sample.text[d.start : d.end]!r} in {sample.text!r}"
        for sample, findings in zip(samples, analysed, strict=True)
        for d in sample.decoys
        for f in findings
        if f.start < d.end and d.start < f.end
    ]


def tally(samples: Iterable[Sample], analysed: Iterable[list[Finding]]) -> Tally:
    """Exact-span matching: a finding counts only with the right type, start and end."""
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    errors: list[str] = []
    for sample, findings in zip(samples, analysed, strict=True):
        gold = set(sample.spans)
        found = {Span(f.entity, f.start, f.end) for f in findings}
        for span in found & gold:
            tp[span.entity] += 1
        for kind, spans, counter in (("FP", found - gold, fp), ("FN", gold - found, fn)):
            for span in spans:
                counter[span.entity] += 1
                value = sample.text[span.start : span.end]
                errors.append(f"{kind} {span.entity} {value!r} in {sample.text!r}")
    return Tally(tp, fp, fn, errors)
