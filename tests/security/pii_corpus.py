# Chinese sentences use full-width punctuation; that is the point, not a confusable.
# ruff: noqa: RUF001
"""A labelled PII corpus: Chinese and English sentences with every entity type.

Valid values carry correct checksums computed here (stdnum, phonenumbers), not
copied from the engine. Decoys are the same shapes made invalid (a wrong check
digit, an impossible birth date, a number no plan issues); a decoy is kept only
if it is valid as *no* type, so flagging it is always a false positive.

A valid checksum is what makes a value PII here, as in the engine: a resident
id whose region code stdnum's table does not know for its birth year, or whose
birth date is 30 February, is still a resident id; a Luhn-valid number outside
the known card ranges is still a card. Decoys fail the checksum or the shape.

One ambiguity is settled by construction: an 18-digit string can pass both the
resident-id and the card checks (Gansu ids start with 62, like UnionPay). The
engine reads such a string as a resident id, so generated cards avoid it.
"""

from __future__ import annotations

import ipaddress
import random
import re
import string
from collections.abc import Callable
from dataclasses import dataclass

import phonenumbers
from stdnum import iban, luhn
from stdnum.cn import ric, uscc
from stdnum.iso7064 import mod_97_10

from edgegate_security.pii import DEFAULT_PHONE_REGIONS, Entity

Gen = Callable[[random.Random], str]


@dataclass(frozen=True, slots=True)
class Span:
    entity: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Sample:
    text: str
    spans: tuple[Span, ...]  # the PII to find
    decoys: tuple[Span, ...]  # invalid look-alikes that must not be flagged


_RIC_SHAPE = re.compile(
    r"[1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9X]"
)


def _ric_valid(number: str) -> bool:
    """A resident id's shape and mod 11-2 check digit; no registry (see the module doc)."""
    number = number.upper()
    return bool(_RIC_SHAPE.fullmatch(number)) and ric.calc_check_digit(number) == number[-1]


def digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


# ---------------------------------------------------------------- valid values

_REGIONS = (
    "110101", "110105", "110108", "120101", "130102", "140105", "150102", "210102", "220102",
    "230102", "310101", "310104", "310115", "320102", "330102", "330106", "340102", "350102",
    "350203", "360102", "370102", "370202", "410102", "420102", "430102", "440103", "440304",
    "440305", "450102", "500101", "510104", "510107", "520102", "530102", "610102", "610113",
    "620102", "630102", "640104", "650102",
)  # fmt: skip


def resident_id(rng: random.Random) -> str:
    """Mostly registered regions; one in four a region stdnum rejects for the year (or 30 Feb)."""
    roll = rng.random()
    region = rng.choice(_REGIONS) if roll < 0.75 else str(rng.randint(100000, 829999))
    date = f"{rng.randint(1950, 2005)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    if roll > 0.95:
        date = date[:4] + "0230"
    body = region + date + digits(rng, 3)
    number = body + ric.calc_check_digit(body + "0")
    return number.lower() if number.endswith("X") and rng.random() < 0.3 else number


_MOBILE_PREFIXES = (
    "130", "131", "132", "133", "134", "135", "136", "137", "138", "139", "147", "150", "151",
    "152", "153", "155", "156", "157", "158", "159", "166", "173", "175", "176", "177", "178",
    "180", "181", "182", "183", "184", "185", "186", "187", "188", "189", "191", "198", "199",
)  # fmt: skip


def cn_mobile_digits(rng: random.Random) -> str:
    while True:
        national = rng.choice(_MOBILE_PREFIXES) + digits(rng, 8)
        number = phonenumbers.parse(national, "CN")
        if phonenumbers.number_type(number) == phonenumbers.PhoneNumberType.MOBILE:
            return national


_FULL_WIDTH = {ord(c): ord(c) + 0xFEE0 for c in string.digits}


def cn_mobile(rng: random.Random) -> str:
    d = cn_mobile_digits(rng)
    a, b, c = d[:3], d[3:7], d[7:]
    return rng.choice(
        (
            d,
            d,
            f"{a} {b} {c}",
            f"{a}-{b}-{c}",
            f"+86 {a} {b} {c}",
            f"+86{d}",
            f"+86-{a}-{b}-{c}",
            f"0086 {d}",
            f"(+86) {a} {b} {c}",
            d.translate(_FULL_WIDTH),  # as a Chinese input method may type it
        )
    )


