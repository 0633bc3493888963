# Chinese sentences use full-width punctuation and digits on purpose.
# ruff: noqa: RUF001
"""The PII engine: accuracy on a labelled corpus, operators, tokens, and bad input.

`pytest -s` prints the per-type recall/precision table and the timings.
"""

from __future__ import annotations

import itertools
import socket
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import tldextract
from hypothesis import given, settings
from hypothesis import strategies as st
from security.pii_corpus import Sample, build_corpus
from security.pii_variants import decoys_flagged, tally

from edgegate_security.pii import TOKEN_PATTERN, Entity, Finding, Operator, PiiEngine

TOKEN_KEY = bytes(range(32))
SALT = b"edgegate-test-salt-0123456789"
PROPERTY = settings(max_examples=150, deadline=None, database=None)


@contextmanager
def no_network() -> Iterator[list[str]]:
    """Every DNS lookup or connect inside fails, and is written down."""
    attempts: list[str] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(repr(args[:2]))
        raise OSError("network access in a test")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket, "getaddrinfo", refuse)
        mp.setattr(socket, "create_connection", refuse)
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket.socket, "connect_ex", refuse)
        yield attempts


def make_engine(**options: object) -> PiiEngine:
    return PiiEngine(token_key=TOKEN_KEY, hash_salt=SALT, **options)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Built:
    engine: PiiEngine
    network_attempts: list[str]


@pytest.fixture(scope="module")
def built() -> Built:
    with no_network() as attempts:
        started = time.perf_counter()
        engine = make_engine()
        print(f"\nPiiEngine construction: {time.perf_counter() - started:.2f} s (imports excluded)")
    return Built(engine, attempts)


@pytest.fixture(scope="module")
def engine(built: Built) -> PiiEngine:
    return built.engine


@pytest.fixture(scope="module")
def by_operator() -> dict[Operator, PiiEngine]:
    """One engine per operator, used for every entity."""
    return {op: make_engine(default_operator=op) for op in Operator}


@pytest.fixture(scope="module")
def corpus() -> list[Sample]:
    return build_corpus()


@pytest.fixture(scope="module")
def analysed(engine: PiiEngine, corpus: list[Sample]) -> list[list[Finding]]:
    started = time.perf_counter()
    results = [engine.analyze(sample.text) for sample in corpus]
    per_sentence_ms = (time.perf_counter() - started) / len(corpus) * 1000
    print(f"\nanalyze: {per_sentence_ms:.2f} ms per sentence over {len(corpus)} sentences")
    return results


# ---------------------------------------------------------------- accuracy


def test_corpus_is_large_labelled_and_bilingual(corpus: list[Sample]) -> None:
    assert len(corpus) >= 2000
    assert sum(any("\u4e00" <= c <= "\u9fff" for c in s.text) for s in corpus) >= 900
    positives = Counter(span.entity for s in corpus for span in s.spans)
    assert set(positives) == set(Entity)
    assert min(positives.values()) >= 150, positives
    assert sum(len(s.decoys) for s in corpus) >= 300


def test_recall_and_precision_per_entity(
    corpus: list[Sample], analysed: list[list[Finding]]
) -> None:
    result = tally(corpus, analysed)
    print("\n" + result.text())
    failing = result.short_of(recall=0.99, precision=0.95)
    assert not failing, "\n".join(result.errors[:40])


def test_checksum_invalid_numbers_are_never_flagged(
    corpus: list[Sample], analysed: list[list[Finding]]
) -> None:
    flagged = decoys_flagged(corpus, analysed)
    assert not flagged, flagged[:20]


# ---------------------------------------------------------------- known pitfalls


