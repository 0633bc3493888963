"""HTTP, OpenAI-compatible: `/v1/models` and `/v1/embeddings`, so the official SDKs work.

Each request becomes an Envelope for the shared pipeline. The API key the
SDK sends (`Authorization: Bearer ...`) is the caller's edgegate token.
Errors come back in OpenAI's shape, `{"error": {"message", "type", "param",
"code"}}`, with the HTTP status OpenAI uses for the same case, because the
SDKs raise their typed exceptions from that status.
"""

from __future__ import annotations

import asyncio
import base64
import math
import time
from collections.abc import Awaitable, Callable

import numpy as np
from aiohttp import web
from aiohttp.typedefs import Middleware

from edgegate_common.errors import (
    Code,
    EdgegateError,
    Internal,
    InvalidArgument,
    Unauthenticated,
    retry_after_s,
)
from edgegate_common.logging import get_logger
from edgegate_gateway.adapters.chat_http import ChatHttp
from edgegate_gateway.adapters.http_json import error_response, field, json_object, text_inputs
from edgegate_gateway.adapters.tasks_http import BACKEND_NAMES, TasksHttp
from edgegate_gateway.adapters.taskstore_client import TaskstoreClient
from edgegate_gateway.assistant import Assistant
from edgegate_gateway.core.rules import ASSISTANT
from edgegate_gateway.pipeline import Pipeline
from edgegate_protos.common.v1 import envelope_pb2 as env

log = get_logger(__name__)

# The status and error type OpenAI answers with for each kind of failure.
_HTTP: dict[Code, tuple[int, str]] = {
    Code.INVALID_ARGUMENT: (400, "invalid_request_error"),
    Code.OUT_OF_RANGE: (400, "invalid_request_error"),
    Code.FAILED_PRECONDITION: (400, "invalid_request_error"),
    Code.UNAUTHENTICATED: (401, "authentication_error"),
    Code.PERMISSION_DENIED: (403, "permission_error"),
    Code.NOT_FOUND: (404, "not_found_error"),
    Code.RESOURCE_EXHAUSTED: (429, "rate_limit_error"),
    Code.UNAVAILABLE: (503, "service_unavailable"),
    Code.DEADLINE_EXCEEDED: (504, "timeout"),
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_app(
    pipeline: Pipeline,
    *,
    taskstore: TaskstoreClient,
    max_body_bytes: int,
    body_timeout_s: float = 30.0,
    assistant: Assistant | None = None,
) -> web.Application:
    """The HTTP app; every route's body must arrive whole within `body_timeout_s`."""
    app = web.Application(
        client_max_size=max_body_bytes,
        middlewares=[_errors, _body_within(body_timeout_s), _strangers_first(pipeline)],
    )
    api = OpenAiHttp(pipeline, assistant_model=ASSISTANT if assistant else None)
    app.router.add_get("/v1/models", api.models)
    app.router.add_post("/v1/embeddings", api.embeddings)
    TasksHttp(pipeline, taskstore=taskstore).add_routes(app)
    if assistant is not None:
        ChatHttp(assistant).add_routes(app)
    return app


class OpenAiHttp:
    def __init__(self, pipeline: Pipeline, *, assistant_model: str | None) -> None:
        self._pipeline = pipeline
        self._assistant_model = assistant_model

    async def models(self, request: web.Request) -> web.Response:
        await self._pipeline.authenticate(request.headers.get("Authorization", ""))
        names = self._pipeline.models() + ([self._assistant_model] if self._assistant_model else [])
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "edgegate"} for name in names
        ]
        return web.json_response({"object": "list", "data": data})

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        model = field(body, "model", str)
        texts = text_inputs(body.get("input"))
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise InvalidArgument(
                "encoding_format must be 'float' or 'base64'",
                details={"param": "encoding_format"},
            )
        if body.get("dimensions") is not None:
            raise InvalidArgument(
                "dimensions is not supported: the model's own size is returned",
                details={"param": "dimensions"},
            )
        envelope = env.Envelope(channel=env.CHANNEL_HTTP, route=env.RouteHint(model=model))
        envelope.metadata["openai.endpoint"] = "embeddings"
        for text in texts:
            envelope.parts.add(text=text)
        handled = await self._pipeline.handle(
            envelope, credential=request.headers.get("Authorization", "")
        )
        reply = handled.reply
        vectors = _embedding_rows(reply, expected=len(texts))
        data = [
            {"object": "embedding", "index": i, "embedding": _encode(row, encoding)}
            for i, row in enumerate(vectors)
        ]
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": model,
                # Token counts are not reported by the inference service yet.
                "usage": {"prompt_tokens": 0, "total_tokens": 0},
            },
            headers={
                "Edgegate-Backend": BACKEND_NAMES.get(reply.backend, "local"),
                "Edgegate-Model-Version": reply.version,
            },
        )


