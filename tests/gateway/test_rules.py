"""Routing rules: parsing with clear errors, first match wins, prefixes stripped."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgegate_gateway.core.rules import ASSISTANT, Rules
from edgegate_protos.common.v1 import envelope_pb2 as env

RULES = """
- match: {channel: telegram, prefix: "/embed"}
  to: {model: minilm, version: "2"}
- match: {channel: telegram, prefix: "/raw ", strip: false}
  to: {model: raw-model}
- match: {model: "text-embedding-*"}
  to: {model: minilm}
- match: {channel: mqtt}
  to: {pipeline: assistant}
"""


def _envelope(text: str, *, channel: int = env.CHANNEL_TELEGRAM, model: str = "") -> env.Envelope:
    envelope = env.Envelope(channel=channel, route=env.RouteHint(model=model))  # type: ignore[arg-type]
    envelope.parts.add(text=text)
    return envelope


@pytest.fixture
def rules(tmp_path: Path) -> Rules:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES, encoding="utf-8")
    return Rules.load(path)


def test_a_command_prefix_picks_the_model_and_is_removed(rules: Rules) -> None:
    envelope = _envelope("/embed  hello world", model="asked")
    rules.route(envelope)
    assert (envelope.route.model, envelope.route.version) == ("minilm", "2")
    assert envelope.parts[0].text == "hello world"


def test_strip_false_keeps_the_text(rules: Rules) -> None:
    envelope = _envelope("/raw data")
    rules.route(envelope)
    assert envelope.route.model == "raw-model" and envelope.parts[0].text == "/raw data"


def test_model_hints_match_by_pattern_and_channels_by_name(rules: Rules) -> None:
    hinted = _envelope("x", channel=env.CHANNEL_HTTP, model="text-embedding-3-small")
    device = _envelope("x", channel=env.CHANNEL_MQTT, model="anything")
    untouched = _envelope("x", channel=env.CHANNEL_HTTP, model="gpt-4o")
    for envelope in (hinted, device, untouched):
        rules.route(envelope)
    assert hinted.route.model == "minilm"
    assert device.route.model == ASSISTANT
    assert untouched.route.model == "gpt-4o"


def test_the_first_matching_rule_decides() -> None:
    rules = Rules.parse(
        [
            {"match": {"channel": "slack"}, "to": {"model": "first"}},
            {"match": {}, "to": {"model": "second"}},
        ]
    )
    slack, other = _envelope("x", channel=env.CHANNEL_SLACK), _envelope("x")
    rules.route(slack)
    rules.route(other)
    assert (slack.route.model, other.route.model) == ("first", "second")


def test_a_pipeline_hint_names_its_model() -> None:
    envelope = _envelope("x")
    envelope.route.pipeline = "assistant"
    Rules().route(envelope)
    assert envelope.route.model == ASSISTANT


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        ({"match": {}}, "are a list of"),
        ([{"match": {}}], "expected {match"),
        ([{"match": {"channel": "fax"}, "to": {"model": "m"}}], "channel must be one of"),
        ([{"match": {"colour": "red"}, "to": {"model": "m"}}], "match takes"),
        ([{"to": {"model": "m", "pipeline": "assistant"}}], "exactly one"),
        ([{"to": {}}], "exactly one"),
        ([{"to": {"pipeline": "poetry"}}], "pipeline must be one of"),
        ([{"match": {"prefix": 3}, "to": {"model": "m"}}], "match.prefix must be a string"),
        ([{"match": {"strip": "yes"}, "to": {"model": "m"}}], "strip must be true or false"),
        ([{"to": {"model": "m", "version": 2}}], "must be strings"),
        (["not a rule"], "routing rule 1"),
        ([{"match": {"channel": ["http"]}, "to": {"model": "m"}}], "channel must be one of"),
        ([{"match": [], "to": {"model": "m"}}], "match takes"),
        ([{"to": {"pipeline": ["assistant"]}}], "pipeline must be one of"),
    ],
)
def test_bad_rules_are_refused_naming_the_rule(doc: object, says: str) -> None:
    with pytest.raises(ValueError, match=r"routing rule|list of") as refused:
        Rules.parse(doc)
    assert says in str(refused.value)


def test_an_unreadable_file_says_which(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("- match: [unclosed", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.yaml"):
        Rules.load(tmp_path / "bad.yaml")