@pytest.mark.parametrize(
    ("text", "entity", "value"),
    [
        ("邮箱bob@example.com，谢谢", Entity.EMAIL_ADDRESS, "bob@example.com"),
        ("手机13812345678", Entity.CN_MOBILE, "13812345678"),
        ("我的IP是192.168.1.1吧", Entity.IP_ADDRESS, "192.168.1.1"),
        ("地址2001:db8::1哦", Entity.IP_ADDRESS, "2001:db8::1"),
        ("IBAN是DE89370400440532013000谢谢", Entity.IBAN_CODE, "DE89370400440532013000"),
        ("身份证11010519491231002X号", Entity.CN_RESIDENT_ID, "11010519491231002X"),
        ("卡号6222021234567890128元", Entity.BANK_CARD, "6222021234567890128"),
        ("代码91350100M000100Y43。", Entity.CN_USCC, "91350100M000100Y43"),
        ("电话+44 20 7946 0958谢谢", Entity.PHONE_NUMBER, "+44 20 7946 0958"),
        ("手机１３８１２３４５６７８", Entity.CN_MOBILE, "１３８１２３４５６７８"),
    ],
)
def test_pii_right_next_to_chinese_characters(
    engine: PiiEngine, text: str, entity: Entity, value: str
) -> None:
    start = text.index(value)
    assert [(f.entity, f.start, f.end) for f in engine.analyze(text)] == [
        (entity, start, start + len(value))
    ]


@pytest.mark.parametrize(
    "text", ["13812345678", "+86 138 1234 5678", "0086-138-1234-5678", "(+86) 138 1234 5678"]
)
def test_a_mainland_mobile_is_one_specific_finding(engine: PiiEngine, text: str) -> None:
    (finding,) = engine.analyze(f"call {text} now")
    assert (finding.entity, finding.start, finding.end, finding.score) == (
        Entity.CN_MOBILE, 5, 5 + len(text), 1.0,
    )  # fmt: skip


def test_an_address_wins_over_the_number_inside_it(engine: PiiEngine) -> None:
    text = "mail 13812345678@163.com"
    assert [(f.entity, f.start) for f in engine.analyze(text)] == [(Entity.EMAIL_ADDRESS, 5)]


def test_card_digits_inside_a_broken_iban_are_no_card(engine: PiiEngine) -> None:
    # Wrong IBAN check digits; "4002 4028 7607 4111" alone would pass as a Visa card.
    assert engine.analyze("IBAN SE31 4002 4028 7607 4111 0531") == []
    assert len(engine.analyze("Visa 4002 4028 7607 4111 exp 12/26")) == 1
    assert engine.analyze("ref 3576-3026-8285-4896-8533") == []  # 20 digits: no card


def test_grouped_digits_are_one_number(engine: PiiEngine) -> None:
    text = "卡号6222 0212 3456 7890 128元"  # 19-digit UnionPay, printed 4-4-4-4-3
    assert [text[f.start : f.end] for f in engine.analyze(text)] == ["6222 0212 3456 7890 128"]
    # Luhn fails on all 19 digits; the first 16 alone would pass: still no card.
    assert engine.analyze("卡号6236 6848 2116 0813 981元") == []


def test_a_region_stdnum_cannot_place_is_no_crash(engine: PiiEngine) -> None:
    # stdnum 2.2's ric.is_valid raises KeyError for this one instead of answering;
    # it is a valid unified social credit code.
    found = engine.analyze("代码521101082009207099")
    assert [(f.entity, f.start, f.end) for f in found] == [(Entity.CN_USCC, 2, 20)]


def test_no_network_is_touched_building_or_analysing(built: Built) -> None:
    assert built.network_attempts == []
    with no_network() as attempts:
        engine = make_engine()
        found = engine.analyze("write to zhang.wei@example.co.uk or hr@sina.com.cn")
        assert [f.entity for f in found] == [Entity.EMAIL_ADDRESS] * 2
    assert attempts == []


def test_the_network_guard_catches_a_default_tldextract() -> None:
    """The guard above is worth something: tldextract's default does try to download."""
    with no_network() as attempts:
        tldextract.TLDExtract(cache_dir=None)("bob@example.com")
    assert attempts


# ---------------------------------------------------------------- operators


