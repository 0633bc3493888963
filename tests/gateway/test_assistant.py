"""The default assistant: passages from a folder; `/v1/chat/completions` through the openai SDK."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from aiohttp import web
from support.standins import HttpStandIn
from support.suite_stack import Stack, assistant_client, start_stack

from edgegate_gateway.core.knowledge import KnowledgeBase, Passage, read_passages

RESET = "To reset the device, hold the power button for ten seconds until the light blinks."
HOURS = "Support answers on weekdays from nine to five, Beijing time."


def _write_knowledge(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "faq.md").write_text(f"# Device FAQ\n\n{RESET}\n\n{HOURS}\n", encoding="utf-8")
    (folder / "notes.txt").write_text("Firmware updates arrive monthly.\n", encoding="utf-8")
    (folder / "image.png").write_bytes(b"\x89PNG not a document")
    return folder


def test_passages_are_read_per_paragraph_with_their_source(tmp_path: Path) -> None:
    passages = read_passages(_write_knowledge(tmp_path / "kb"))
    assert [(p.source, p.text) for p in passages] == [
        ("faq.md#1", RESET),
        ("faq.md#2", HOURS),
        ("notes.txt#1", "Firmware updates arrive monthly."),
    ]


OFFLINE_Q = "What happens to my message when the model is offline?"
OFFLINE_A = "It becomes a task and is answered once the model is back."
WARRANTY_Q = "How long is the warranty?"
WARRANTY_A = "Two years from the day of purchase."
QUESTIONS = f"""# Questions people ask

{OFFLINE_Q} {OFFLINE_A}

## {WARRANTY_Q}

{WARRANTY_A}

Can I return it?
Yes, within thirty days. Keep the receipt.