def _body_within(timeout_s: float) -> Middleware:
    """A client that trickles its body (or stops sending it) gets 408, not a held connection."""

    @web.middleware
    async def read_body(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.can_read_body:
            try:
                async with asyncio.timeout(timeout_s):
                    await request.read()  # kept: the handler's read returns it at once
            except TimeoutError:
                raise web.HTTPRequestTimeout(
                    reason=f"the request body did not arrive within {timeout_s:g} s"
                ) from None
        return await handler(request)

    return read_body


# Refusals of what a request holds: a stranger is told UNAUTHENTICATED instead.
_ABOUT_THE_REQUEST = frozenset(
    {Code.INVALID_ARGUMENT, Code.OUT_OF_RANGE, Code.FAILED_PRECONDITION, Code.NOT_FOUND}
)
_BEARER = "/v1/"  # the routes that take the caller's bearer token


def _strangers_first(pipeline: Pipeline) -> Middleware:
    """A refusal of what a request holds goes to a known caller only: anyone else gets
    401, as if the token had been checked first.

    Handlers check a request's shape before the security service sees it (it
    admits a message and authenticates its sender in one round trip), and the
    taskstore checks its own. That order must not tell a stranger which models
    exist or what a request should look like, so a 400 or 404 on a route that
    takes a bearer token is given only once the token authenticates. Only a
    refusal pays the extra round trip; if security cannot answer, it stands.
    """

    @web.middleware
    async def authenticated(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except EdgegateError as refused:
            if refused.code not in _ABOUT_THE_REQUEST or not request.path.startswith(_BEARER):
                raise
            try:
                await pipeline.authenticate(request.headers.get("Authorization", ""))
            except Unauthenticated:
                raise
            except EdgegateError:
                pass  # security cannot tell now: the refusal stands
            raise

    return authenticated


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # aiohttp's own refusals (413 body too large, 404 no route, 405): OpenAI's shape too.
        return error_response(exc.status, "invalid_request_error", exc.reason, None)
    except EdgegateError as exc:
        status, kind = _HTTP.get(exc.code, (500, "server_error"))
        response = error_response(status, kind, exc.message, exc.details.get("param"))
        response.headers.update(retry_headers(exc))
        return response
    except Exception:
        log.exception("http request failed", path=request.path)
        internal = Internal("the gateway failed; see its log")
        return error_response(500, "server_error", internal.message, None)
    finally:
        log.debug("http", path=request.path, ms=round((time.perf_counter() - started) * 1000, 2))


def retry_headers(error: EdgegateError) -> dict[str, str]:
    """When to try again, for a refusal that may pass later (every 429 and 503).

    `Retry-After` in whole seconds (RFC 9110), and `retry-after-ms`, which the
    OpenAI SDKs read first and honour to the millisecond.
    """
    wait_s = retry_after_s(error)
    if wait_s is None:
        return {}
    return {
        "Retry-After": str(max(1, math.ceil(wait_s))),
        "retry-after-ms": str(round(wait_s * 1000)),
    }


def _embedding_rows(reply: env.Reply, *, expected: int) -> np.ndarray:
    tensors = [p.tensor for p in reply.parts if p.WhichOneof("content") == "tensor"]
    if len(tensors) != 1 or tensors[0].datatype != "FP32" or len(tensors[0].shape) != 2:
        raise InvalidArgument(
            "the model does not return one FP32 [batch, dim] embedding; "
            "use it through the inference API instead"
        )
    tensor = tensors[0]
    rows = np.frombuffer(tensor.raw_data, dtype="<f4").reshape(tuple(tensor.shape))
    if rows.shape[0] != expected:
        raise Internal(f"the model answered {rows.shape[0]} embeddings for {expected} inputs")
    return rows


def _encode(row: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(row.astype("<f4").tobytes()).decode("ascii")
    return [float(x) for x in row]
