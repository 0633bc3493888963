"""Property tests: every adapter's parser turns any JSON into its result or a clear error.

Whatever a client or a chat platform sends (any JSON shape, any headers),
the parsers either return what they promise or raise an EdgegateError, which
the adapters answer with a 4xx (an error frame or reply for WebSocket and MQTT).
Nothing else may escape: an AttributeError
here would be a 500 and a dropped message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from edgegate_common.errors import EdgegateError
from edgegate_gateway.adapters import discord, slack, telegram, whatsapp
from edgegate_gateway.adapters.chat_http import _question
from edgegate_gateway.adapters.http_json import text_inputs
from edgegate_gateway.adapters.json_messages import frame_object, message_envelope
from edgegate_gateway.adapters.mqtt import read_request
from edgegate_protos.common.v1 import envelope_pb2 as env

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(
        st.sampled_from(
            ["text", "chat", "id", "type", "channel", "entry", "changes", "value", "metadata",
             "messages", "body", "from", "options", "role", "content", "bot_id", "subtype"]
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