def _luhn_complete(body: str) -> str:
    return body + luhn.calc_check_digit(body)


def _card_digits(rng: random.Random) -> str:
    kind = rng.choices(("unionpay", "visa", "mastercard", "amex", "jcb"), (6, 2, 2, 1, 1))[0]
    if kind == "unionpay":
        n = rng.choice((16, 16, 17, 18, 19, 19))
        head = rng.choice(("622202", "621700", "622848", "623668", "625967", "6214"))
    elif kind == "visa":
        n, head = rng.choice((16, 16, 13, 19)), "4"
    elif kind == "mastercard":
        n, head = 16, rng.choice(("51", "53", "55", "2221", "2720"))
    elif kind == "amex":
        n, head = 15, rng.choice(("34", "37"))
    else:
        n, head = rng.choice((16, 19)), str(rng.randint(3528, 3589))
    return _luhn_complete(head + digits(rng, n - len(head) - 1))


def _group_card(d: str, rng: random.Random) -> str:
    if rng.random() < 0.5:
        return d
    sep = rng.choice((" ", " ", "-"))
    if len(d) == 15:
        return sep.join((d[:4], d[4:10], d[10:]))
    return sep.join(d[i : i + 4] for i in range(0, len(d), 4))


def card_digits(rng: random.Random) -> str:
    """A card number, compact, that is no resident id or USCC as well."""
    while True:
        d = _card_digits(rng)
        if not (_ric_valid(d) or _uscc_valid(d)):
            return d


def bank_card(rng: random.Random) -> str:
    return _group_card(card_digits(rng), rng)


_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


def _org_code(rng: random.Random) -> str:
    if rng.random() < 0.4:
        body = "MA" + "".join(rng.choice(_USCC_CHARS) for _ in range(6))
    else:
        body = digits(rng, 8)
    check = 11 - sum(int(c, 36) * w for c, w in zip(body, _ORG_WEIGHTS, strict=True)) % 11
    return body + ("X" if check == 10 else "0" if check == 11 else str(check))


def _uscc_valid(code: str) -> bool:
    return bool(uscc.is_valid(code))


def cn_uscc(rng: random.Random) -> str:
    while True:
        head = rng.choice("159") + rng.choice("123") + rng.choice(_REGIONS) + _org_code(rng)
        code = head + uscc.calc_check_digit(head)
        if uscc.is_valid(code) and not _ric_valid(code):
            return code


_LOCALS = ("zhang.wei", "li_na", "bob", "alice.smith", "wang+news", "hr", "user", "chen-jie")
_DOMAINS = (
    "example.com", "example.org", "mail.example.net", "163.com", "qq.com", "126.com",
    "sina.com.cn", "company.cn", "gmail.com", "outlook.com", "pku.edu.cn", "example.co.uk",
)  # fmt: skip


def email(rng: random.Random) -> str:
    local = rng.choice(_LOCALS)
    if rng.random() < 0.4:
        local += str(rng.randint(1, 9999))
    if rng.random() < 0.1:
        local = cn_mobile_digits(rng)  # mobile-number addresses are common at 163/qq
    return f"{local}@{rng.choice(_DOMAINS)}"


