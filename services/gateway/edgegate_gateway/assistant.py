"""The default assistant: chat questions answered from the local knowledge base.

At start-up the gateway reads the knowledge folder and, as soon as an
inference replica serves the assistant's embedding model, embeds every
passage (retrying until it can). A question goes through the shared
pipeline like any message (admitted, rate-limited, embedded by local
inference) and is answered with the closest passage's answer (without the
question it was filed under), its score and source.
Below the confidence threshold the answer says so plainly.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgegate_common import subjects
from edgegate_common.bus import Bus
from edgegate_common.bus.readiness import ModelReadiness
from edgegate_common.errors import EdgegateError, InvalidArgument, NotFound, Unavailable
from edgegate_common.logging import get_logger
from edgegate_gateway.adapters.fallback import Fallback
from edgegate_gateway.adapters.taskstore_client import TaskstoreClient
from edgegate_gateway.core.knowledge import Answer, KnowledgeBase, read_passages
from edgegate_gateway.core.rules import ASSISTANT
from edgegate_gateway.pipeline import Pipeline
from edgegate_protos.common.v1 import envelope_pb2 as env

log = get_logger(__name__)

NOT_FOUND = "I could not find an answer to that in the knowledge base."


ESCALATION_MODEL = "edgegate-escalation"
CLOUD_INSTRUCTIONS = (
    "You answer questions from the users of a product in a few sentences. "
    "Its own knowledge base had no answer to this one."
)


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    answer: Answer | None  # the passage that answered; None: nothing close enough
    backend: env.Backend.ValueType = env.BACKEND_LOCAL  # FALLBACK: the cloud answered
    escalation: str = ""  # the escalation task's id, when nobody could answer


class Assistant:
    def __init__(
        self,
        *,
        bus: Bus,
        readiness: ModelReadiness,
        pipeline: Pipeline,
        taskstore: TaskstoreClient,
        folder: Path,
        model: str,
        min_score: float,
        fallback: Fallback | None = None,
        escalate: bool = True,
    ) -> None:
        self._bus = bus
        self._readiness = readiness
        self._pipeline = pipeline
        self._taskstore = taskstore
        self._folder = folder
        self.model = model
        self._min_score = min_score
        self._fallback = fallback if fallback is not None and fallback.chats else None
        self._escalate = escalate
        self._knowledge: KnowledgeBase | None = None
        self._loader: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loader = asyncio.get_running_loop().create_task(self._load())

    async def stop(self) -> None:
        if self._loader is not None:
            self._loader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loader

    async def ask(self, question: str, *, credential: str) -> Reply:
        envelope = env.Envelope(channel=env.CHANNEL_HTTP, route=env.RouteHint(model=ASSISTANT))
        envelope.parts.add(text=question)
        return await self._answer(envelope, credential)

    async def reply(self, envelope: env.Envelope, *, credential: str) -> env.Reply:
        """Answer an envelope addressed to the assistant; it is admitted (and masked) in place."""
        answered = await self._answer(envelope, credential)
        reply = env.Reply(envelope_id=envelope.id, backend=answered.backend, model=ASSISTANT)
        reply.parts.add(text=answered.text)
        if answered.answer is not None:
            reply.metadata["source"] = answered.answer.passage.source
            reply.metadata["score"] = f"{answered.answer.score:.4f}"
        if answered.escalation:
            reply.metadata["escalation_task"] = answered.escalation
        reply.created_at.GetCurrentTime()
        return reply

    async def _answer(self, envelope: env.Envelope, credential: str) -> Reply:
        if self._knowledge is None:
            raise Unavailable("the knowledge base is still being embedded; try again shortly")
        texts = [p.text for p in envelope.parts if p.WhichOneof("content") == "text"]
        if len(envelope.parts) != 1 or len(texts) != 1 or not texts[0].strip():
            raise InvalidArgument("a question for the assistant is one non-empty text part")
        # The question is embedded by the assistant's model, through the whole
        # pipeline but its routing rules (admitted, masked, rate-limited); the
        # envelope keeps what was admitted.
        envelope.route.model, envelope.route.version = self.model, ""
        try:
            reply = (await self._pipeline.run(envelope, credential=credential)).reply
        except NotFound:
            # The operator's own model: not served means offline, not unknown.
            raise Unavailable(
                f"the assistant's model {self.model} is not served right now"
            ) from None
        finally:
            envelope.route.model = ASSISTANT
        if reply.backend != env.BACKEND_LOCAL:
            raise Unavailable("the assistant's model is not available locally right now")
        answer = self._knowledge.best(_rows(reply)[0])
        if answer is not None:
            # The passage's answer alone: its question would read like an echo of the user's.
            text = await self._checked(envelope, answer.passage.answer)
            return Reply(text=text, answer=answer)
        if self._fallback is not None:
            try:
                text = await self._fallback.chat(
                    envelope.parts[0].text,  # as admitted: masked
                    system=CLOUD_INSTRUCTIONS,
                )
            except EdgegateError as exc:
                log.warning("cloud chat fallback failed", error=exc.message)
            else:
                text = await self._checked(envelope, text)
                return Reply(text=text, answer=None, backend=env.BACKEND_FALLBACK)
        escalation = await self._escalation(envelope, credential) if self._escalate else ""
        return Reply(text=NOT_FOUND, answer=None, escalation=escalation)

    async def _checked(self, envelope: env.Envelope, text: str) -> str:
        """The answer as the security service lets it out (masked, or withheld)."""
        (part,) = await self._pipeline.inspect_output(envelope, [env.Part(text=text)])
        return part.text

    async def _escalation(self, asked: env.Envelope, credential: str) -> str:
        """A task for a person: the question nobody could answer. Its id, or "" if refused."""
        envelope = env.Envelope()
        envelope.CopyFrom(asked)
        envelope.route.model, envelope.route.version = ESCALATION_MODEL, ""
        envelope.priority = env.PRIORITY_HIGH
        envelope.metadata["escalation.reason"] = "no passage above the confidence threshold"
        if asked.idempotency_key:
            envelope.idempotency_key = f"{asked.idempotency_key}/escalation"
        try:
            task = await self._taskstore.submit(envelope, credential=credential)
        except EdgegateError as exc:
            log.warning("escalation task not stored", error=exc.message)
            return ""
        return task.id

    async def _load(self) -> None:
        passages = read_passages(self._folder)
        log.info("knowledge base read", folder=str(self._folder), passages=len(passages))
        while True:
            try:
                vectors = await self._embed([p.text for p in passages]) if passages else None
                break
            except EdgegateError as exc:
                log.info("knowledge base waits for its model", model=self.model, why=exc.message)
                await asyncio.sleep(2.0)
        empty = np.zeros((0, 1), dtype=np.float32)
        self._knowledge = KnowledgeBase(
            passages, vectors if vectors is not None else empty, min_score=self._min_score
        )
        log.info("knowledge base ready", passages=len(passages))

    async def _embed(self, texts: list[str], batch: int = 32) -> np.ndarray:
        """The gateway's own documents: straight to inference, no tenant's quota spent."""
        version = self._readiness.version_to_run(self.model, "")
        if version is None:
            raise Unavailable(f"no replica serves {self.model} yet")
        rows = []
        for start in range(0, len(texts), batch):
            envelope = env.Envelope(id="knowledge-base")
            for text in texts[start : start + batch]:
                envelope.parts.add(text=text)
            reply = await self._bus.request(
                subjects.inference_infer(self.model, version), envelope, env.Reply, timeout_s=60
            )
            rows.append(_rows(reply))
        return np.concatenate(rows)


def _rows(reply: env.Reply) -> np.ndarray:
    tensor = next(p.tensor for p in reply.parts if p.WhichOneof("content") == "tensor")
    return np.frombuffer(tensor.raw_data, dtype="<f4").reshape(tuple(tensor.shape))
