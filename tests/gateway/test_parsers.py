"""Property tests: every adapter's parser turns any JSON into its result or a clear error.

Whatever a client or a chat platform sends (any JSON shape, any headers),
the parsers either return what they promise or raise an EdgegateError, which
the adapters answer with a 4xx (an error frame or reply for WebSocket and MQTT).
Nothing else may escape: an AttributeError
here would be a 500 and a dropped message.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from edgegate_common.errors import REQUEST_ERRORS, EdgegateError, InvalidArgument, Unauthenticated
from edgegate_gateway.adapters import discord, slack, telegram, whatsapp
from edgegate_gateway.adapters.chat_http import _question
from edgegate_gateway.adapters.http_json import parse_object, text_inputs
from edgegate_gateway.adapters.json_messages import frame_object, message_envelope
from edgegate_gateway.adapters.mqtt import read_request
from edgegate_protos.common.v1 import envelope_pb2 as env

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(
        st.sampled_from(
            ["text", "chat", "id", "type", "channel", "entry", "changes", "value", "metadata",
             "messages", "body", "from", "options", "role", "content", "bot_id", "subtype",
             "model", "priority", "defer", "idempotency_key", "version", "id"]
        )
        | st.text(max_size=4),
        inner,
        max_size=5,
    ),
    max_leaves=25,
)  # fmt: skip


def _only_clear_errors(parse: Callable[[Any], object], value: Any) -> object:
    try:
        return parse(value)
    except EdgegateError as exc:
        return exc


@settings(max_examples=200, deadline=None)
@given(JSON)
def test_telegram_messages(value: Any) -> None:
    result = _only_clear_errors(telegram._text_and_chat, value)
    if isinstance(result, tuple):
        text, _ = result
        assert text is None or (isinstance(text, str) and text.strip())


@settings(max_examples=200, deadline=None)
@given(JSON)
def test_slack_events(value: Any) -> None:
    result = _only_clear_errors(slack._user_text, value)
    assert result is None or isinstance(result, str | EdgegateError)


@settings(max_examples=200, deadline=None)
@given(JSON | st.fixed_dictionaries({"entry": st.lists(JSON, max_size=3)}))
def test_whatsapp_notifications(value: Any) -> None:
    result = _only_clear_errors(whatsapp._text_messages, value)
    assert isinstance(result, list | EdgegateError)


@settings(max_examples=200, deadline=None)
@given(JSON)
def test_discord_command_options(value: Any) -> None:
    result = _only_clear_errors(discord._option_text, value)
    assert result is None or isinstance(result, str | EdgegateError)


@settings(max_examples=200, deadline=None)
@given(JSON)
def test_chat_completion_messages(value: Any) -> None:
    result = _only_clear_errors(_question, value)
    assert isinstance(result, str | EdgegateError)


@settings(max_examples=200, deadline=None)
@given(JSON)
def test_embedding_inputs(value: Any) -> None:
    result = _only_clear_errors(text_inputs, value)
    assert isinstance(result, list | EdgegateError)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=30), st.text(max_size=80), max_size=4), st.binary())
def test_signature_checks_refuse_anything_unsigned(headers: dict[str, str], body: bytes) -> None:
    key = Ed25519PrivateKey.generate().public_key()
    slack_says = _only_clear_errors(
        lambda _: slack.verify("secret", headers, body, now_s=time.time()), None
    )
    discord_says = _only_clear_errors(lambda _: discord.verify(key, headers, body), None)
    assert isinstance(slack_says, EdgegateError) and isinstance(discord_says, EdgegateError)


@settings(max_examples=200, deadline=None)
@given(
    JSON
    | st.fixed_dictionaries(
        {"type": st.just("send"), "text": st.text() | st.integers(), "model": st.text()},
        optional={"priority": st.text(), "defer": st.booleans() | st.text(), "version": st.text()},
    )
)
def test_websocket_frames(value: Any) -> None:
    result = _only_clear_errors(
        lambda v: message_envelope(frame_object(json.dumps(v)), env.CHANNEL_WEBSOCKET, "c"), value
    )
    if isinstance(result, tuple):
        envelope, _ = result
        assert envelope.parts[0].text and envelope.route.model


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | st.builds(lambda d: json.dumps(d).encode(), JSON))
def test_mqtt_requests(payload: bytes) -> None:
    result = _only_clear_errors(lambda p: read_request(frame_object(p), "device"), payload)
    if isinstance(result, tuple):
        envelope, _, _ = result
        assert envelope.parts[0].text and envelope.route.model


# Every adapter from the raw bytes it receives: the one JSON reader, then its own parser.
ADAPTERS: dict[str, Callable[[bytes], object]] = {
    "telegram": lambda raw: telegram._text_and_chat(parse_object(raw).get("message")),
    "slack": lambda raw: slack._user_text(parse_object(raw).get("event")),
    "whatsapp": lambda raw: whatsapp._text_messages(parse_object(raw)),
    "discord": lambda raw: discord._option_text(parse_object(raw).get("data")),
    "chat": lambda raw: _question(parse_object(raw).get("messages")),
    "embeddings": lambda raw: text_inputs(parse_object(raw).get("input")),
    "websocket": lambda raw: message_envelope(frame_object(raw), env.CHANNEL_WEBSOCKET, "c"),
    "mqtt": lambda raw: read_request(frame_object(raw), "device"),
}

# Documents seen to break adapters, wrapped where each adapter looks.
_DEEP = "[" * 4000 + "]" * 4000
HOSTILE_BODIES = [
    _DEEP,
    '{"message": ' + _DEEP + "}",
    '{"text": "\\ud800", "model": "m", "input": "\\ud800"}',
    '{"messages": [{"role": "user", "content": "\\udc00"}]}',
    '{"event": {"type": "message", "text": "\\ud800", "user": "U1"}}',
    '{"message": {"text": "\\ud800", "chat": {"id": 1}}}',
    '{"data": {"options": [{"value": "\\ud800"}]}}',
    '{"entry": [{"changes": [{"value": {"messages": [{"text": {"body": "\\ud800"}}]}}]}]}',
    '{"messages": [{"role": "user", "content": [{"type": "text", "text": 42}]}]}',
    '{"messages": [{"role": "user", "content": [{"type": "text", "text": null}]}]}',
    '{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}',
    '{"text": 1e400, "model": "m"}',
    '{"text": "hi", "model": "m", "priority": NaN}',
    '{"text": "hi", "model": "m", "priority": ["high"]}',
    '{"text": "hi", "model": "m", "priority": {"a": 1}}',
    '{"input": [' + "9" * 5000 + "]}",
]


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("body", HOSTILE_BODIES)
def test_hostile_bodies_get_clear_errors_in_every_adapter(adapter: str, body: str) -> None:
    result = _only_clear_errors(ADAPTERS[adapter], body.encode())
    if isinstance(result, EdgegateError):
        assert result.code in REQUEST_ERRORS, (adapter, result)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (
            [{"type": "text", "text": 42}],
            "messages[0].content[0].text must be a string, not a number",
        ),
        ([{"type": "text", "text": None}], "must be a string, not null"),
        ([{"type": "text"}], "must be a string, not null"),
        ([{"type": "image_url", "image_url": {}}], "reads text only"),
        ([], "has no text"),
        (7, "must be a string or a list of text parts, not a number"),
    ],
)
def test_chat_content_parts_must_be_text(content: object, words: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        _question([{"role": "user", "content": content}])
    assert words in refused.value.message


def test_chat_text_parts_are_joined() -> None:
    parts = [{"type": "text", "text": "how do I"}, {"type": "text", "text": "reset it?"}]
    assert _question([{"role": "user", "content": parts}]) == "how do I reset it?"


@pytest.mark.parametrize("timestamp", ["9" * 400, "1" * 13, "-5", "1e9", "\uff11\uff12\uff13"])
def test_slack_timestamps_of_any_length_are_refused_before_the_signature(timestamp: str) -> None:
    headers = {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": "v0=00"}
    with pytest.raises(Unauthenticated):
        slack.verify("secret", headers, b"{}", now_s=time.time())


_MUTATIONS = ("flip", "cut", "repeat", "insert")


def _mutate(seed: bytes, rng: random.Random) -> bytes:
    data = bytearray(seed)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(data) + 1)
        match rng.choice(_MUTATIONS):
            case "flip" if data:
                data[min(at, len(data) - 1)] = rng.randrange(256)
            case "cut":
                del data[at : at + rng.randint(1, 8)]
            case "repeat":
                data[at:at] = data[at : at + 4] * rng.randint(1, 300)
            case _:
                data[at:at] = rng.choice([b"[", b"{", b'"\\ud800"', b"\xff", b"NaN", b"1e999"])
    return bytes(data)


VALID_BODIES = {
    "telegram": {"message": {"text": "hi", "chat": {"id": 1}}},
    "slack": {"event": {"type": "message", "text": "hi", "user": "U1", "ts": "1.2"}},
    "whatsapp": {
        "entry": [{"changes": [{"value": {"messages": [
            {"from": "1", "id": "w1", "type": "text", "text": {"body": "hi"}}
        ]}}]}]
    },
    "discord": {"data": {"options": [{"name": "q", "value": "hi"}]}},
    "chat": {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]},
    "embeddings": {"input": ["a", "b"]},
    "websocket": {"type": "send", "text": "hi", "model": "m", "priority": "high"},
    "mqtt": {"text": "hi", "model": "m", "id": "1"},
}  # fmt: skip


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_a_bounded_fuzz_of_mutated_valid_bodies_never_escapes(adapter: str) -> None:
    """2,000 seeded mutations of a valid body per adapter: a result or a request error."""
    rng = random.Random(f"fuzz-{adapter}")
    seed = json.dumps(VALID_BODIES[adapter]).encode()
    assert not isinstance(_only_clear_errors(ADAPTERS[adapter], seed), EdgegateError)
    refused = 0
    for _ in range(2000):
        result = _only_clear_errors(ADAPTERS[adapter], _mutate(seed, rng))
        if isinstance(result, EdgegateError):
            assert result.code in REQUEST_ERRORS, (adapter, result)
            refused += 1
    assert refused > 500  # the mutations do reach the error paths
