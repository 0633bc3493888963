"""edgegate's services as real processes on a real nats-server, for the service-level tests.

One stack: nats-server (JetStream, file storage), the security service
(tokens signed from its key folder), the inference service serving the small
test models, taskstore replicas with short timings (2 s ack wait, 0.1-0.5 s
backoff, so that redeliveries happen within a test) and gateways, each
started by the test that needs it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc
import openai

from edgegate_common.bus import Bus
from edgegate_common.local import LocalNatsServer, ServiceProcess, free_port
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.taskstore.v1 import taskstore_pb2 as pb
from edgegate_protos.taskstore.v1 import taskstore_pb2_grpc
from edgegate_security.core.keyring import KeyRing
from edgegate_security.core.tokens import TokenIssuer
from support.inference_support import build_test_repository
from support.waiting import eventually, wait_until  # eventually: also imported from here

TENANT = "acme"
OTHER_TENANT = "globex"
TEXT_MODEL = "toy_text"
TASKSTORE_ARGS = (
    "--ack-wait-s", "2",
    "--backoff-base-s", "0.1",
    "--backoff-cap-s", "0.5",
    "--model-wait-s", "0.5",
    "--max-attempts", "3",
    "--auth-cache-s", "30",
    "--infer-timeout-s", "5",
)  # fmt: skip
T = TypeVar("T")


@dataclass
class Stack:
    folder: Path
    nats: LocalNatsServer
    security: ServiceProcess
    inference: ServiceProcess | None = None
    taskstores: list[ServiceProcess] = field(default_factory=list)
    gateways: list[ServiceProcess] = field(default_factory=list)

    @property
    def keys_dir(self) -> Path:
        return self.folder / "keys"

    def token(self, *scopes: str, tenant: str = TENANT, sub: str = "alice") -> str:
        ring = KeyRing.open(self.keys_dir, alg="ES256", max_token_ttl_s=24 * 3600)
        issuer = TokenIssuer(ring, issuer="edgegate", audience="edgegate")
        # By default what a task client needs: submitting runs a model (`infer:`).
        granted = scopes or ("infer:*", "tasks:read", "tasks:write")
        return issuer.issue(tenant=tenant, subject=sub, scopes=granted, ttl_s=3600).token

    def start_inference(self, *, metrics_snapshot_s: str = "0") -> ServiceProcess:
        """The test models; `metrics_snapshot_s` "0" publishes no metric snapshots."""
        repo = self.folder / "models"
        if not repo.exists():
            build_test_repository(repo)
        self.inference = _process(
            self,
            "inference",
            ("--model-repository", str(repo), "--metrics-snapshot-s", metrics_snapshot_s),
        )
        return self.inference

    def start_taskstore(self, *extra: str) -> ServiceProcess:
        """From synchronous code (a fixture): start one more replica, wait until it serves."""
        proc = self._taskstore(extra)
        asyncio.run(proc.wait_serving(timeout_s=90))
        return proc

    async def add_taskstore(self, *extra: str) -> ServiceProcess:
        """From a test: start one more replica, wait until it serves."""
        proc = self._taskstore(extra)
        await proc.wait_serving(timeout_s=90)
        return proc

    def _taskstore(self, extra: tuple[str, ...]) -> ServiceProcess:
        name = f"taskstore-{len(self.taskstores)}"
        proc = _spawn(self, "taskstore", (*TASKSTORE_ARGS, *extra), name=name)
        self.taskstores.append(proc)
        return proc

    def start_gateway(self, *extra: str) -> tuple[ServiceProcess, int]:
        """From synchronous code: one gateway, and the port its HTTP adapter listens on."""
        http_port = free_port()
        name = f"gateway-{len(self.gateways)}"
        proc = _spawn(self, "gateway", ("--http-port", str(http_port), *extra), name=name)
        self.gateways.append(proc)
        asyncio.run(proc.wait_serving(timeout_s=90))
        return proc, http_port

    def stop(self) -> None:
        for proc in [*self.gateways, *self.taskstores, self.inference, self.security]:
            if proc is not None:
                proc.stop()
        self.nats.stop()

    @asynccontextmanager
    async def bus(self) -> AsyncIterator[Bus]:
        bus = await Bus.connect(servers=[self.nats.url], name="test", connect_timeout_s=10)
        try:
            yield bus
        finally:
            await bus.close()

    @asynccontextmanager
    async def stub(self, replica: int = 0) -> AsyncIterator[taskstore_pb2_grpc.TaskStoreStub]:
        async with grpc.aio.insecure_channel(self.taskstores[replica].target) as channel:
            yield taskstore_pb2_grpc.TaskStoreStub(channel)


def _spawn(stack: Stack, service: str, args: tuple[str, ...], *, name: str = "") -> ServiceProcess:
    proc = ServiceProcess(
        service,
        nats_url=stack.nats.url,
        grpc_port=free_port(),
        metrics_port=0,
        log_file=stack.folder / f"{name or service}.log",
        extra_args=args,
    )
    proc.start()
    return proc


def _process(stack: Stack, service: str, args: tuple[str, ...]) -> ServiceProcess:
    proc = _spawn(stack, service, args)
    asyncio.run(proc.wait_serving(timeout_s=90))
    return proc


def start_stack(
    folder: Path, *, inference: bool = True, taskstores: int = 1, pii: bool = False
) -> Stack:
    """Start the stack; `pii` turns the security service's PII masking on (slower to start)."""
    nats = LocalNatsServer(store_dir=folder / "nats")
    nats.start()
    stack = Stack(folder=folder, nats=nats, security=None)  # type: ignore[arg-type]
    try:
        stack.security = _process(
            stack,
            "security",
            ("--keys-dir", str(folder / "keys"), "--pii-enabled" if pii else "--no-pii-enabled"),
        )
        if inference:
            stack.start_inference()
        for _ in range(taskstores):
            stack.start_taskstore()
    except BaseException:
        stack.stop()
        raise
    return stack


