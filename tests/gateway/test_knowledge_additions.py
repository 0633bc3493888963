"""Knowledge added while the gateway runs (NATS KV `edgegate-knowledge`): every replica's
assistant answers with it, without a restart, and refuses what is no passage.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator

import numpy as np
import openai
import pytest
from support.suite_stack import Stack, assistant_args, start_stack
from support.waiting import eventually, wait_until

from edgegate_common import subjects
from edgegate_common.bus import Bus
from edgegate_common.errors import InvalidArgument
from edgegate_gateway.adapters.knowledge_kv import KnowledgeAdditions, passage_key
from edgegate_gateway.assistant import NOT_FOUND
from edgegate_gateway.core.knowledge import KnowledgeBase, Passage

RESET = "To reset the device, hold the power button for ten seconds until the light blinks."
PAY_Q = "Can I pay by bank transfer?"
PAY_A = "Yes: transfer to account 6222 0000 1111 and put your order number in the note."
RETURN_Q = "Can I return a device I opened?"
RETURN_A = "Yes, within thirty days, with its box and receipt."
SOURCE = "console:alice"


def test_added_passages_join_and_replace_by_key() -> None:
    base = KnowledgeBase([Passage("a", "faq.md#1")], np.array([[1.0, 0.0]]), min_score=0.9)
    added = base.with_passages([Passage("b", "console:x", key="k")], np.array([[0.0, 3.0]]))
    best = added.best(np.array([0.0, 1.0]))
    assert best is not None and best.passage.answer == "b" and best.score > 0.99
    assert base.best(np.array([0.0, 1.0])) is None  # the base it came from is unchanged
    replaced = added.with_passages([Passage("c", "console:y", key="k")], np.array([[0.0, 1.0]]))
    assert [p.answer for p in replaced.passages] == ["a", "c"]
    assert [p.answer for p in replaced.without({"k"}).passages] == ["a"]


def test_passages_join_an_empty_base() -> None:
    empty = KnowledgeBase([], np.zeros((0, 1), dtype=np.float32), min_score=0.5)
    added = empty.with_passages([Passage("b", "console:x", key="k")], np.array([[0.0, 2.0]]))
    best = added.best(np.array([0.0, 1.0]))
    assert best is not None and best.passage.source == "console:x"


@pytest.mark.parametrize(
    ("question", "answer", "source", "message"),
    [
        ("  ", PAY_A, SOURCE, "question is empty"),
        (PAY_Q, "", SOURCE, "answer is empty"),
        (PAY_Q, PAY_A, "", "source is empty"),
        ("x" * 1_001, PAY_A, SOURCE, "question is 1001 characters; at most 1000"),
        (PAY_Q, "y" * 8_001, SOURCE, "answer is 8001 characters; at most 8000"),
    ],
    ids=["blank-question", "empty-answer", "no-source", "long-question", "long-answer"],
)
async def test_what_is_no_passage_is_refused_clearly(
    bus: Bus, question: str, answer: str, source: str, message: str
) -> None:
    additions = await KnowledgeAdditions.open(bus.js)
    with pytest.raises(InvalidArgument, match=message):
        await additions.add(question=question, answer=answer, source=source)


async def test_every_follower_learns_additions_and_removals(bus: Bus) -> None:
    additions = await KnowledgeAdditions.open(bus.js)
    key = await additions.add(question=PAY_Q, answer=PAY_A, source=SOURCE)
    kv = await bus.js.key_value(subjects.KV_KNOWLEDGE)
    doc = json.loads((await kv.get(key)).value or b"")
    assert (doc["question"], doc["answer"], doc["source"]) == (PAY_Q, PAY_A, SOURCE)
    assert doc["addedAt"].endswith("Z")
    learned: dict[str, Passage | None] = {}
    follower = await KnowledgeAdditions.open(bus.js)
    await follower.start(learned.__setitem__)  # returns with what the bucket holds
    try:
        assert learned[key] == Passage(PAY_A, SOURCE, question=PAY_Q, key=key)
        # The same question, cased and spaced otherwise, is the same passage: replaced.
        again = await additions.add(
            question="can i  pay by BANK transfer?", answer="No.", source=SOURCE
        )
        assert again == key == passage_key(PAY_Q)
        await eventually(lambda: learned[key] and learned[key].answer == "No.", what="the change")
        await additions.remove(key)
        await eventually(lambda: key in learned and learned[key] is None, what="the removal")
    finally:
        await follower.stop()


# The gateways' assistants, end to end: inference comes after the first passage is added.


def _chat(port: int, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=token, max_retries=0)


def _answer(chat: openai.OpenAI, question: str) -> tuple[str, str] | None:
    """The assistant's answer and its source ("" when nothing answered); None: not ready."""
    try:
        raw = chat.chat.completions.with_raw_response.create(
            model="edgegate-assistant", messages=[{"role": "user", "content": question}]
        )
    except openai.InternalServerError:  # 503 while the knowledge base is embedded
        return None
    return raw.parse().choices[0].message.content or "", raw.headers.get("Edgegate-Source", "")


def _answered(chat: openai.OpenAI, question: str, expected: tuple[str, str]) -> None:
    wait_until(
        lambda: _answer(chat, question) == expected,
        timeout_s=40,
        interval_s=0.2,
        what=f"the answer {expected}",
    )


def _add(stack: Stack, question: str, answer: str) -> str:
    async def add() -> str:
        async with stack.bus() as bus:
            additions = await KnowledgeAdditions.open(bus.js)
            return await additions.add(question=question, answer=answer, source=SOURCE)

    return asyncio.run(add())


def _remove(stack: Stack, key: str) -> None:
    async def remove() -> None:
        async with stack.bus() as bus:
            await (await KnowledgeAdditions.open(bus.js)).remove(key)

    asyncio.run(remove())


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("knowledge"), inference=False, taskstores=0)
    yield running
    running.stop()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_an_added_passage_answers_on_every_replica_without_a_restart(stack: Stack) -> None:
    knowledge = stack.folder / "knowledge"
    knowledge.mkdir()
    (knowledge / "faq.md").write_text(f"{RESET}\n", encoding="utf-8")
    args = (*assistant_args(knowledge, min_score="0.999"), "--no-assistant-escalate")
    token = stack.token("infer:*")
    _, first_port = stack.start_gateway(*args)
    with contextlib.ExitStack() as clients:
        first = clients.enter_context(_chat(first_port, token))
        # Added while no replica serves the assistant's model: embedded once one does.
        _add(stack, PAY_Q, PAY_A)
        stack.start_inference()
        asked = f"{PAY_Q} {PAY_A}"  # the passage's own words: a cosine of 1 with the toy model
        _answered(first, asked, (PAY_A, SOURCE))
        assert _answer(first, RESET) == (RESET, "faq.md#1")  # the folder answers as before
        # A replica started later reads what the bucket holds with its folder.
        _, second_port = stack.start_gateway(*args)
        second = clients.enter_context(_chat(second_port, token))
        _answered(second, asked, (PAY_A, SOURCE))
        # Not known yet, then added once: both replicas learn it as they run.
        returns = f"{RETURN_Q} {RETURN_A}"
        assert _answer(first, returns) == (NOT_FOUND, "")
        key = _add(stack, RETURN_Q, RETURN_A)
        _answered(first, returns, (RETURN_A, SOURCE))
        _answered(second, returns, (RETURN_A, SOURCE))
        _remove(stack, key)
        _answered(first, returns, (NOT_FOUND, ""))
        _answered(second, returns, (NOT_FOUND, ""))