Plain text opens this paragraph. A question later? It stays part of the answer.
"""


def test_a_question_filed_with_its_answer_is_kept_apart_from_it(tmp_path: Path) -> None:
    """Same line, a question heading, the line above: each way an FAQ is written."""
    (tmp_path / "questions.md").write_text(QUESTIONS, encoding="utf-8")
    passages = read_passages(tmp_path)
    assert [(p.source, p.question, p.answer) for p in passages] == [
        ("questions.md#1", OFFLINE_Q, OFFLINE_A),
        ("questions.md#2", WARRANTY_Q, WARRANTY_A),
        ("questions.md#3", "Can I return it?", "Yes, within thirty days. Keep the receipt."),
        ("questions.md#4", "", "Plain text opens this paragraph. A question later? It stays "
         "part of the answer."),
    ]  # fmt: skip
    # The question is embedded with its answer: it is what people's questions match.
    assert passages[1].text == f"{WARRANTY_Q} {WARRANTY_A}"


def test_the_closest_passage_answers_above_the_threshold_only() -> None:
    kb = KnowledgeBase(
        [Passage("a", "x#1"), Passage("b", "x#2")],
        np.array([[1.0, 0.0], [0.0, 2.0]], dtype=np.float32),
        min_score=0.8,
    )
    best = kb.best(np.array([0.1, 0.9], dtype=np.float32))
    assert best is not None and best.passage.source == "x#2" and best.score > 0.99
    assert kb.best(np.array([1.0, 1.0], dtype=np.float32)) is None  # 0.707 < 0.8


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("assistant"), taskstores=0)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(stack: Stack) -> openai.OpenAI:
    knowledge = _write_knowledge(stack.folder / "knowledge")
    (knowledge / "questions.md").write_text(QUESTIONS, encoding="utf-8")
    chat, _ = assistant_client(stack, knowledge, min_score="0.999")
    return chat


@pytest.mark.slow
def test_a_question_is_answered_from_the_knowledge_base(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="edgegate-assistant", messages=[{"role": "user", "content": RESET}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == RESET
    assert raw.headers["Edgegate-Source"] == "faq.md#1"
    assert float(raw.headers["Edgegate-Score"]) > 0.999
    assert "edgegate-assistant" in {m.id for m in client.models.list()}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("asked", "question", "answer"),
    [
        (f"{OFFLINE_Q} {OFFLINE_A}", OFFLINE_Q, OFFLINE_A),
        (f"{WARRANTY_Q} {WARRANTY_A}", WARRANTY_Q, WARRANTY_A),
    ],
    ids=["same line", "heading"],
)
def test_the_answer_does_not_echo_the_question_it_was_filed_under(
    client: openai.OpenAI, asked: str, question: str, answer: str
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="edgegate-assistant", messages=[{"role": "user", "content": asked}]
    )
    said = raw.parse().choices[0].message.content or ""
    assert said == answer and question not in said
    assert raw.headers["Edgegate-Source"].startswith("questions.md#")


@pytest.mark.slow
def test_nothing_close_enough_says_so(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="edgegate-assistant",
        messages=[{"role": "user", "content": "What is the capital of Mongolia?"}],
    )
    assert "could not find an answer" in (completion.choices[0].message.content or "")


@pytest.mark.slow
def test_streaming_sends_the_answer_in_chunks(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="edgegate-assistant", messages=[{"role": "user", "content": HOURS}], stream=True
    )
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream]
    assert len(pieces) > 3 and "".join(pieces) == HOURS


@pytest.mark.slow
def test_bad_chat_requests_are_clear(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="edgegate-assistant"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="messages"):
        client.chat.completions.create(model="edgegate-assistant", messages=[])
    with pytest.raises(openai.BadRequestError, match="user message"):
        client.chat.completions.create(
            model="edgegate-assistant", messages=[{"role": "system", "content": "be brief"}]
        )


CLOUD_ANSWER = "Ulaanbaatar is the capital of Mongolia."


class CloudChat(HttpStandIn):
    """An OpenAI-compatible chat endpoint, as the cloud fallback would be."""

    def __init__(self) -> None:
        super().__init__({"/v1/chat/completions": self._complete})
        self.asked: list[dict[str, Any]] = []

    async def _complete(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.asked.append(body)
        return web.json_response(
            {
                "id": "chatcmpl-cloud",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": CLOUD_ANSWER},
                        "finish_reason": "stop",
                    }
                ],
            }
        )


def _ready_client(stack: Stack, *extra: str) -> openai.OpenAI:
    token = stack.token("infer:*", "tasks:read", "tasks:write")
    knowledge = stack.folder / "knowledge"
    chat, _ = assistant_client(
        stack, knowledge, *extra, token=token, min_score="0.999", question=RESET
    )
    return chat


@pytest.mark.slow
def test_below_the_threshold_the_cloud_answers_when_configured(
    stack: Stack, client: openai.OpenAI
) -> None:
    cloud = CloudChat()
    cloud.start()
    try:
        chat = _ready_client(
            stack,
            "--fallback-url", f"{cloud.url}/v1",
            "--fallback-chat-model", "gpt-4o-mini",
        )  # fmt: skip
        raw = chat.chat.completions.with_raw_response.create(
            model="edgegate-assistant",
            messages=[{"role": "user", "content": "What is the capital of Mongolia?"}],
        )
        known = chat.chat.completions.with_raw_response.create(
            model="edgegate-assistant", messages=[{"role": "user", "content": HOURS}]
        )
    finally:
        cloud.stop()
    assert raw.parse().choices[0].message.content == CLOUD_ANSWER
    assert raw.headers["Edgegate-Backend"] == "fallback"
    (asked,) = cloud.asked  # the known question never left the gateway
    assert asked["model"] == "gpt-4o-mini"
    assert asked["messages"][-1] == {
        "role": "user",
        "content": "What is the capital of Mongolia?",
    }
    assert known.headers["Edgegate-Backend"] == "local"


@pytest.mark.slow
def test_below_the_threshold_without_a_cloud_an_escalation_task_waits(
    stack: Stack, client: openai.OpenAI
) -> None:
    if not stack.taskstores:
        stack.start_taskstore()
    chat = _ready_client(stack)
    raw = chat.chat.completions.with_raw_response.create(
        model="edgegate-assistant",
        messages=[{"role": "user", "content": "Can I pay by bank transfer?"}],
    )
    about = json.loads(raw.content)["edgegate"]
    assert "could not find an answer" in (raw.parse().choices[0].message.content or "")
    assert raw.headers["Edgegate-Backend"] == "local" and about["escalation_task"]
    listed = chat.get(f"/tasks/{about['escalation_task']}", cast_to=httpx.Response)
    task = listed.json()
    assert task["model"] == "edgegate-escalation" and task["priority"] == "high"
    assert task["status"] in ("pending", "processing")
