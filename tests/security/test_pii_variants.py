# Full-width and Chinese text on purpose.
# ruff: noqa: RUF001
"""PII written out: spaced, dashed, lower case, full width; registries never veto a checksum.

`pytest -s` prints the per-type table over the variant corpus;
`bench/pii_recall.py` writes it as JSON.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from security.pii_corpus import Sample
from security.pii_variants import (
    COMPACT,
    STYLES,
    build_variant_corpus,
    decoys_flagged,
    tally,
    wide,
    write,
)
from stdnum.cn import ric

from edgegate_security.pii import Entity, Finding, PiiEngine

PROPERTY = settings(max_examples=300, deadline=None, database=None)


@pytest.fixture(scope="module")
def engine() -> PiiEngine:
    return PiiEngine(token_key=bytes(range(32)), hash_salt=b"edgegate-test-salt-0123456789")


@pytest.fixture(scope="module")
def corpus() -> list[Sample]:
    return build_variant_corpus()


@pytest.fixture(scope="module")
def analysed(engine: PiiEngine, corpus: list[Sample]) -> list[list[Finding]]:
    return [engine.analyze(sample.text) for sample in corpus]


def test_the_variant_corpus_writes_every_type_every_way(corpus: list[Sample]) -> None:
    per_type = Counter(span.entity for s in corpus for span in s.spans)
    assert set(per_type) == set(Entity)
    assert min(per_type.values()) >= 90, per_type
    assert sum(len(s.decoys) for s in corpus) >= 1200  # hard negatives beside the values
    assert sum(not s.spans for s in corpus) >= 250  # sentences with no PII at all
    assert sum(any("\u4e00" <= c <= "\u9fff" for c in s.text) for s in corpus) >= len(corpus) // 3


def test_recall_and_precision_per_type_on_written_out_variants(
    corpus: list[Sample], analysed: list[list[Finding]]
) -> None:
    result = tally(corpus, analysed)
    print("\n" + result.text())
    short = result.short_of(recall=1.0, precision=0.99)
    assert not short, "\n".join(result.errors[:40])


def test_hard_negatives_beside_the_values_are_never_flagged(
    corpus: list[Sample], analysed: list[list[Finding]]
) -> None:
    flagged = decoys_flagged(corpus, analysed)
    assert not flagged, flagged[:20]


# ---------------------------------------------------------------- the cases


def test_a_resident_id_written_in_groups(engine: PiiEngine) -> None:
    for text in ("身份证110105 19870623 0414。", "ID 110105-19870623-0414, thanks"):
        value = text[text.index("110105") : text.index("0414") + 4]
        masked, (finding,) = engine.anonymize(text, tenant="t")
        assert finding.entity == Entity.CN_RESIDENT_ID
        assert text[finding.start : finding.end] == value
        assert masked == text.replace(
            value, value[:3] + "***" + value[6:-4].translate(_STARS) + value[-4:]
        )


_STARS = str.maketrans("0123456789", "*" * 10)


def test_a_lower_case_iban(engine: PiiEngine) -> None:
    for value in (
        "de89 3704 0044 0532 0130 00",
        "gb82west12345698765432",
        "fr14-2004-1010-0505-0001-3m02-606",
    ):
        (finding,) = engine.analyze(f"汇款到{value}，谢谢")
        assert (finding.entity, finding.start, finding.end) == (Entity.IBAN_CODE, 3, 3 + len(value))


def test_a_checksum_valid_id_stdnum_places_nowhere_is_masked(engine: PiiEngine) -> None:
    value = "110114197006230415"  # Changping's code, which stdnum knows only from later years
    assert not ric.is_valid(value) and ric.calc_check_digit(value) == value[-1]
    (finding,) = engine.analyze(f"身份证{value}")
    assert (finding.entity, finding.start, finding.end) == (Entity.CN_RESIDENT_ID, 3, 21)
    assert finding.score < 1.0  # the registry only raises the score: here it does not
    assert engine.analyze("身份证110114197006230416") == []  # a wrong check digit is no id


def test_a_luhn_valid_card_outside_the_known_ranges_is_masked(engine: PiiEngine) -> None:
    (mir,) = engine.analyze("Карта 2200 7001 2345 6781")  # Mir: not in our issuer list
    (visa,) = engine.analyze("card 4111 1111 1111 1111")
    assert (mir.entity, visa.entity) == (Entity.BANK_CARD, Entity.BANK_CARD)
    assert mir.score < visa.score == 1.0
    assert engine.analyze("Карта 2200 7001 2345 6782") == []


# ---------------------------------------------------------------- neighbours and offsets


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("卡号6222 0212 3456 7890 128 13812345678", ["6222 0212 3456 7890 128", "13812345678"]),
        ("ID 110105 19870623 0414 13812345678", ["110105 19870623 0414", "13812345678"]),
        ("订单 20240601 6222-0212-3456-7890-128", ["6222-0212-3456-7890-128"]),
        ("手机 138 1234 5678，日期 2024 06 01，金额 1 299.00", ["138 1234 5678"]),
        ("IBAN DE89 3704 0044 0532 0130 00 is mine", ["DE89 3704 0044 0532 0130 00"]),
    ],
)
def test_grouped_values_do_not_swallow_their_neighbours(
    engine: PiiEngine, text: str, values: list[str]
) -> None:
    assert [text[f.start : f.end] for f in engine.analyze(text)] == values


@pytest.mark.parametrize(
    "text",
    [
        "会议 2024 06 01 10:30，金额 12 345.67 元，订单 2024-0601-1234-5678",
        "Order 8305 6571 2294 shipped on 2024.06.01; total 1 234 567.89 EUR.",
        "版本 ２０２４．０６．０１，编号 １２３４ ５６７８ ９０１２ ３４５６",
    ],
)
def test_ordinary_numbers_stay(engine: PiiEngine, text: str) -> None:
    assert engine.analyze(text) == []


def test_invisible_characters_inside_a_value_are_masked_with_it(engine: PiiEngine) -> None:
    text = "手机138\u200b1234\u200b5678，谢谢"
    masked, (finding,) = engine.anonymize(text, tenant="t")
    assert (finding.entity, finding.start, finding.end) == (Entity.CN_MOBILE, 2, 15)
    assert masked == "手机138\u200b****\u200b5678，谢谢"


def test_full_width_values_are_masked_in_place(engine: PiiEngine) -> None:
    text = "邮箱" + wide("Bob@Example.com") + "，IP " + wide("10.1.2.3") + "。"
    masked, findings = engine.anonymize(text, tenant="t")
    assert [f.entity for f in findings] == [Entity.EMAIL_ADDRESS, Entity.IP_ADDRESS]
    assert masked == "邮箱" + "Ｂ**" + wide("@Example.com") + "，IP " + wide("10.1") + "．*．*。"


# ---------------------------------------------------------------- any value, any way

# Text around a value, and brackets around it as a pair (full width or not): a lone or empty
# bracket glued to a number ("()+8610...") is no way people write one; phonenumbers refuses it.
_AROUND = st.text(alphabet=st.sampled_from("我的号码是请核对，。：；“”！？、 \n"), max_size=8)
_BRACKETS = st.sampled_from([("", ""), ("（", "）"), ("(", ")")])
_STYLED = st.sampled_from([(e, s) for e in sorted(STYLES) for s in STYLES[e]])


@PROPERTY
@given(
    styled=_STYLED,
    seed=st.integers(0, 2**32 - 1),
    around=st.tuples(_AROUND, _BRACKETS, _AROUND),
)
def test_any_valid_value_written_any_supported_way_is_masked_in_place(
    engine: PiiEngine, styled: tuple[str, str], seed: int, around: tuple[str, tuple[str, str], str]
) -> None:
    entity, style = styled
    rng = random.Random(seed)
    value = write(entity, COMPACT[entity](rng), style, rng)
    (text_before, (opening, closing), text_after) = around
    before, after = text_before + opening, closing + text_after
    text = before + value + after
    masked, findings = engine.anonymize(text, tenant="t")
    assert [(f.entity, f.start, f.end) for f in findings] == [
        (entity, len(before), len(before) + len(value))
    ]
    assert masked.startswith(before) and masked.endswith(after)
    assert value not in masked


@pytest.mark.parametrize(
    ("text", "entity", "value"),
    [
        (
            "IP：" + wide("2001:db8::ff00:42:8329"),
            Entity.IP_ADDRESS,
            wide("2001:db8::ff00:42:8329"),
        ),
        ("IPv6:2001:db8::1", Entity.IP_ADDRESS, "2001:db8::1"),
        ("手机138  1234  5678", Entity.CN_MOBILE, "138  1234  5678"),
        ("ID 110105  19870623  0414", Entity.CN_RESIDENT_ID, "110105  19870623  0414"),
        ("tel 138\u00a01234\u00a05678", Entity.CN_MOBILE, "138\u00a01234\u00a05678"),
        ("tel 138\u20131234\u20135678", Entity.CN_MOBILE, "138\u20131234\u20135678"),
        ("\uff1a\uff1a138 1234 5678", Entity.CN_MOBILE, "138 1234 5678"),  # not IPv6 "::138"
        ("138 1234 5678\uff1a\uff1a", Entity.CN_MOBILE, "138 1234 5678"),  # nor "5678::"
        ("\uff08 +861012346604", Entity.PHONE_NUMBER, "+861012346604"),  # not the space
    ],
)
def test_labels_double_spaces_and_typographic_separators(
    engine: PiiEngine, text: str, entity: Entity, value: str
) -> None:
    start = text.index(value)
    assert [(f.entity, f.start, f.end) for f in engine.analyze(text)] == [
        (entity, start, start + len(value))
    ]


def test_a_longer_address_or_a_mac_is_not_read_from_its_middle(engine: PiiEngine) -> None:
    assert engine.analyze("fe80:2001:db8::1:2:3:4:5:6 and 1:2:3:4:5:6:7:8:9") == []
    assert engine.analyze("MAC 00:1A:2B:3C:4D:5E at 12:30:45") == []