def text_envelope(
    text: str, *, key: str = "", model: str = TEXT_MODEL, version: str = "", priority: int = 0
) -> env.Envelope:
    envelope = env.Envelope(idempotency_key=key, priority=priority)  # type: ignore[arg-type]
    envelope.parts.add(text=text)
    envelope.route.model = model
    envelope.route.version = version
    return envelope


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


async def all_completed(
    taskstore: taskstore_pb2_grpc.TaskStoreStub,
    ids: list[str],
    token: str,
    *,
    timeout_s: float,
    what: str,
) -> list[pb.Task]:
    """The tasks `ids`, once every one is completed and reported (read with `token`)."""
    if not ids:
        return []

    async def check() -> list[pb.Task] | None:
        tasks = [await taskstore.Get(pb.GetRequest(id=i), metadata=bearer(token)) for i in ids]
        done = all(t.status == pb.TASK_STATUS_COMPLETED and t.reported for t in tasks)
        return tasks if done else None

    return await eventually(check, timeout_s=timeout_s, what=what)


def finished(task: pb.Task) -> bool:
    """Finished and reported: its event is stored, the record will not change again."""
    done = (pb.TASK_STATUS_COMPLETED, pb.TASK_STATUS_FAILED, pb.TASK_STATUS_CANCELLED)
    return task.status in done and task.reported


def one_passage_knowledge(folder: Path, answer: str) -> Path:
    """A knowledge folder (`folder/knowledge`) whose one passage is `answer`."""
    knowledge = folder / "knowledge"
    knowledge.mkdir()
    (knowledge / "faq.md").write_text(f"{answer}\n", encoding="utf-8")
    return knowledge


def assistant_args(knowledge: Path, min_score: str = "0") -> tuple[str, ...]:
    """Gateway flags for an assistant that answers from `knowledge` with `toy_text`."""
    return (
        "--knowledge-dir", str(knowledge),
        "--assistant-model", TEXT_MODEL,
        "--assistant-min-score", min_score,
    )  # fmt: skip


def assistant_client(
    stack: Stack,
    knowledge: Path,
    *extra: str,
    token: str = "",
    min_score: str = "0",
    question: str = "ready?",
) -> tuple[openai.OpenAI, str]:
    """A gateway whose assistant answers from `knowledge` with `toy_text`: an openai client for
    it once its passages are embedded, and its answer to `question`."""
    _, port = stack.start_gateway(*assistant_args(knowledge, min_score), *extra)
    chat = openai.OpenAI(
        base_url=f"http://127.0.0.1:{port}/v1",
        api_key=token or stack.token("infer:*"),
        max_retries=0,
    )
    return chat, first_answer(chat, question)


def first_answer(chat: openai.OpenAI, question: str = "ready?") -> str:
    """The assistant's answer to `question`, once its passages are embedded (503 until then)."""

    def ask() -> list[str] | None:
        try:
            completion = chat.chat.completions.create(
                model="edgegate-assistant", messages=[{"role": "user", "content": question}]
            )
        except openai.InternalServerError:
            return None
        return [completion.choices[0].message.content or ""]

    (answer,) = wait_until(ask, timeout_s=30, interval_s=0.2, what="the assistant's first answer")
    return str(answer)


@contextmanager
def chat_stack(
    folder: Path,
    *,
    answer: str,
    bot: str,
    webhook_args: tuple[str, ...],
    inference: bool = True,
) -> Iterator[tuple[Stack, int]]:
    """A stack of its own whose gateway answers chat webhooks with one known passage; yields
    it and the gateway's HTTP port (see `chat_gateway`)."""
    stack = start_stack(folder, taskstores=0, inference=inference)
    try:
        with chat_gateway(stack, folder, answer=answer, bot=bot, webhook_args=webhook_args) as port:
            yield stack, port
    finally:
        stack.stop()


@contextmanager
def chat_gateway(
    stack: Stack, folder: Path, *, answer: str, bot: str, webhook_args: tuple[str, ...]
) -> Iterator[int]:
    """A gateway on `stack` that answers chat webhooks with one known passage; its HTTP port.

    The knowledge base (in `folder`) holds `answer` alone and any score answers, so every
    question gets `answer`. The webhook credential is a `bots` tenant token for `bot`.
    The gateway stops on the way out; the stack stays.
    """
    knowledge = one_passage_knowledge(folder, answer)
    proc, port = stack.start_gateway(
        *assistant_args(knowledge),
        "--webhook-credential", stack.token("infer:*", tenant="bots", sub=bot),
        *webhook_args,
    )  # fmt: skip
    try:
        if stack.inference is not None:  # the knowledge base is embedded: answers, not a queue
            probe = stack.token("infer:*", tenant="bots", sub="probe")
            base_url = f"http://127.0.0.1:{port}/v1"
            first_answer(openai.OpenAI(base_url=base_url, api_key=probe, max_retries=0))
        yield port
    finally:
        proc.stop()
        stack.gateways.remove(proc)
