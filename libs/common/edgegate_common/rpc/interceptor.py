"""The one server interceptor: tracing, metrics and domain errors → status codes.

Servicers hold no try/except for domain errors: they raise `EdgegateError`
subclasses and this interceptor turns them into the matching gRPC status with
the error's message. Anything unexpected becomes INTERNAL with a generic
message (the traceback goes to the log, never to the caller). A request whose
bytes do not parse as the method's message (garbage, a string field that is
not UTF-8) is INVALID_ARGUMENT naming the message type, where grpc alone
would answer UNKNOWN with the parser's exception.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from grpc.aio import AbortError
from opentelemetry import trace

from edgegate_common import telemetry
from edgegate_common.errors import Code, EdgegateError, InvalidArgument
from edgegate_common.logging import get_logger
from edgegate_common.metrics import RpcMetrics
from edgegate_common.rpc.status import trailing_metadata

log = get_logger(__name__)

STATUS_FOR_CODE: dict[Code, grpc.StatusCode] = {code: grpc.StatusCode[code.name] for code in Code}

# Behaviours as grpc.aio calls them: (request or request iterator, context) -> reply or stream.
Behavior = Callable[..., Any]

if TYPE_CHECKING:  # grpc's classes are generic only in their stubs
    Context = grpc.aio.ServicerContext[Any, Any]
    Handler = grpc.RpcMethodHandler[Any, Any]
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    Context = grpc.aio.ServicerContext
    Handler = grpc.RpcMethodHandler
    _Interceptor = grpc.aio.ServerInterceptor


def status_code(error: EdgegateError) -> grpc.StatusCode:
    return STATUS_FOR_CODE[error.code]


class ServiceInterceptor(_Interceptor):
    def __init__(self, *, metrics: RpcMetrics | None = None) -> None:
        self._metrics = metrics
        self._tracer = trace.get_tracer("edgegate.rpc")

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler: Handler | None = await continuation(details)
        if handler is None:  # no such method: grpc answers UNIMPLEMENTED
            return None  # type: ignore[return-value]
        method: str = details.method
        service, _, name = method.lstrip("/").rpartition("/")
        metadata = {k: v for k, v in (details.invocation_metadata or ()) if isinstance(v, str)}
        call = _Call(self, service=service, method=name, metadata=metadata)
        parse = _lenient(handler.request_deserializer)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                call.wrap_unary(handler.unary_unary),
                request_deserializer=parse,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                call.wrap_unary(handler.stream_unary, streaming=True),
                request_deserializer=parse,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                call.wrap_stream(handler.unary_stream),
                request_deserializer=parse,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is None:
            return handler
        return grpc.stream_stream_rpc_method_handler(
            call.wrap_stream(handler.stream_stream, streaming=True),
            request_deserializer=parse,
            response_serializer=handler.response_serializer,
        )


class _Undecodable:
    """Stands for request bytes the method's message type could not parse."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    def error(self) -> InvalidArgument:
        return InvalidArgument(f"the request is not a valid {self.type_name} message")


def _lenient(parse: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """`parse`, returning an `_Undecodable` where it would raise (see the module doc)."""
    if parse is None:
        return None
    owner = getattr(parse, "__self__", None)  # `Message.FromString` of the request's type
    type_name = getattr(getattr(owner, "DESCRIPTOR", None), "full_name", "request")

    def lenient(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception:
            return _Undecodable(type_name)

    return lenient


def _checked(request: Any, *, streaming: bool) -> Any:
    """The request, or its stream, raising INVALID_ARGUMENT at an undecodable message."""
    if not streaming:
        if isinstance(request, _Undecodable):
            raise request.error()
        return request

    async def messages() -> AsyncIterator[Any]:
        async for message in request:
            if isinstance(message, _Undecodable):
                raise message.error()
            yield message

    return messages()


class _Call:
    """One intercepted method: opens the span, records metrics, maps errors."""

    def __init__(
        self, owner: ServiceInterceptor, *, service: str, method: str, metadata: dict[str, str]
    ) -> None:
        self._owner = owner
        self._service = service
        self._method = method
        self._metadata = metadata

    def wrap_unary(self, behavior: Behavior, *, streaming: bool = False) -> Behavior:
        async def wrapped(request: Any, context: Context) -> Any:
            with self._span() as span:
                started, cancelled = time.perf_counter(), False
                try:
                    return await behavior(_checked(request, streaming=streaming), context)
                except asyncio.CancelledError:
                    cancelled = True  # the client went away or its deadline passed
                    raise
                except Exception as exc:
                    await self._fail(exc, context, span)
                    raise  # unreachable: _fail aborts or re-raises
                finally:
                    self._record(context, started, cancelled=cancelled)

        return wrapped

    def wrap_stream(self, behavior: Behavior, *, streaming: bool = False) -> Behavior:
        async def wrapped(request: Any, context: Context) -> AsyncIterator[Any]:
            with self._span() as span:
                started, cancelled = time.perf_counter(), False
                try:
                    responses = behavior(_checked(request, streaming=streaming), context)
                    if inspect.isawaitable(responses):
                        await responses  # a servicer that sends with context.write()
                    else:
                        async for response in responses:
                            yield response
                except asyncio.CancelledError:
                    cancelled = True
                    raise
                except Exception as exc:
                    await self._fail(exc, context, span)
                finally:
                    self._record(context, started, cancelled=cancelled)

        return wrapped

    def _span(self) -> Any:
        return self._owner._tracer.start_as_current_span(
            f"{self._service}/{self._method}",
            context=telemetry.extract(self._metadata),
            kind=trace.SpanKind.SERVER,
            attributes={
                "rpc.system": "grpc",
                "rpc.service": self._service,
                "rpc.method": self._method,
            },
        )

    async def _fail(self, exc: Exception, context: Context, span: trace.Span) -> None:
        if isinstance(exc, AbortError):
            raise exc  # the servicer already chose a status
        if isinstance(exc, EdgegateError):
            span.set_status(trace.StatusCode.ERROR, exc.message)
            await context.abort(status_code(exc), exc.message, trailing_metadata(exc))
        chosen = context.code()
        if isinstance(chosen, grpc.StatusCode) and chosen != grpc.StatusCode.OK:
            # Set on the context before raising, as generated base servicers do
            # for UNIMPLEMENTED: the servicer's choice stands.
            span.set_status(trace.StatusCode.ERROR, chosen.name)
            await context.abort(chosen, context.details() or chosen.name)
        span.record_exception(exc)
        span.set_status(trace.StatusCode.ERROR, type(exc).__name__)
        log.exception("grpc handler failed", method=f"{self._service}/{self._method}")
        await context.abort(grpc.StatusCode.INTERNAL, f"{self._method} failed; see the service log")

    def _record(self, context: Context, started: float, *, cancelled: bool) -> None:
        metrics = self._owner._metrics
        if metrics is None:
            return
        code: grpc.StatusCode | None = context.code()
        if isinstance(code, grpc.StatusCode):
            name = code.name
        else:
            name = "CANCELLED" if cancelled else "OK"
        metrics.observe_handled(self._service, self._method, name, time.perf_counter() - started)
