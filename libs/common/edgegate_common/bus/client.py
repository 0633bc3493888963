"""`Bus`: protobuf request/reply, publishing and JetStream access over NATS.

A thin layer over nats-py that adds what every edgegate call needs: protobuf
bodies, a deadline, W3C trace context, and errors that cross process
boundaries as typed exceptions. It is the only door to the connection:
besides request/reply there are plain `subscribe` and `publish` (nats-py's
errors pass through), `publish_best_effort` for messages nobody must wait
for (a failure is logged and counted, never raised), and `js` for JetStream.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from google.protobuf.message import DecodeError, Message
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import PubAck
from opentelemetry import context as otel_context
from opentelemetry import trace

from edgegate_common import telemetry
from edgegate_common.bus import headers as hdr
from edgegate_common.errors import (
    DeadlineExceeded,
    EdgegateError,
    Internal,
    InvalidArgument,
    NoResponders,
    ResourceExhausted,
    Unavailable,
)
from edgegate_common.logging import get_logger
from edgegate_common.metrics import BusMetrics

Req = TypeVar("Req", bound=Message)
Rep = TypeVar("Rep", bound=Message)

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What a handler knows about the request besides its body."""

    subject: str
    headers: Mapping[str, str]
    deadline_s: float | None  # absolute, epoch seconds

    def remaining_s(self) -> float | None:
        return None if self.deadline_s is None else self.deadline_s - time.time()


Handler = Callable[[Req, RequestContext], Awaitable[Rep]]
ConnectionListener = Callable[[bool], None]


