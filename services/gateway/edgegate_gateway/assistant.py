"""The default assistant: chat questions answered from the local knowledge base.

At start-up the gateway reads the knowledge folder and, as soon as an
inference replica serves the assistant's embedding model, embeds every
passage (retrying until it can). A question goes through the shared
pipeline like any message (admitted, rate-limited, embedded by local
inference) and is answered with the closest passage's answer (without the
question it was filed under), its score and source.
Below the confidence threshold the answer says so plainly.

Passages people add while the gateway runs (`adapters/knowledge_kv.py`, NATS
KV `edgegate-knowledge`) join the knowledge base as the watch delivers them:
embedded the same way, in the background, once the model serves (those
already in the bucket at start-up are embedded with the folder's). Until a
new passage is embedded the assistant answers from what it had.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgegate_common import subjects, tasks
from edgegate_common.bus import Bus
from edgegate_common.bus.readiness import ModelReadiness
from edgegate_common.errors import EdgegateError, InvalidArgument, NotFound, Unavailable
from edgegate_common.logging import get_logger
from edgegate_gateway.adapters.fallback import Fallback
from edgegate_gateway.adapters.knowledge_kv import KnowledgeAdditions
from edgegate_gateway.adapters.taskstore_client import TaskstoreClient
from edgegate_gateway.core.knowledge import Answer, KnowledgeBase, Passage, read_passages
from edgegate_gateway.core.rules import ASSISTANT
from edgegate_gateway.pipeline import Pipeline
from edgegate_protos.common.v1 import envelope_pb2 as env

log = get_logger(__name__)

NOT_FOUND = "I could not find an answer to that in the knowledge base."
RETRY_S = 2.0  # how soon embedding (or following the added passages) is tried again
# How long the first knowledge base waits for the added passages already in the bucket.
CAUGHT_UP_WAIT_S = 10.0


ESCALATION_MODEL = tasks.ESCALATION_MODEL
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
        additions: KnowledgeAdditions | None = None,
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
        self._additions = additions
        self._added: dict[str, Passage | None] = {}  # by key, not embedded yet (None: removed)
        self._changed = asyncio.Event()  # `_added` holds something
        self._caught_up = asyncio.Event()  # the bucket's passages at start-up are in `_added`
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def additions(self) -> KnowledgeAdditions | None:
        """Where passages added at run time are kept (and people add them), if anywhere."""
        return self._additions

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._load())]
        if self._additions is not None:
            self._tasks.append(loop.create_task(self._follow(self._additions)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._additions is not None:
            await self._additions.stop()

    def learn(self, key: str, passage: Passage | None) -> None:
        """Add `passage` under `key` (None: remove it); it answers once it is embedded."""
        self._added[key] = passage
        self._changed.set()

    async def ask(
        self,
        question: str,
        *,
        credential: str,
        channel: env.Channel.ValueType = env.CHANNEL_HTTP,
        metadata: Mapping[str, str] | None = None,
    ) -> Reply:
        """Answer `question`; `channel` and `metadata` (where an answer can reach the asker)
        go with it, and with the escalation task if nobody can answer it."""
        envelope = env.Envelope(channel=channel, route=env.RouteHint(model=ASSISTANT))
        envelope.parts.add(text=question)
        envelope.metadata.update(metadata or {})
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
        """The folder's passages, then the added ones; then each addition as it comes."""
        passages = read_passages(self._folder)
        log.info("knowledge base read", folder=str(self._folder), passages=len(passages))
        folder = KnowledgeBase(passages, await self._embedded(passages), min_score=self._min_score)
        if self._additions is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._caught_up.wait(), CAUGHT_UP_WAIT_S)
        self._knowledge = await self._with_added(folder)
        log.info("knowledge base ready", passages=len(self._knowledge.passages))
        while True:
            await self._changed.wait()
            self._knowledge = await self._with_added(self._knowledge)

    async def _with_added(self, knowledge: KnowledgeBase) -> KnowledgeBase:
        """`knowledge` with the passages added (and removed) since it was built."""
        self._changed.clear()
        changes = dict(self._added)
        added = [p for p in changes.values() if p is not None]
        updated = knowledge.without(changes.keys()).with_passages(
            added, await self._embedded(added)
        )
        for key, passage in changes.items():
            if self._added.get(key) is passage:  # not changed again while it was embedded
                del self._added[key]
        if changes:
            log.info("knowledge base changed", added=len(added), removed=len(changes) - len(added))
        return updated

    async def _follow(self, additions: KnowledgeAdditions) -> None:
        """Follow the added passages (the watch runs until `stop`), retrying its start."""
        while True:
            try:
                await additions.start(self.learn)
                break
            except Exception as exc:
                log.warning("added knowledge not followed yet", error=repr(exc))
                await asyncio.sleep(RETRY_S)
        self._caught_up.set()

    async def _embedded(self, passages: list[Passage]) -> np.ndarray:
        """The passages' vectors, once the model serves (tried every `RETRY_S` until then)."""
        if not passages:
            return np.zeros((0, 1), dtype=np.float32)
        while True:
            try:
                return await self._embed([p.text for p in passages])
            except EdgegateError as exc:
                log.info("knowledge base waits for its model", model=self.model, why=exc.message)
                await asyncio.sleep(RETRY_S)

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
