"""One whole stack whose gateway takes every chat platform's webhooks, for the suites that
probe the running services from outside (tests/services: the authorization matrix and the
bad-input campaign), so they start it once between them.

The platforms' send APIs point at a port where nothing listens: refused at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import openai
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edgegate_common.local import ServiceProcess, free_port
from support.suite_stack import (
    Stack,
    assistant_args,
    first_answer,
    one_passage_knowledge,
    start_stack,
)

TELEGRAM_SECRET = "telegram-secret"
SLACK_SECRET = "slack-signing-secret"
WHATSAPP_SECRET = "whatsapp-app-secret"
WHATSAPP_VERIFY = "whatsapp-verify"
DISCORD_KEY = Ed25519PrivateKey.generate()
ANSWER = "Support is open from 9 to 5."


@dataclass(frozen=True)
class BotsStack:
    stack: Stack
    gateway: ServiceProcess
    http_port: int


@contextmanager
def bots_stack(folder: Path) -> Iterator[BotsStack]:
    """The stack (one taskstore), and a gateway answering every question with `ANSWER`."""
    knowledge = one_passage_knowledge(folder, ANSWER)
    stack = start_stack(folder, taskstores=1)
    nowhere = f"http://127.0.0.1:{free_port()}"
    public_hex = DISCORD_KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    try:
        gateway, port = stack.start_gateway(
            *assistant_args(knowledge),
            "--webhook-credential", stack.token("infer:*", tenant="bots", sub="bot"),
            "--telegram-secret-token", TELEGRAM_SECRET,
            "--telegram-bot-token", "123:abc",
            "--telegram-api-base", nowhere,
            "--slack-signing-secret", SLACK_SECRET,
            "--slack-bot-token", "xoxb-test",
            "--slack-api-base", nowhere,
            "--whatsapp-app-secret", WHATSAPP_SECRET,
            "--whatsapp-verify-token", WHATSAPP_VERIFY,
            "--whatsapp-access-token", "EAAG-test",
            "--whatsapp-api-base", nowhere,
            "--discord-public-key", public_hex,
            "--discord-api-base", nowhere,
        )  # fmt: skip
        # The knowledge base is embedded: questions get answers, not a queue.
        token = stack.token("infer:*", tenant="bots", sub="probe")
        first_answer(openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=token))
        yield BotsStack(stack, gateway, port)
    finally:
        stack.stop()
