"""The cloud fallback: an OpenAI-compatible endpoint that answers when local inference cannot.

Only text requests (what `/v1/embeddings` sends) can go there: their texts
go out as one embeddings call, and the answer comes back as the same
`Reply` local inference gives (one FP32 [batch, dim] tensor), marked
`BACKEND_FALLBACK`. When a chat model is configured, the assistant also
sends it the questions its knowledge base cannot answer (`chat`). A cap on
concurrent calls keeps a local outage from turning into a flood of cloud
calls: over the cap, RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import grpc
import numpy as np

from edgegate_common.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    ResourceExhausted,
    Unavailable,
)
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.oip import grpc_service_pb2 as oip
from edgegate_protos.oip import grpc_service_pb2_grpc

FALLBACK_VERSION = "cloud"


@dataclass(frozen=True, slots=True)
class FallbackSettings:
    base_url: str  # e.g. https://api.openai.com/v1; for OIP, the gRPC target host:port
    api_key: str = ""
    model: str = ""  # the cloud's model name; empty: the same name as locally
    max_concurrency: int = 8
    timeout_s: float = 10.0
    chat_model: str = ""  # answers what the knowledge base cannot; empty: no chat fallback


class _TextFallback:
    """What both fallbacks share: text messages only, the timeout, the cap on calls."""

    def __init__(self, settings: FallbackSettings) -> None:
        self._settings = settings
        self._in_flight = 0

    def can_serve(self, envelope: env.Envelope) -> bool:
        return bool(envelope.parts) and all(
            p.WhichOneof("content") == "text" for p in envelope.parts
        )

    def _checked_timeout_s(self, envelope: env.Envelope, budget_s: float | None) -> float:
        """The call's timeout (what the envelope's deadline leaves, at most the setting)."""
        if not self.can_serve(envelope):
            raise FailedPrecondition("the cloud fallback serves text messages only")
        s = self._settings
        return s.timeout_s if budget_s is None else min(s.timeout_s, budget_s)

    @contextlib.contextmanager
    def _slot(self) -> Iterator[None]:
        """One call under the concurrency cap; over it, RESOURCE_EXHAUSTED."""
        cap = self._settings.max_concurrency
        if self._in_flight >= cap:
            raise ResourceExhausted(f"the cloud fallback is at its cap of {cap} concurrent calls")
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1


class CloudFallback(_TextFallback):
    def __init__(self, settings: FallbackSettings) -> None:
        super().__init__(settings)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def chats(self) -> bool:
        return bool(self._settings.chat_model)

    async def chat(self, question: str, *, system: str) -> str:
        """The cloud chat model's answer to one question."""
        s = self._settings
        body = {
            "model": s.chat_model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": question},
            ],
        }
        doc = await self._call("chat/completions", body, s.timeout_s)
        try:
            content = doc["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise Unavailable(f"the cloud's chat answer has no message: {exc!r}") from exc
        if not isinstance(content, str) or not content.strip():
            raise Unavailable("the cloud's chat answer is empty")
        return content

    async def _call(self, path: str, body: dict[str, Any], timeout_s: float) -> Any:
        """POST `body` to the endpoint under the concurrency cap; the JSON answer."""
        s = self._settings
        with self._slot():
            if self._session is None:
                self._session = aiohttp.ClientSession()
            headers = {"Authorization": f"Bearer {s.api_key}"} if s.api_key else {}
            try:
                async with asyncio.timeout(timeout_s):
                    async with self._session.post(
                        f"{s.base_url.rstrip('/')}/{path}", json=body, headers=headers
                    ) as answer:
                        doc = await answer.json(content_type=None)
            except TimeoutError:
                raise DeadlineExceeded(
                    f"the cloud fallback did not answer in {timeout_s:g} s"
                ) from None
            except (aiohttp.ClientError, ValueError) as exc:
                raise Unavailable(f"the cloud fallback failed: {exc!r}") from exc
        if answer.status != 200:
            error = doc.get("error") if isinstance(doc, dict) else None
            message = error.get("message", "") if isinstance(error, dict) else ""
            raise Unavailable(f"the cloud fallback answered {answer.status}: {message}")
        return doc

    async def infer(self, envelope: env.Envelope, *, budget_s: float | None) -> env.Reply:
        """The cloud's answer to `envelope`, within `budget_s` (what its deadline leaves)."""
        timeout_s = self._checked_timeout_s(envelope, budget_s)
        texts = [p.text for p in envelope.parts]
        rows = await self._embed(texts, envelope.route.model, timeout_s)
        return _reply(
            envelope,
            env.Tensor(
                name="embedding", datatype="FP32", shape=list(rows.shape), raw_data=rows.tobytes()
            ),
        )

    async def _embed(self, texts: list[str], model: str, timeout_s: float) -> np.ndarray:
        s = self._settings
        body = {"model": s.model or model, "input": texts, "encoding_format": "float"}
        doc = await self._call("embeddings", body, timeout_s)
        try:
            data = sorted(doc["data"], key=lambda d: d["index"])
            rows = np.array([d["embedding"] for d in data], dtype="<f4")
        except (KeyError, TypeError, ValueError) as exc:
            raise Unavailable(
                f"the cloud fallback's answer is not an embeddings list: {exc!r}"
            ) from exc
        if rows.ndim != 2 or rows.shape[0] != len(texts):
            raise Unavailable(f"the cloud fallback answered {rows.shape} for {len(texts)} texts")
        return rows


class OipFallback(_TextFallback):
    """A remote Open Inference Protocol v2 server (Triton, KServe, another edgegate) over gRPC.

    Text messages go out as one BYTES tensor to the model's first input (its
    name and rank read once from ModelMetadata), and the first output comes
    back as the reply's tensor, marked `BACKEND_FALLBACK`.
    """

    chats = False

    def __init__(self, settings: FallbackSettings) -> None:
        super().__init__(settings)
        self._channel = grpc.aio.insecure_channel(settings.base_url)
        self._stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        self._inputs: dict[str, tuple[str, int]] = {}  # model → (input name, rank)

    async def close(self) -> None:
        await self._channel.close(grace=None)

    async def chat(self, question: str, *, system: str) -> str:
        raise FailedPrecondition("an OIP fallback serves models, not chat")

    async def infer(self, envelope: env.Envelope, *, budget_s: float | None) -> env.Reply:
        timeout_s = self._checked_timeout_s(envelope, budget_s)
        model = self._settings.model or envelope.route.model
        texts = [p.text.encode() for p in envelope.parts]
        with self._slot():
            try:
                name, rank = await self._input(model, timeout_s)
                request = oip.ModelInferRequest(model_name=model, id=envelope.id)
                request.inputs.add(
                    name=name,
                    datatype="BYTES",
                    shape=[len(texts)] + [1] * (rank - 1),
                    contents=oip.InferTensorContents(bytes_contents=texts),
                )
                response = await self._stub.ModelInfer(request, timeout=timeout_s)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise DeadlineExceeded(
                        f"the OIP fallback did not answer in {timeout_s:g} s"
                    ) from None
                raise Unavailable(
                    f"the OIP fallback answered {exc.code().name}: {exc.details()}"
                ) from None
        if not response.outputs or not response.raw_output_contents:
            raise Unavailable("the OIP fallback's answer has no output tensor")
        output = response.outputs[0]
        return _reply(
            envelope,
            env.Tensor(
                name=output.name,
                datatype=output.datatype,
                shape=list(output.shape),
                raw_data=response.raw_output_contents[0],
            ),
        )

    async def _input(self, model: str, timeout_s: float) -> tuple[str, int]:
        if model not in self._inputs:
            metadata = await self._stub.ModelMetadata(
                oip.ModelMetadataRequest(name=model), timeout=timeout_s
            )
            if not metadata.inputs or metadata.inputs[0].datatype != "BYTES":
                raise FailedPrecondition(f"the OIP fallback's {model} takes no text (BYTES) input")
            first = metadata.inputs[0]
            self._inputs[model] = (first.name, max(1, len(first.shape)))
        return self._inputs[model]


def _reply(envelope: env.Envelope, tensor: env.Tensor) -> env.Reply:
    """The fallback's answer as local inference gives it, marked as the cloud's."""
    reply = env.Reply(
        envelope_id=envelope.id,
        backend=env.BACKEND_FALLBACK,
        model=envelope.route.model,
        version=FALLBACK_VERSION,
    )
    reply.created_at.GetCurrentTime()
    reply.parts.add(tensor=tensor)
    return reply


# Either kind of cloud fallback; the pipeline and the assistant use them alike.
Fallback = CloudFallback | OipFallback


def make_fallback(protocol: str, settings: FallbackSettings) -> Fallback:
    """The fallback that speaks `protocol`: "oip" (gRPC), else OpenAI-compatible HTTP."""
    return OipFallback(settings) if protocol == "oip" else CloudFallback(settings)