def test_mask_keeps_a_few_characters(engine: PiiEngine) -> None:
    text = "手机13812345678 邮箱bob@example.com 卡6222021234567890128 IP 192.168.1.1"
    masked, findings = engine.anonymize(text, tenant="t")
    assert masked == "手机138****5678 邮箱b**@example.com 卡622202*********0128 IP 192.168.*.*"
    assert [text[f.start : f.end] for f in findings[:1]] == ["13812345678"]


def test_redact_and_replace(by_operator: dict[Operator, PiiEngine]) -> None:
    text = "手机13812345678，IP 10.0.0.1。"
    assert by_operator[Operator.REDACT].anonymize(text, tenant="t")[0] == "手机，IP 。"
    replaced = by_operator[Operator.REPLACE].anonymize(text, tenant="t")[0]
    assert replaced == "手机<CN_MOBILE>，IP <IP_ADDRESS>。"


def test_operators_per_entity_with_a_default() -> None:
    engine = make_engine(operators={"CN_MOBILE": "replace"}, default_operator="redact")
    assert engine.anonymize("13812345678 / 10.0.0.1", tenant="t")[0] == "<CN_MOBILE> / "


def test_unknown_operator_or_entity_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="encrypt"):
        make_engine(default_operator="encrypt")
    with pytest.raises(ValueError, match="US_SSN"):
        make_engine(operators={"US_SSN": "mask"})
    with pytest.raises(ValueError, match="32 bytes"):
        PiiEngine(token_key=b"short", hash_salt=SALT)


def test_hash_is_stable_keyed_and_tenant_scoped(by_operator: dict[Operator, PiiEngine]) -> None:
    engine = by_operator[Operator.HASH]
    one = engine.anonymize("tel 13812345678", tenant="a")[0]
    assert one == engine.anonymize("tel 13812345678", tenant="a")[0]
    assert one == engine.anonymize("tel +86 138 1234 5678", tenant="a")[0]  # same number
    assert one != engine.anonymize("tel 13812345679", tenant="a")[0]
    assert one != engine.anonymize("tel 13812345678", tenant="b")[0]
    other_salt = PiiEngine(
        token_key=TOKEN_KEY, hash_salt=b"another-salt-0123456789", default_operator="hash"
    )
    assert one != other_salt.anonymize("tel 13812345678", tenant="a")[0]
    assert len(one) == len("tel ") + 64 and "1381234" not in one


def test_tokens_restore_exactly_for_their_tenant_only(
    by_operator: dict[Operator, PiiEngine],
) -> None:
    engine = by_operator[Operator.TOKENIZE]
    text = "手机13812345678，邮箱bob@example.com，身份证11010519491231002X"
    sealed, findings = engine.anonymize(text, tenant="tenant-a")
    assert len(TOKEN_PATTERN.findall(sealed)) == len(findings) == 3
    assert "13812345678" not in sealed and "bob@" not in sealed
    assert "⟦PII:CN_MOBILE:" in sealed
    assert engine.restore(sealed, tenant="tenant-a") == text
    assert engine.restore(sealed, tenant="tenant-b") == sealed
    other_key = PiiEngine(token_key=bytes(32), hash_salt=SALT)
    assert other_key.restore(sealed, tenant="tenant-a") == sealed


def test_tampered_or_relabelled_tokens_are_left_alone(
    by_operator: dict[Operator, PiiEngine],
) -> None:
    engine = by_operator[Operator.TOKENIZE]
    sealed = engine.anonymize("手机13812345678", tenant="a")[0]
    payload = TOKEN_PATTERN.search(sealed)
    assert payload is not None
    flipped = payload.group(2)[:-1] + ("A" if payload.group(2)[-1] != "A" else "B")
    tampered = sealed.replace(payload.group(2), flipped)
    relabelled = sealed.replace("CN_MOBILE", "PHONE_NUMBER")
    truncated = sealed.replace(payload.group(2), payload.group(2)[:40])
    for text in (tampered, relabelled, truncated, "⟦PII:CN_MOBILE:" + "A" * 41 + "⟧"):
        assert engine.restore(text, tenant="a") == text


