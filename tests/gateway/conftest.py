"""The stack the chat-platform suites share (Discord, Slack, Telegram, WhatsApp)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.suite_stack import Stack, start_stack


@pytest.fixture(scope="package")
def chat_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """NATS, security and inference, no taskstore: each chat suite starts its own gateway on it
    (`suite_stack.chat_gateway`), so the four start and stop the services once between them."""
    stack = start_stack(tmp_path_factory.mktemp("chat-base"), taskstores=0)
    yield stack
    stack.stop()
