"""The one JSON reader: every hostile document is a clear INVALID_ARGUMENT, never a crash."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgegate_common.errors import InvalidArgument
from edgegate_gateway.core.json_input import MAX_DEPTH, decode, decode_object

# Each: a document, and words its refusal must hold.
HOSTILE: list[tuple[str | bytes, list[str]]] = [
    ("[" * 5000 + "]" * 5000, ["deeper than 32"]),  # RecursionError in json.loads
    ("[" * 5000, ["deeper than 32"]),  # not even closed
    ('{"a":' * 3000 + "1" + "}" * 3000, ["deeper than 32"]),
    ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), ["deeper than 32"]),
    ('{"text": "\\ud800"}', ["lone UTF-16 surrogate"]),
    ('{"\\udfff": 1}', ["lone UTF-16 surrogate"]),  # in a key
    ('["ok", ["\\ud83d x"]]', ["lone UTF-16 surrogate"]),  # half a pair
    ('{"a": NaN}', ["NaN is not a JSON number"]),
    ('{"a": -Infinity}', ["-Infinity is not a JSON number"]),
    ('{"a": 1e400}', ["too large for a double"]),
    ('{"a": ' + "9" * 5000 + "}", ["more than 4300 digits"]),
    (b'{"a": "\xff"}', ["not valid UTF-8", "byte 7"]),
    ('{"a": 1,}', ["not valid JSON", "line 1, column 9"]),
    ("", ["not valid JSON"]),
]


@pytest.mark.parametrize(("document", "words"), HOSTILE)
def test_hostile_documents_are_refused_saying_why(document: str | bytes, words: list[str]) -> None:
    with pytest.raises(InvalidArgument) as refused:
        decode(document, what="the body")
    for word in words:
        assert word in refused.value.message


def test_a_refusal_never_quotes_the_document() -> None:
    with pytest.raises(InvalidArgument) as refused:
        decode('{"token": "sk-SECRET", "x": [' + "1," * 10 + "oops]}")
    assert "SECRET" not in refused.value.message


def test_ordinary_documents_pass_unchanged() -> None:
    document = {"a": [1, 2.5, None, True, {"b": "😀 中文 \u0000"}], "c": "x" * 10_000}
    assert decode(json.dumps(document)) == document
    assert decode(json.dumps(document).encode()) == document
    nested = "[" * MAX_DEPTH + "]" * MAX_DEPTH  # exactly the limit
    assert decode(nested) is not None


def test_decode_object_names_what_it_got() -> None:
    with pytest.raises(InvalidArgument, match="the message must be a JSON object, not an array"):
        decode_object("[1]", what="the message")


# Text that is close to JSON: fragments of valid documents, escapes of any code point
# (surrogates included), deep brackets, special numbers.
_TOKENS = st.sampled_from(
    ["{", "}", "[", "]", ",", ":", '"', "\\", "\\u", "d800", "dfff", "NaN", "Infinity",
     "1e999", "-0", "true", "null", '"text"', '"model"', " ", "\\n"]
)  # fmt: skip
_ESCAPED = st.integers(0, 0x10FFFF).map(lambda c: f'"\\u{c:04x}"' if c < 0x10000 else f'"{c}"')


@settings(max_examples=500, deadline=None)
@given(
    st.lists(_TOKENS | _ESCAPED, max_size=40).map("".join)
    | st.integers(1, 20_000).map(lambda n: "[" * n)
    | st.binary(max_size=64)
)
def test_any_input_decodes_or_is_refused_clearly(document: str | bytes) -> None:
    try:
        value = decode(document)
    except InvalidArgument:
        return
    json.dumps(value, ensure_ascii=False).encode("utf-8")  # what passes encodes again