def test_tokens_are_not_analysed_again(by_operator: dict[Operator, PiiEngine]) -> None:
    engine = by_operator[Operator.TOKENIZE]
    sealed, findings = engine.anonymize("手机13812345678 and 10.0.0.1", tenant="t")
    assert len(findings) == 2
    assert engine.analyze(sealed) == []
    assert engine.anonymize(sealed, tenant="t") == (sealed, [])


def test_findings_can_be_passed_in(engine: PiiEngine) -> None:
    text = "13812345678 / 10.0.0.1"
    keep = [f for f in engine.analyze(text) if f.entity == Entity.IP_ADDRESS]
    assert engine.anonymize(text, tenant="t", findings=keep)[0] == "13812345678 / 10.0.*.*"
    with pytest.raises(ValueError, match="outside"):
        engine.anonymize("short", tenant="t", findings=[Finding(Entity.CN_MOBILE, 0, 99, 1.0)])


# ---------------------------------------------------------------- bad input, threads, size

ANY_CHAR = st.characters(exclude_categories=())  # lone surrogates and controls included
PII_PIECES = [
    "13812345678", "+86 138 1234 5678", "bob@example.com", "192.168.1.1", "2001:db8::1",
    "DE89 3704 0044 0532 0130 00", "11010519491231002X", "6222021234567890128",
    "91350100M000100Y43", "+44 20 7946 0958", "手机", "，", " ", "\x00", "\ud800",
]  # fmt: skip
MIXED = st.lists(st.one_of(st.text(ANY_CHAR, max_size=20), st.sampled_from(PII_PIECES)), max_size=8)


@PROPERTY
@given(text=st.text(ANY_CHAR))
def test_any_text_is_analysed_without_error_and_offsets_fit(engine: PiiEngine, text: str) -> None:
    findings = engine.analyze(text)
    for f in findings:
        assert 0 <= f.start < f.end <= len(text)
    assert all(a.end <= b.start for a, b in itertools.pairwise(findings))  # sorted, disjoint


@PROPERTY
@given(pieces=MIXED, operator=st.sampled_from(list(Operator)), tenant=st.text(ANY_CHAR))
def test_every_operator_handles_any_text(
    by_operator: dict[Operator, PiiEngine], pieces: list[str], operator: Operator, tenant: str
) -> None:
    text = "".join(pieces)
    out, applied = by_operator[operator].anonymize(text, tenant=tenant)
    kept = [text[a.end : b.start] for a, b in itertools.pairwise(applied)]
    assert all(piece in out for piece in kept)  # text between findings survives


@PROPERTY
@given(pieces=MIXED, tenant=st.text(ANY_CHAR, max_size=10))
def test_tokenize_then_restore_is_the_identity(
    by_operator: dict[Operator, PiiEngine], pieces: list[str], tenant: str
) -> None:
    text = "".join(pieces)
    tokenizer = by_operator[Operator.TOKENIZE]
    sealed, findings = tokenizer.anonymize(text, tenant=tenant)
    assert len(TOKEN_PATTERN.findall(sealed)) >= len(findings)
    assert tokenizer.restore(sealed, tenant=tenant) == text


def test_empty_and_huge_text(engine: PiiEngine) -> None:
    assert engine.analyze("") == []
    assert engine.anonymize("", tenant="t") == ("", [])
    unit = "客户手机13812345678，邮箱bob@example.com。Lorem ipsum dolor sit amet. "
    text = unit * 2000 + "\x00\ud800" + "x" * 300_000
    started = time.perf_counter()
    findings = engine.analyze(text)
    elapsed = time.perf_counter() - started
    print(f"\nanalyze: {len(text):,} characters with {len(findings)} findings in {elapsed:.2f} s")
    assert len(findings) == 4000
    assert all(0 <= f.start < f.end <= len(text) for f in findings)


def test_one_engine_serves_many_threads(
    engine: PiiEngine, corpus: list[Sample], analysed: list[list[Finding]]
) -> None:
    texts = [s.text for s in corpus[:400]]
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(engine.analyze, texts)) == analysed[:400]
