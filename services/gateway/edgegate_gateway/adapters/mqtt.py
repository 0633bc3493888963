"""MQTT: devices publish requests to a broker, the gateway publishes their replies.

Topics, under a prefix (`edgegate/v1` by default):

- `<prefix>/<device>/request`: a JSON message (`json_messages.py`) with an
  optional `id`, echoed in every reply about it.
- `<prefix>/<device>/reply`: `{"type": "queued", "id", "task_id"}` when the
  message waits in the taskstore, `{"type": "result", "id", "task"}` when it
  finished (answered at once or later), `{"type": "error", "id", "code",
  "message"}` when it was refused.

Devices are authenticated by the broker; the gateway admits their messages
with one configured edgegate token (`mqtt_credential`), and the device is
the conversation. A request is acknowledged to the broker (QoS 1) only once
its task is stored (or it is refused for good); while a service it needs
is unavailable, the gateway keeps retrying and the broker keeps the request.
Without an `idempotency_key` the key is `<device>/<id>`, so that redelivery
is the same task; a request with neither may run twice if the gateway dies
while handling it.

Results come from the taskstore's events through one durable JetStream
consumer shared by every gateway replica: each finished task is published
by whichever replica takes it, and results that finish while every gateway
is down are published when one returns. A device away from the broker gets
them when it returns if its own session is persistent (QoS 1, not a clean
session): MQTT's resume.

What gRPC `Converse` and WebSocket share comes from the session
(`sessions.py`), one per broker connection: at most 32 requests are
handled at once (past that the gateway stops reading), a request's `queued`
comes before its result (where one replica handles both), a replica
publishes each task's result once, and a repeated request whose task
finished before gets `queued` (if deferred) and then its result again,
unless this replica published it already (a device that resends may have
missed it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import aiomqtt
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from edgegate_common import subjects
from edgegate_common.bus import Bus
from edgegate_common.errors import EdgegateError, Internal, InvalidArgument, Unavailable
from edgegate_common.logging import get_logger
from edgegate_gateway.adapters.http_json import text_field
from edgegate_gateway.adapters.json_messages import error_frame, frame_object, message_envelope
from edgegate_gateway.adapters.tasks_http import task_json
from edgegate_gateway.conversations import Ack, Conversations, Result
from edgegate_gateway.sessions import Session
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.common.v1 import principal_pb2
from edgegate_protos.taskstore.v1 import taskstore_pb2 as tpb

log = get_logger(__name__)

RECONNECT_S = (0.5, 10.0)  # first and longest wait between broker connection attempts
ID_METADATA = "mqtt.id"


@dataclass(frozen=True, slots=True)
class MqttSettings:
    host: str
    port: int
    prefix: str
    credential: str
    client_id: str
    username: str | None = None
    password: str | None = None


def device_of(topic: str, prefix: str) -> str | None:
    """The device a request topic names, or None if it is not a request topic."""
    head, _, rest = topic.partition(prefix + "/")
    device, _, tail = rest.partition("/")
    if head or tail != "request" or not device:
        return None
    return device


def read_request(frame: dict[str, Any], device: str) -> tuple[env.Envelope, bool, str]:
    """The envelope a request asks for, whether to defer it, and its `id`."""
    message_id = text_field(frame, "id", required=False)
    envelope, defer = message_envelope(frame, env.CHANNEL_MQTT, device)
    if not envelope.idempotency_key and message_id:
        envelope.idempotency_key = f"{device}/{message_id}"
    envelope.metadata[ID_METADATA] = message_id
    return envelope, defer, message_id


@dataclass(frozen=True, slots=True)
class _Request:
    """A request as the broker delivered it: acknowledged to it once settled."""

    client: aiomqtt.Client  # the connection it came on (message ids are per connection)
    message: aiomqtt.Message
    device: str | None
    id: str = ""


class MqttAdapter:
    """One session for the broker connection: every device's requests share its in-flight cap
    and its memory of results published, and each reply goes to the topic of its device."""

    def __init__(self, settings: MqttSettings, *, bus: Bus, conversations: Conversations) -> None:
        self._settings = settings
        self._bus = bus
        self._conversations = conversations
        self._replies = _Replies(settings.prefix)
        self._session = Session(
            conversations, self._replies, credential=settings.credential, redelivered=True
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._subscription: Any = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._receive()), loop.create_task(self._deliver())]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._session.close()  # requests not settled: the broker delivers them again
        if self._subscription is not None:
            # A pull subscription left open keeps the connection's drain waiting.
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()

    # Requests in

    async def _receive(self) -> None:
        """Stay connected to the broker, subscribed to every device's requests."""
        s = self._settings
        wait_s = RECONNECT_S[0]
        while True:
            client = aiomqtt.Client(
                s.host,
                s.port,
                identifier=s.client_id,
                username=s.username,
                password=s.password,
                clean_session=False,  # the broker keeps requests while the gateway is away
            )
            # aiomqtt does not expose paho's manual acknowledgement; the broker
            # must not count a request delivered before its task is stored.
            client._client.manual_ack_set(True)
            try:
                async with client:
                    # A shared subscription: replicas take turns, none sees a request twice.
                    await client.subscribe(f"$share/edgegate/{s.prefix}/+/request", qos=1)
                    self._replies.connected(client)
                    log.info("mqtt subscribed", host=s.host, port=s.port, prefix=s.prefix)
                    wait_s = RECONNECT_S[0]
                    async for message in client.messages:
                        await self._take(client, message)
            except aiomqtt.MqttError as exc:
                log.warning("mqtt broker unreachable", error=str(exc), retry_in_s=wait_s)
            finally:
                self._replies.connected(None)
            await asyncio.sleep(wait_s)
            wait_s = min(wait_s * 2, RECONNECT_S[1])

    async def _take(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        """Read one request and hand it to the session, which waits while too many run."""
        device = device_of(str(message.topic), self._settings.prefix)
        request = _Request(client, message, device)
        try:
            if device is None:
                raise InvalidArgument(f"{message.topic} is not a request topic")
            payload = message.payload if isinstance(message.payload, bytes) else b""
            frame = frame_object(payload)
            if isinstance(frame.get("id"), str):  # echoed even when the rest is refused
                request = _Request(client, message, device, frame["id"])
            envelope, defer, _ = read_request(frame, device)
        except EdgegateError as exc:
            await self._replies.error(request, exc)
            return
        except Exception:
            log.exception("mqtt request unreadable", topic=str(message.topic))
            await self._replies.error(request, Internal("the gateway failed; see its log"))
            return
        await self._session.submit(envelope, defer=defer, ref=request)

    # Results out

    async def _deliver(self) -> None:
        """Publish every finished MQTT task's result to its device, once across replicas."""
        while True:
            try:
                if self._subscription is not None:  # the last one stopped: let it go first
                    with contextlib.suppress(Exception):
                        await self._subscription.unsubscribe()
                self._subscription = await self._results()
                await self._deliver_from(self._subscription)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("mqtt results stopped; starting again")
                await asyncio.sleep(2.0)

    async def _results(self) -> Any:
        """The durable consumer of the devices' results, shared by every gateway replica."""
        principal = await self._principal()
        durable = (
            "edgegate-mqtt-"
            + hashlib.sha256(f"{principal.tenant}\0{principal.subject}".encode()).hexdigest()[:20]
        )
        while True:
            try:
                return await self._bus.js.pull_subscribe(
                    subjects.taskstore_events(principal.tenant, principal.subject),
                    durable=durable,
                    stream=subjects.STREAM_TASK_EVENTS,
                    config=ConsumerConfig(
                        deliver_policy=DeliverPolicy.NEW,
                        ack_policy=AckPolicy.EXPLICIT,
                        ack_wait=30,
                    ),
                )
            except (nats.errors.Error, nats.js.errors.Error) as exc:
                log.info("mqtt results wait for the taskstore's events", why=repr(exc))
                await asyncio.sleep(2.0)

    async def _deliver_from(self, subscription: Any) -> None:
        while True:
            await self._replies.wait_connected()
            try:
                messages = await subscription.fetch(16, timeout=5)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except nats.js.errors.NotFoundError:
                return  # the consumer is gone: subscribe again
            except nats.errors.Error as exc:
                log.info("mqtt results: events unreachable", why=repr(exc))
                await asyncio.sleep(1.0)
                continue
            for message in messages:
                await self._deliver_one(message)

    async def _deliver_one(self, message: Msg) -> None:
        task = tpb.Task()
        try:
            task.ParseFromString(message.data)
        except Exception:
            await message.ack()
            return
        if task.envelope.channel == env.CHANNEL_MQTT:
            try:
                await self._session.deliver(Result(message.metadata.sequence.stream, task))
            except (Unavailable, aiomqtt.MqttError):
                await message.nak(delay=1.0)  # the broker is away: later
                return
        await message.ack()

    async def _principal(self) -> principal_pb2.Principal:
        while True:
            try:
                return await self._conversations.authenticate(self._settings.credential)
            except Unavailable as exc:
                log.info("mqtt waits for the security service", why=exc.message)
                await asyncio.sleep(2.0)
            except EdgegateError as exc:
                log.error("mqtt_credential is refused; MQTT results wait", why=exc.message)
                await asyncio.sleep(30.0)


class _Replies:
    """The adapter's side of its session: replies published to each device's reply topic."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()

    def connected(self, client: aiomqtt.Client | None) -> None:
        self._client = client
        if client is None:
            self._connected.clear()
        else:
            self._connected.set()

    async def wait_connected(self) -> None:
        await self._connected.wait()

    async def ack(self, ref: _Request, ack: Ack) -> None:
        try:
            if ack.deferred:
                queued = {"type": "queued", "id": ref.id, "task_id": ack.task_id}
                with contextlib.suppress(Unavailable, aiomqtt.MqttError):
                    await self._publish(ref.device or "", queued)  # the result follows anyway
        finally:
            _settle(ref)

    async def result(self, sequence: int, task: tpb.Task) -> None:
        """Published to the task's device; raises while the broker is away."""
        body = {
            "type": "result",
            "id": task.envelope.metadata.get(ID_METADATA, ""),
            "task": task_json(task),
        }
        await self._publish(task.envelope.conversation, body)

    async def error(self, ref: _Request, exc: EdgegateError) -> None:
        try:
            if ref.device is None:
                log.warning("mqtt message on an unknown topic dropped", why=exc.message)
                return
            try:
                await self._publish(ref.device, error_frame(exc, ref.id))
            except (Unavailable, aiomqtt.MqttError):
                log.warning("mqtt error reply not sent: the broker is away", device=ref.device)
        finally:
            _settle(ref)

    async def fail(self, exc: EdgegateError) -> None:
        # Never called: results come through the adapter's own consumer (`Session.deliver`).
        log.error("mqtt results stopped", why=exc.message)

    async def _publish(self, device: str, body: dict[str, Any]) -> None:
        client = self._client
        if client is None:
            raise Unavailable("not connected to the MQTT broker")
        await client.publish(f"{self._prefix}/{device}/reply", json.dumps(body), qos=1)


def _settle(request: _Request) -> None:
    """Tell the broker it may forget the request: stored, or refused for good. One that is
    not settled (the gateway stopped while handling it) is delivered again."""
    with contextlib.suppress(Exception):
        request.client._client.ack(request.message.mid, request.message.qos)