class Bus:
    """One NATS connection, shared by everything in a process."""

    def __init__(self, nc: NatsClient, *, metrics: BusMetrics | None = None) -> None:
        self._nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self._metrics = metrics
        self._tracer = trace.get_tracer("edgegate.bus")
        self._inflight: set[asyncio.Task[None]] = set()
        self._subscriptions: list[Subscription] = []

    @classmethod
    async def connect(
        cls,
        *,
        servers: list[str],
        name: str,
        connect_timeout_s: float = 30.0,
        tls: ssl.SSLContext | None = None,
        on_connection_change: ConnectionListener | None = None,
        metrics: BusMetrics | None = None,
    ) -> Bus:
        """Connect, retrying until `connect_timeout_s`; afterwards reconnect forever."""

        async def disconnected() -> None:
            if nc.is_closed or nc.is_draining:
                return  # our own close(), not an outage
            log.warning("nats disconnected")
            if on_connection_change:
                on_connection_change(False)

        async def reconnected() -> None:
            log.info(
                "nats reconnected", url=str(nc.connected_url.geturl() if nc.connected_url else "")
            )
            if on_connection_change:
                on_connection_change(True)

        async def error(exc: Exception) -> None:
            log.debug("nats connection error", error=repr(exc))

        nc = NatsClient()
        try:
            # With unlimited reconnects nats-py keeps retrying the first connect
            # too; bound the whole attempt instead.
            await asyncio.wait_for(
                nc.connect(
                    servers=servers,
                    name=name,
                    tls=tls,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    # nats-py annotates these as int; it takes seconds as floats.
                    reconnect_time_wait=0.5,  # type: ignore[arg-type]
                    connect_timeout=min(2.0, connect_timeout_s),  # type: ignore[arg-type]
                    disconnected_cb=disconnected,
                    reconnected_cb=reconnected,
                    error_cb=error,
                ),
                timeout=connect_timeout_s,
            )
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            await nc.close()
            raise Unavailable(
                f"cannot reach NATS at {', '.join(servers)} within {connect_timeout_s:g}s"
            ) from exc
        log.info("nats connected", url=servers)
        if on_connection_change:
            on_connection_change(True)
        return cls(nc, metrics=metrics)

    # -- request / reply -------------------------------------------------

    async def request(
        self,
        subject: str,
        message: Message,
        reply_type: type[Rep],
        *,
        timeout_s: float = 5.0,
        headers: Mapping[str, str] | None = None,
    ) -> Rep:
        """Send `message`, wait for one reply of `reply_type`; raise typed errors.

        `headers` go along as they are (an `Authorization` for an admin call, say).
        """
        if not self._nc.is_connected:
            raise Unavailable(f"not connected to NATS; cannot send to {subject}")
        if telemetry.in_unsampled_trace():
            # Nobody records this trace: carry its ids on, skip building a span.
            return await self._request(subject, message, reply_type, timeout_s, headers)
        with self._tracer.start_as_current_span(
            f"send {subject}",
            kind=trace.SpanKind.CLIENT,
            attributes={"messaging.destination.name": subject},
        ):
            return await self._request(subject, message, reply_type, timeout_s, headers)

    async def _request(
        self,
        subject: str,
        message: Message,
        reply_type: type[Rep],
        timeout_s: float,
        extra: Mapping[str, str] | None,
    ) -> Rep:
        headers = {
            **(extra or {}),
            hdr.TIMEOUT: hdr.encode_timeout(timeout_s),
            hdr.BODY_TYPE: message.DESCRIPTOR.full_name,
        }
        telemetry.inject(headers)
        try:
            msg = await self._nc.request(
                subject, message.SerializeToString(), timeout=timeout_s, headers=headers
            )
        except nats.errors.NoRespondersError:
            raise NoResponders(f"no service is listening on {subject}") from None
        except nats.errors.TimeoutError:
            raise DeadlineExceeded(f"no reply on {subject} within {timeout_s:g}s") from None
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError) as exc:
            raise Unavailable(f"NATS connection lost while calling {subject}") from exc
        remote_error = hdr.decode_error(msg.headers)
        if remote_error is not None:
            raise remote_error
        try:
            return reply_type.FromString(msg.data)
        except DecodeError as exc:
            raise Internal(f"unreadable {reply_type.__name__} reply from {subject}") from exc

    async def serve(
        self,
        subject: str,
        request_type: type[Req],
        handler: Handler[Req, Rep],
        *,
        queue: str = "",
    ) -> Subscription:
        """Answer requests on `subject` with `handler`; each runs in its own task.

        Replicas that pass the same `queue` share the load: each request
        reaches one of them. A request's task is cancelled at its deadline:
        the caller has stopped waiting, so the work stops too.
        """
        return await self.serve_many(subject, {request_type: handler}, queue=queue)

    async def serve_many(
        self,
        subject: str,
        handlers: Mapping[type[Message], Handler[Any, Any]],
        *,
        queue: str = "",
    ) -> Subscription:
        """Like `serve`, for a subject that accepts several request types.

        The `Edgegate-Body-Type` header (which `request` sets) picks the
        handler; without it, the first one. A body type the subject does not
        take is an INVALID_ARGUMENT that names the ones it does.
        """
        loop = asyncio.get_running_loop()
        by_name = {t.DESCRIPTOR.full_name: (t, h) for t, h in handlers.items()}
        default = next(iter(by_name.values()))

        async def on_message(msg: Msg) -> None:
            timeout_s = hdr.decode_timeout(msg.headers)
            deadline_s = None if timeout_s is None else time.time() + timeout_s
            body_type = (msg.headers or {}).get(hdr.BODY_TYPE)
            chosen = default if body_type is None else by_name.get(body_type)
            task = loop.create_task(self._handle(msg, subject, deadline_s, chosen, by_name))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            if timeout_s is not None:
                timer = loop.call_later(timeout_s, task.cancel)
                task.add_done_callback(lambda _: timer.cancel())

        subscription = await self._nc.subscribe(subject, queue=queue, cb=on_message)
        self._subscriptions.append(subscription)
        # Once serve() returns, a request from any connection must reach us.
        await self._nc.flush()
        return subscription

    async def _handle(
        self,
        msg: Msg,
        pattern: str,
        deadline_s: float | None,
        chosen: tuple[type[Message], Handler[Any, Any]] | None,
        accepted: Mapping[str, object],
    ) -> None:
        # Spans and metrics are named by the subscribed pattern, not the concrete
        # subject: tokens such as tenant ids must not become label values.
        started = time.perf_counter()
        parent = telemetry.extract(msg.headers)
        code = "DEADLINE_EXCEEDED"
        try:
            if telemetry.in_unsampled_trace(parent):
                # Nobody records this trace: adopt the caller's context (logs
                # carry its trace id) without building a span of our own.
                token = otel_context.attach(parent)
                try:
                    code = await self._respond(msg, deadline_s, chosen, accepted)
                finally:
                    otel_context.detach(token)
            else:
                with self._tracer.start_as_current_span(
                    f"process {pattern}",
                    context=parent,
                    kind=trace.SpanKind.SERVER,
                    attributes={"messaging.destination.name": msg.subject},
                ):
                    code = await self._respond(msg, deadline_s, chosen, accepted)
        except asyncio.CancelledError:
            # Our own task, cancelled by its deadline timer (or by the loop
            # shutting down): the caller has stopped waiting; nobody to answer.
            log.debug("nats request abandoned at its deadline", subject=msg.subject)
        if self._metrics:
            self._metrics.observe_handled(pattern, code, time.perf_counter() - started)

    async def _respond(
        self,
        msg: Msg,
        deadline_s: float | None,
        chosen: tuple[type[Message], Handler[Any, Any]] | None,
        accepted: Mapping[str, object],
    ) -> str:
        """Run the handler and publish its reply; return the result code."""
        ctx = RequestContext(subject=msg.subject, headers=msg.headers or {}, deadline_s=deadline_s)
        reply_headers: dict[str, str] | None = None
        try:
            if deadline_s is not None and deadline_s <= time.time():
                raise DeadlineExceeded(f"deadline passed before {msg.subject} was handled")
            if chosen is None:
                raise InvalidArgument(
                    f"{msg.subject} does not take {ctx.headers.get(hdr.BODY_TYPE)}; "
                    f"it takes {sorted(accepted)}"
                )
            request_type, handler = chosen
            try:
                request = request_type.FromString(msg.data)
            except DecodeError:
                raise InvalidArgument(
                    f"{msg.subject} expects a {request_type.DESCRIPTOR.full_name}"
                ) from None
            body = (await handler(request, ctx)).SerializeToString()
        except EdgegateError as exc:
            body, reply_headers = b"", hdr.encode_error(exc)
        except Exception:
            log.exception("nats handler failed", subject=msg.subject)
            error = Internal(f"{msg.subject} failed; see the service log")
            body, reply_headers = b"", hdr.encode_error(error)
        if len(body) > self._nc.max_payload:
            too_big = ResourceExhausted(
                f"reply of {len(body)} bytes exceeds the NATS max payload of {self._nc.max_payload}"
            )
            body, reply_headers = b"", hdr.encode_error(too_big)
        if msg.reply:
            try:
                await self._nc.publish(msg.reply, body, headers=reply_headers)
            except (nats.errors.Error, OSError) as exc:
                log.warning("nats reply not delivered", subject=msg.subject, error=repr(exc))
                return "UNAVAILABLE"
        return reply_headers[hdr.ERROR_CODE] if reply_headers else "OK"

    async def unsubscribe(self, subscription: Subscription, *, drain: bool = True) -> None:
        """Stop one subscription (`serve`'s or `subscribe`'s); never raises.

        `drain`: messages already received are still handled (requests still
        answered); without it they are dropped, and nothing waits for the server.
        """
        with contextlib.suppress(ValueError):
            self._subscriptions.remove(subscription)
        try:
            if drain:
                await subscription.drain()  # type: ignore[no-untyped-call]
            else:
                await subscription.unsubscribe()
        except (nats.errors.Error, OSError) as exc:
            # Closed or reconnecting: the server forgets the subscription with the connection.
            log.debug("nats unsubscribe failed", subject=subscription.subject, error=repr(exc))

    # -- plain messages --------------------------------------------------

    async def subscribe(
        self, subject: str, *, cb: Callable[[Msg], Awaitable[None]], queue: str = ""
    ) -> Subscription:
        """Call `cb` with every message on `subject` (no protobuf, no replies).

        In effect on the server once a later `flush` returns; stop it with
        `unsubscribe`.
        """
        return await self._nc.subscribe(subject, queue=queue, cb=cb)

    async def publish(
        self,
        subject: str,
        payload: bytes,
        *,
        reply: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Publish `payload` as it is; nats-py's errors pass through.

        For what its caller must know was sent (a JetStream publish it waits
        for acks of, a pull request). A message nobody waits for goes through
        `publish_best_effort`.
        """
        await self._nc.publish(
            subject, payload, reply=reply, headers=dict(headers) if headers else None
        )

    async def publish_best_effort(
        self,
        subject: str,
        message: Message | bytes,
        *,
        kind: str,
        headers: Mapping[str, str] | None = None,
    ) -> bool:
        """Publish a message nobody waits for (an event, a snapshot); never raises.

        A failure (the connection closed, its buffer full, the payload too
        big) is logged and counted in `edgegate_nats_publish_failures_total`
        under `kind`: a fixed word the caller names the message by (such as
        `breaker_event`), never a subject, whose model or tenant tokens would
        make the label unbounded. While NATS reconnects nats-py buffers what
        is published, so most of an outage fails nothing here. Returns
        whether the message left.
        """
        payload = message if isinstance(message, bytes) else message.SerializeToString()
        try:
            await self.publish(subject, payload, headers=headers)
        except (nats.errors.Error, OSError) as exc:
            log.warning("nats publish failed", subject=subject, kind=kind, error=repr(exc))
            if self._metrics:
                self._metrics.publish_failed(kind)
            return False
        return True

    def new_inbox(self) -> str:
        """A subject nobody else uses: a prefix for the replies to our own publishes."""
        return self._nc.new_inbox()

    async def flush(self, *, timeout_s: float = 5.0) -> None:
        """Wait until the server has taken everything sent so far (subscriptions too)."""
        await self._nc.flush(timeout=timeout_s)  # type: ignore[arg-type]

    # -- durable publishing ----------------------------------------------

    async def publish_durable(
        self, subject: str, message: Message, *, msg_id: str, timeout_s: float = 5.0
    ) -> PubAck:
        """Store `message` in the JetStream stream that captures `subject`.

        `msg_id` goes out as `Nats-Msg-Id`: a retry with the same id inside
        the stream's duplicate window is stored once (the ack says
        `duplicate=True`), which makes retrying after a lost ack safe.
        """
        if not msg_id:
            raise InvalidArgument("a durable publish needs a non-empty msg_id")
        headers = {hdr.MSG_ID: msg_id}
        telemetry.inject(headers)
        try:
            return await self.js.publish(
                subject, message.SerializeToString(), timeout=timeout_s, headers=headers
            )
        except nats.js.errors.NoStreamResponseError:
            raise NoResponders(f"no JetStream stream captures {subject}") from None
        except nats.errors.TimeoutError:
            raise DeadlineExceeded(
                f"JetStream did not ack {subject} within {timeout_s:g}s"
            ) from None
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError) as exc:
            raise Unavailable(f"NATS connection lost while storing {subject}") from exc

    # -- lifecycle -------------------------------------------------------

    @property
    def connected(self) -> bool:
        return bool(self._nc.is_connected)

    def server(self) -> dict[str, str]:
        """The server this connection is on: its address (no credentials) and version."""
        url = self._nc.connected_url
        address = f"{url.scheme}://{url.hostname}:{url.port}" if url is not None else ""
        try:
            v = self._nc.connected_server_version
            version = f"{v.major}.{v.minor}.{v.patch}"
        except (ValueError, AttributeError, TypeError):  # not connected yet
            version = ""
        return {"server": address, "version": version}

    @property
    def max_payload(self) -> int:
        """The largest message the server takes, in bytes (its `max_payload`)."""
        return self._nc.max_payload

    async def stop_serving(self, *, timeout_s: float = 5.0) -> None:
        """Stop taking requests and finish those in flight; the connection stays up.

        Subscriptions drain (messages already received still get their task),
        then handlers get up to `timeout_s` to reply. What the handlers used
        (an audit log, a model) can close after this, while it can still
        publish; `close` then disconnects.
        """
        for subscription in list(self._subscriptions):
            await self.unsubscribe(subscription)
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=timeout_s)

    async def close(self, *, timeout_s: float = 5.0) -> None:
        """Stop taking requests, finish those in flight, flush, disconnect.

        Subscriptions drain first (messages already received still get their
        task), then handlers get up to `timeout_s` to reply, then the
        connection drains its outgoing buffer and closes.
        """
        if self._nc.is_closed:
            return
        await self.stop_serving(timeout_s=timeout_s)
        try:
            await self._nc.drain()
        except (nats.errors.Error, TimeoutError):
            await self._nc.close()