def ip_address(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.5:
        text = str(ipaddress.IPv4Address(rng.getrandbits(32)))
        return text + "/24" if roll < 0.05 else text
    groups = [rng.getrandbits(16) if rng.random() < 0.6 else 0 for _ in range(8)]
    groups[0] = rng.choice((0x2001, 0x2408, 0x240E, 0xFE80, 0xFD00))
    address = ipaddress.IPv6Address(int("".join(f"{g:04x}" for g in groups), 16))
    return address.exploded if roll > 0.9 else address.compressed


_IBAN_SHAPES = {
    "DE": "18n", "GB": "4a14n", "NL": "4a10n", "CH": "5n12c", "AT": "16n",
    "FR": "10n11c2n", "IT": "1a10n12c", "PL": "24n", "IE": "4a14n", "SE": "20n",
}  # fmt: skip
_ALPHABETS = {
    "a": string.ascii_uppercase,
    "n": string.digits,
    "c": string.ascii_uppercase + "0123456789",
}


def _iban_parts(rng: random.Random) -> tuple[str, str]:
    cc = rng.choice(sorted(_IBAN_SHAPES))
    bban = "".join(
        rng.choice(_ALPHABETS[kind])
        for count, kind in re.findall(r"(\d+)([anc])", _IBAN_SHAPES[cc])
        for _ in range(int(count))
    )
    return cc, bban


def _format_iban(number: str, rng: random.Random) -> str:
    return iban.format(number) if rng.random() < 0.5 else number


def iban_code(rng: random.Random) -> str:
    while True:
        cc, bban = _iban_parts(rng)
        number = cc + iban.calc_check_digits(cc + "00" + bban) + bban
        if iban.is_valid(number):
            return _format_iban(number, rng)


_PHONE_REGIONS = ("GB", "DE", "FR", "JP", "SG", "AU", "HK", "IN", "BR", "KR", "US", "CA", "IT")
_MOBILE = phonenumbers.PhoneNumberType.MOBILE
_FIXED_LINE = phonenumbers.PhoneNumberType.FIXED_LINE
_STYLES = (phonenumbers.PhoneNumberFormat.INTERNATIONAL,) * 3 + (
    phonenumbers.PhoneNumberFormat.E164,
)


def phone_number(rng: random.Random) -> str:
    """A valid non-mobile-CN number: international format anywhere, national where we read it."""
    while True:
        region = rng.choice((*_PHONE_REGIONS, "CN"))
        kind = rng.choice((_MOBILE, _FIXED_LINE)) if region != "CN" else _FIXED_LINE
        example = phonenumbers.example_number_for_type(region, kind)
        if example is None:
            continue
        national = str(example.national_number)
        national = national[:-4] + digits(rng, 4)
        number = phonenumbers.parse(national, region)
        if not phonenumbers.is_valid_number(number):
            continue
        if region in DEFAULT_PHONE_REGIONS and rng.random() < 0.4:
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
        return phonenumbers.format_number(number, rng.choice(_STYLES))


VALID: dict[str, Gen] = {
    Entity.CN_RESIDENT_ID: resident_id,
    Entity.CN_MOBILE: cn_mobile,
    Entity.BANK_CARD: bank_card,
    Entity.CN_USCC: cn_uscc,
    Entity.EMAIL_ADDRESS: email,
    Entity.IP_ADDRESS: ip_address,
    Entity.IBAN_CODE: iban_code,
    Entity.PHONE_NUMBER: phone_number,
}

# ---------------------------------------------------------------- decoys


def _other_char(rng: random.Random, old: str, alphabet: str) -> str:
    return rng.choice([c for c in alphabet if c != old])


def bad_resident_id(rng: random.Random) -> str:
    number = resident_id(rng).upper()
    if rng.random() < 0.7:
        return number[:-1] + _other_char(rng, number[-1], "0123456789X")
    body = number[:10] + rng.choice(("13", "00")) + number[12:17]  # no month: not the shape
    return body + ric.calc_check_digit(body + "0")


def bad_cn_mobile(rng: random.Random) -> str:
    d = cn_mobile_digits(rng)
    return rng.choice((d[:-1], d + digits(rng, 1), "1" + rng.choice("012") + d[2:]))


def bad_bank_card(rng: random.Random) -> str:
    d = _card_digits(rng)
    return _group_card(d[:-1] + _other_char(rng, d[-1], string.digits), rng)


def bad_uscc(rng: random.Random) -> str:
    code = cn_uscc(rng)
    return code[:-1] + _other_char(rng, code[-1], _USCC_CHARS)


def bad_iban(rng: random.Random) -> str:
    cc, bban = _iban_parts(rng)
    good = iban.calc_check_digits(cc + "00" + bban)
    wrong = f"{(int(good) + rng.randint(1, 96)) % 97 + 2:02d}"
    return _format_iban(cc + (wrong if wrong != good else "01") + bban, rng)


def bad_phone_number(rng: random.Random) -> str:
    return rng.choice(("+44 20 ", "+49 30 ", "+1 201-", "+81 3-")) + digits(rng, 3)


def random_number(rng: random.Random) -> str:
    """Numeric noise: order numbers, timestamps, amounts; valid as nothing."""
    d = str(rng.randint(1, 9)) + digits(rng, rng.randint(5, 19))
    return rng.choice((d, d, "-".join(d[i : i + 4] for i in range(0, len(d), 4))))


DECOYS: dict[str, Gen] = {
    Entity.CN_RESIDENT_ID: bad_resident_id,
    Entity.CN_MOBILE: bad_cn_mobile,
    Entity.BANK_CARD: bad_bank_card,
    Entity.CN_USCC: bad_uscc,
    Entity.IBAN_CODE: bad_iban,
    Entity.PHONE_NUMBER: bad_phone_number,
    "NUMBER": random_number,
}


def _valid_compact(compact: str) -> bool:
    compact = compact.upper()
    if _ric_valid(compact) or uscc.is_valid(compact):
        return True
    if re.fullmatch(r"[A-Z]{2}[0-9]{2}[0-9A-Z]{11,30}", compact) and mod_97_10.is_valid(
        compact[4:] + compact[:4]
    ):
        return True
    if compact.isdigit() and 13 <= len(compact) <= 19 and compact[0] != "0":
        return bool(luhn.is_valid(compact))
    return bool(re.fullmatch(r"(?:0086|86)?1[3-9][0-9]{9}", compact))


def valid_as_anything(value: str) -> bool:
    """Whether any of our types would rightly claim `value` or a run of its groups.

    Groups are what separators split (the engine never splits a group), full
    width read as ASCII; a decoy must be valid as nothing, so this errs wide.
    """
    value = value.translate(_FOLD)
    groups = re.findall(r"[0-9A-Za-z]+", value)
    if any(
        _valid_compact("".join(groups[i:j]))
        for i in range(len(groups))
        for j in range(i + 1, len(groups) + 1)
    ):
        return True
    return any(
        True
        for region in DEFAULT_PHONE_REGIONS
        for _ in phonenumbers.PhoneNumberMatcher(
            value, region, leniency=phonenumbers.Leniency.VALID
        )
    )


# Full width to ASCII (the ideographic space too), as the engine reads it.
_FOLD = {ord(c) + 0xFEE0: ord(c) for c in map(chr, range(0x21, 0x7F))} | {0x3000: 0x20}


def decoy(entity: str, rng: random.Random) -> str:
    while True:
        value = DECOYS[entity](rng)
        if not valid_as_anything(value):
            return value


# ---------------------------------------------------------------- sentences

# {X}: a valid value of the sample's entity; {D}: a decoy; {ENTITY_NAME}: that type.
_SINGLE = {
    "zh": {
        Entity.CN_RESIDENT_ID: ("我的身份证号是{X}，请核对。", "申请人证件号码：{X}"),
        Entity.CN_MOBILE: (
            "我的手机号是{X}，有事请联系。",
            "请拨打{X}找王经理",
            "联系电话：{X}（工作日）",
        ),
        Entity.BANK_CARD: ("收款卡号{X}，户名张三。", "请把钱转到{X}这张卡上"),
        Entity.CN_USCC: ("公司统一社会信用代码为{X}。", "信用代码{X}已登记"),
        Entity.EMAIL_ADDRESS: ("邮箱{X}，欢迎来信", "请发送简历至{X}谢谢"),
        Entity.IP_ADDRESS: ("服务器IP是{X}，端口8080。", "登录地址{X}异常"),
        Entity.IBAN_CODE: ("汇款IBAN：{X}，收款人Hans。", "对方账户{X}在德国"),
        Entity.PHONE_NUMBER: ("海外联系方式{X}，请在工作时间拨打。", "办公室电话：{X}"),
    },
    "en": {
        Entity.CN_RESIDENT_ID: ("My ID card number is {X}.", "Resident ID: {X}, issued in 2010."),
        Entity.CN_MOBILE: ("Call me at {X} tomorrow.", "His mobile is {X}, text first."),
        Entity.BANK_CARD: ("Card: {X}, expires 09/27.", "Charge it to {X} please."),
        Entity.CN_USCC: ("Company USCC {X} registered in Shanghai.", "Credit code {X} is on file."),
        Entity.EMAIL_ADDRESS: ("Send the report to {X} by Friday.", "Contact: <{X}>"),
        Entity.IP_ADDRESS: ("Blocked login from {X} at 03:14.", "The host {X} is down."),
        Entity.IBAN_CODE: ("Please wire the funds to IBAN {X}.", "Account {X} was credited."),
        Entity.PHONE_NUMBER: ("You can reach the office on {X}.", "Phone: {X} (9-5)."),
    },
}
_GENERIC = {
    "zh": ("请核对：{X}。", "{X}", "资料如下 {X} 请查收", "备注{X}（已确认）", "号码是“{X}”吗？"),
    "en": (
        "Details: {X}.",
        "{X}",
        'Please check "{X}" again.',
        "Noted ({X}) for the file.",
        "value={X};",
    ),
}
_MULTI = {
    "zh": (
        "客户手机{CN_MOBILE}，邮箱{EMAIL_ADDRESS}，身份证{CN_RESIDENT_ID}。",
        "转账：卡号{BANK_CARD}，IBAN {IBAN_CODE}。",
        "公司{CN_USCC}的服务器{IP_ADDRESS}被攻击，联系{PHONE_NUMBER}",
        "正确的卡号是{BANK_CARD}，不是{D}。",
        "手机{CN_MOBILE}邮箱{EMAIL_ADDRESS}",
    ),
    "en": (
        "Contact {PHONE_NUMBER} or {EMAIL_ADDRESS}; server {IP_ADDRESS}.",
        "ID {CN_RESIDENT_ID}, mobile {CN_MOBILE}, card {BANK_CARD}.",
        "Supplier {CN_USCC} pays from {IBAN_CODE}.",
        "Use {CN_RESIDENT_ID}, not {D}.",
    ),
}
_DECOY = {
    "zh": ("订单号{D}已作废。", "编号：{D}，校验失败", "这串数字{D}不是有效号码"),
    "en": ("Reference {D} failed the checksum.", "Ticket #{D} was closed.", "Typo: {D}"),
}
_CLEAN = {
    "zh": (
        "今天天气不错，我们下午三点开会。",
        "总金额为12,345.67元，共3件商品。",
        "订单编号DD2024060112345已发货。",
        "会议定于2024-06-01 10:30在401室举行。",
        "第2章第3节讲的是1949年以后的历史。",
        "版本v1.2.3于2024-06-01 12:30:45发布，价格¥1,299.00。",
        "设备MAC 00:1A:2B:3C:4D:5E，坐标39.9042, 116.4074。",
        "请求ID 123e4567-e89b-12d3-a456-426614174000 已记录",
    ),
    "en": (
        "The meeting is at 10:30 in room 401.",
        "Version 2.3 was released on 2024-05-01.",
        "Total: 1,234.56 USD for 12 items.",
        "Order SO20240601 ships in 3-5 days.",
        "Chapter 12 covers the years 1990 to 2005.",
        "Commit 3f786850e387550fdab836ed7e6dc881de23001b at 10:30:00 UTC.",
        "Build 1.2.3-rc4 took 1,234 s; exit code 0; pid 48213.",
    ),
}
_SLOT = re.compile(r"\{(\w+)\}")


def _render(template: str, values: dict[str, tuple[str, str]]) -> Sample:
    """Fill `template`'s slots from `values` (slot -> (entity, value)), recording spans."""
    text, spans, decoys, cursor = "", [], [], 0
    for m in _SLOT.finditer(template):
        text += template[cursor : m.start()]
        entity, value = values[m.group(1)]
        span = Span(entity, len(text), len(text) + len(value))
        (decoys if m.group(1) == "D" else spans).append(span)
        text += value
        cursor = m.end()
    text += template[cursor:]
    return Sample(text, tuple(spans), tuple(decoys))


def _sample(rng: random.Random, lang: str, kind: str, entity: str) -> Sample:
    if kind == "clean":
        return Sample(rng.choice(_CLEAN[lang]), (), ())
    if kind == "decoy":
        entity = rng.choice(sorted(DECOYS))
        return _render(rng.choice(_DECOY[lang]), {"D": (entity, decoy(entity, rng))})
    if kind == "multi":
        template = rng.choice(_MULTI[lang])
        values = {name: (name, VALID[name](rng)) for name in _SLOT.findall(template) if name != "D"}
        if "{D}" in template:
            first = next(iter(values))  # the decoy imitates the template's first type
            values["D"] = (first, decoy(first, rng))
        return _render(template, values)
    templates = _SINGLE[lang][entity] + (rng.choice(_GENERIC[lang]),)
    return _render(rng.choice(templates), {"X": (entity, VALID[entity](rng))})


def build_corpus(*, seed: int = 20240611, size: int = 2400) -> list[Sample]:
    """`size` sentences, half Chinese: single-entity, multi-entity, decoys, and clean text."""
    rng = random.Random(seed)
    entities = sorted(VALID)
    kinds = ("single",) * 14 + ("multi",) * 3 + ("decoy",) * 4 + ("clean",) * 2
    return [
        _sample(rng, ("zh", "en")[i % 2], kinds[i % len(kinds)], entities[(i // 2) % len(entities)])
        for i in range(size)
    ]
