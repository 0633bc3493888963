"""Routing rules: the model (or pipeline) a message goes to, by its channel and content.

Rules come from a YAML (or JSON) file, a list tried in order; the first
that matches a message decides, and a message no rule matches keeps the
model it asked for:

    - match: {channel: websocket, prefix: "/embed "}
      to: {model: all-MiniLM-L6-v2}
    - match: {channel: mqtt}
      to: {pipeline: assistant}
    - match: {model: "gpt-*"}
      to: {pipeline: assistant}

`match` may name a `channel` (http, websocket, grpc, mqtt, telegram,
slack, whatsapp, discord), a command `prefix` of the first text part
(removed from the text unless `strip: false`) and the `model` the sender
asked for (a glob pattern); all named conditions must hold, and an empty
`match` matches everything. `to` names a `model` (and optionally a
`version`) or a `pipeline`; `assistant` is the default assistant. The chat
webhooks (Telegram, Slack, WhatsApp, Discord) always answer with the
assistant; the rules route what the other adapters receive.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from edgegate_protos.common.v1 import envelope_pb2 as env

# The model name callers use for the default assistant (chat, /ws, MQTT, Converse).
ASSISTANT = "edgegate-assistant"
PIPELINES = {"assistant": ASSISTANT}  # pipeline name → the model name that runs it
CHANNELS = {
    name.removeprefix("CHANNEL_").lower(): number
    for name, number in env.Channel.items()
    if number != env.CHANNEL_UNSPECIFIED
}


@dataclass(frozen=True, slots=True)
class Rule:
    channel: int | None = None
    prefix: str = ""
    strip: bool = True
    model_pattern: str = ""
    to_model: str = ""
    to_version: str = ""

    def matches(self, envelope: env.Envelope) -> bool:
        if self.channel is not None and envelope.channel != self.channel:
            return False
        if self.model_pattern and not fnmatch.fnmatchcase(envelope.route.model, self.model_pattern):
            return False
        return not self.prefix or _first_text(envelope).startswith(self.prefix)

    def apply(self, envelope: env.Envelope) -> None:
        if self.prefix and self.strip:
            part = next(p for p in envelope.parts if p.WhichOneof("content") == "text")
            part.text = part.text[len(self.prefix) :].lstrip()
        envelope.route.model = self.to_model
        envelope.route.version = self.to_version
        envelope.route.pipeline = ""


class Rules:
    def __init__(self, rules: Sequence[Rule] = ()) -> None:
        self._rules = tuple(rules)

    @classmethod
    def load(cls, path: Path) -> Rules:
        """Read a rules file; ValueError names the rule and what is wrong with it."""
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"cannot read routing rules from {path}: {exc}") from None
        return cls.parse(doc if doc is not None else [])

    @classmethod
    def parse(cls, doc: Any) -> Rules:
        if not isinstance(doc, list):
            raise ValueError("routing rules are a list of {match: ..., to: ...}")
        return cls([_rule(i, item) for i, item in enumerate(doc, start=1)])

    def route(self, envelope: env.Envelope) -> None:
        """Point `envelope` where the first matching rule says (in place)."""
        if envelope.route.pipeline and not envelope.route.model:
            pipeline = PIPELINES.get(envelope.route.pipeline)
            if pipeline is not None:
                envelope.route.model = pipeline
        for rule in self._rules:
            if rule.matches(envelope):
                rule.apply(envelope)
                return


def _rule(number: int, item: Any) -> Rule:
    where = f"routing rule {number}"
    if not isinstance(item, dict) or set(item) - {"match", "to"} or "to" not in item:
        raise ValueError(
            f"{where}: expected {{match: {{...}}, to: {{...}}}}, got {json.dumps(item)}"
        )
    match = {} if item.get("match") is None else item["match"]
    to = item["to"]
    if not isinstance(match, dict) or set(match) - {"channel", "prefix", "strip", "model"}:
        raise ValueError(f"{where}: match takes channel, prefix, strip and model")
    if not isinstance(to, dict) or set(to) - {"model", "version", "pipeline"}:
        raise ValueError(f"{where}: to takes model (and version) or pipeline")
    channel = None
    if "channel" in match:
        if not isinstance(match["channel"], str) or match["channel"] not in CHANNELS:
            raise ValueError(f"{where}: channel must be one of {sorted(CHANNELS)}")
        channel = CHANNELS[match["channel"]]
    for key in ("prefix", "model"):
        if not isinstance(match.get(key, ""), str):
            raise ValueError(f"{where}: match.{key} must be a string")
    if not isinstance(match.get("strip", True), bool):
        raise ValueError(f"{where}: match.strip must be true or false")
    model, pipeline = to.get("model", ""), to.get("pipeline", "")
    if bool(model) == bool(pipeline):
        raise ValueError(f"{where}: to names a model or a pipeline, exactly one")
    if pipeline and (not isinstance(pipeline, str) or pipeline not in PIPELINES):
        raise ValueError(f"{where}: pipeline must be one of {sorted(PIPELINES)}")
    if not isinstance(model, str) or not isinstance(to.get("version", ""), str):
        raise ValueError(f"{where}: to.model and to.version must be strings")
    return Rule(
        channel=channel,
        prefix=match.get("prefix", ""),
        strip=match.get("strip", True),
        model_pattern=match.get("model", ""),
        to_model=PIPELINES[pipeline] if pipeline else model,
        to_version=str(to.get("version", "")),
    )


def _first_text(envelope: env.Envelope) -> str:
    return next((p.text for p in envelope.parts if p.WhichOneof("content") == "text"), "")
