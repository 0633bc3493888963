"""A person's answer to an escalated Telegram question reaches the chat through the Bot API,
exactly once, with two gateway replicas and an event delivered twice.

The answer is stored the way a real taskstore path allows: Submit with `answer` set for an
envelope shaped like the escalation (a copy of its envelope), which stores the task completed
and publishes its finish, as the console's answer does.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest
from aiohttp import web
from support.standins import HttpStandIn
from support.suite_stack import Stack, assistant_args, bearer, start_stack
from support.waiting import eventually, wait_until

from edgegate_common import subjects
from edgegate_gateway.adapters.chat_webhook import REPLY_TO
from edgegate_gateway.adapters.escalation_replies import DURABLE
from edgegate_gateway.assistant import ESCALATION_MODEL, NOT_FOUND
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.taskstore.v1 import taskstore_pb2 as pb

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
BOT = "123456:bot-token"
SECRET = "webhook-secret"
KNOWN = "To reset the device, hold the power button for ten seconds until the light blinks."
QUESTION = "Can I pay by bank transfer?"
ANSWER = "Yes: transfer to account 6222 0000 1111 with your order number in the note."
CHAT, MESSAGE = 42, 7
BOT_TENANT, BOT_USER = "bots", "telegram-bot"


class BotApi(HttpStandIn):
    """Telegram's `sendMessage`, as the Bot API answers it."""

    def __init__(self) -> None:
        super().__init__({f"/bot{BOT}/sendMessage": self._send})
        self.sent: list[dict[str, Any]] = []

    async def _send(self, request: web.Request) -> web.Response:
        self.sent.append(await request.json())
        return web.json_response({"ok": True, "result": {"message_id": 100 + len(self.sent)}})


@dataclass
class World:
    stack: Stack
    bot_api: BotApi
    ports: list[int]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One taskstore and two gateway replicas taking Telegram's webhook, whose assistant knows
    one passage (and nothing close to anything else: the threshold is a cosine of 0.999)."""
    folder = tmp_path_factory.mktemp("escalation-replies")
    knowledge = folder / "knowledge"
    knowledge.mkdir()
    (knowledge / "faq.md").write_text(f"{KNOWN}\n", encoding="utf-8")
    bot_api = BotApi()
    bot_api.start()
    stack = start_stack(folder, taskstores=1)
    try:
        # Escalating stores a task: the webhook's tenant may write tasks.
        credential = stack.token("infer:*", "tasks:write", tenant=BOT_TENANT, sub=BOT_USER)
        args = (
            *assistant_args(knowledge, min_score="0.999"),
            "--webhook-credential", credential,
            "--telegram-secret-token", SECRET,
            "--telegram-bot-token", BOT,
            "--telegram-api-base", bot_api.url,
        )  # fmt: skip
        ports = [stack.start_gateway(*args)[1] for _ in range(2)]
        for port in ports:
            _first_answer(stack, port)
        yield World(stack, bot_api, ports)
    finally:
        stack.stop()
        bot_api.stop()


def _first_answer(stack: Stack, port: int) -> None:
    """Wait until the gateway's assistant answers (its knowledge base is embedded)."""
    token = stack.token("infer:*", tenant=BOT_TENANT, sub="probe")
    with openai.OpenAI(
        base_url=f"http://127.0.0.1:{port}/v1", api_key=token, max_retries=0
    ) as chat:

        def ask() -> bool:
            try:
                chat.chat.completions.create(
                    model="edgegate-assistant", messages=[{"role": "user", "content": KNOWN}]
                )
            except openai.InternalServerError:
                return False
            return True

        wait_until(ask, timeout_s=60, interval_s=0.2, what="the assistant's first answer")


def _update(update_id: int, text: str) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": MESSAGE,
            "date": 1_700_000_000,
            "chat": {"id": CHAT, "type": "private"},
            "from": {"id": CHAT, "is_bot": False, "first_name": "Li"},
            "text": text,
        },
    }


def _post_update(port: int, update: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/webhooks/telegram",
        data=json.dumps(update).encode(),
        headers={"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return dict(json.loads(answer.read()))


async def _escalations(world: World, token: str) -> list[pb.Task]:
    async with world.stack.stub() as taskstore:
        listed = await taskstore.List(pb.ListRequest(), metadata=bearer(token))
    return [t for t in listed.tasks if t.envelope.route.model == ESCALATION_MODEL]


async def _answer(world: World, escalation: pb.Task, token: str, *, key: str) -> pb.Task:
    """Store `escalation`'s answer: a completed task for a copy of its envelope, published."""
    envelope = env.Envelope()
    envelope.CopyFrom(escalation.envelope)
    envelope.id, envelope.idempotency_key = "", key
    answer = env.Reply(model="console")
    answer.parts.add(text=ANSWER)
    async with world.stack.stub() as taskstore:
        return await taskstore.Submit(
            pb.SubmitRequest(envelope=envelope, answer=answer), metadata=bearer(token)
        )


async def _all_handled(world: World, sequence: int) -> None:
    """Wait until the replicas' shared consumer acknowledged every event up to `sequence`."""
    async with world.stack.bus() as bus:

        async def handled() -> bool:
            info = await bus.js.consumer_info(subjects.STREAM_TASK_EVENTS, DURABLE)
            return info.ack_floor.stream_seq >= sequence and not info.num_ack_pending

        await eventually(handled, timeout_s=30, interval_s=0.2, what="the events handled")


async def test_an_escalated_telegram_question_gets_the_persons_answer_once(world: World) -> None:
    token = world.stack.token(
        "infer:*", "tasks:read", "tasks:write", tenant=BOT_TENANT, sub=BOT_USER
    )
    answered = await asyncio.to_thread(_post_update, world.ports[0], _update(501, QUESTION))
    assert answered == {"ok": True}
    assert [m["text"] for m in world.bot_api.sent] == [NOT_FOUND]
    (escalation,) = await _escalations(world, token)
    assert escalation.envelope.channel == env.CHANNEL_TELEGRAM
    assert json.loads(escalation.envelope.metadata[REPLY_TO]) == {
        "chat_id": CHAT,
        "message_id": MESSAGE,
    }
    async with world.stack.bus() as bus:  # both replicas wait on the shared consumer

        async def both_pulling() -> bool:
            info = await bus.js.consumer_info(subjects.STREAM_TASK_EVENTS, DURABLE)
            return (info.num_waiting or 0) >= 2

        await eventually(both_pulling, timeout_s=20, interval_s=0.2, what="two pulling replicas")

    done = await _answer(world, escalation, token, key="answer-501")
    assert done.status == pb.TASK_STATUS_COMPLETED
    await eventually(lambda: len(world.bot_api.sent) == 2, timeout_s=30, what="the answer")
    assert world.bot_api.sent[1] == {
        "chat_id": CHAT,
        "text": ANSWER,
        "reply_parameters": {"message_id": MESSAGE},
    }
    # The same finish delivered again (a redelivery after a crash reads the same) sends nothing.
    async with world.stack.bus() as bus:
        again = await bus.js.publish(
            subjects.taskstore_events(done.tenant, done.user), done.SerializeToString()
        )
    await _all_handled(world, again.seq)
    assert len(world.bot_api.sent) == 2


async def test_escalations_from_other_channels_are_not_sent_to_a_chat(world: World) -> None:
    token = world.stack.token("infer:*", "tasks:read", "tasks:write", tenant="acme", sub="li")
    with openai.OpenAI(
        base_url=f"http://127.0.0.1:{world.ports[1]}/v1", api_key=token, max_retries=0
    ) as chat:
        raw = await asyncio.to_thread(
            chat.chat.completions.with_raw_response.create,
            model="edgegate-assistant",
            messages=[{"role": "user", "content": QUESTION}],
        )
    task_id = json.loads(raw.content)["edgegate"]["escalation_task"]
    async with world.stack.stub() as taskstore:
        escalation = await taskstore.Get(pb.GetRequest(id=task_id), metadata=bearer(token))
    assert escalation.envelope.channel == env.CHANNEL_HTTP
    before = len(world.bot_api.sent)
    done = await _answer(world, escalation, token, key="answer-http")
    async with world.stack.bus() as bus:
        info = await bus.js.stream_info(subjects.STREAM_TASK_EVENTS)
    await _all_handled(world, info.state.last_seq)  # its finish was read, and skipped
    assert done.status == pb.TASK_STATUS_COMPLETED and len(world.bot_api.sent) == before
