"""Wires the gateway service: the pipeline, the HTTP adapter and gRPC on the shared runtime."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass

from aiohttp import web

from edgegate_common.bus import Bus
from edgegate_common.bus.readiness import ModelReadiness
from edgegate_common.logging import get_logger
from edgegate_common.service import ServiceRuntime
from edgegate_gateway import __version__
from edgegate_gateway.adapters.breakers import BreakerControls
from edgegate_gateway.adapters.events_feed import EventsFeed
from edgegate_gateway.adapters.fallback import Fallback, FallbackSettings, make_fallback
from edgegate_gateway.adapters.http_server import GatewayRunner
from edgegate_gateway.adapters.knowledge_kv import KnowledgeAdditions
from edgegate_gateway.adapters.mqtt import MqttAdapter, MqttSettings
from edgegate_gateway.adapters.openai_http import make_app
from edgegate_gateway.adapters.outbox import Outbox
from edgegate_gateway.adapters.rate_limits import RateLimiter
from edgegate_gateway.adapters.routes import RouteTable
from edgegate_gateway.adapters.taskstore_client import TaskstoreClient
from edgegate_gateway.adapters.traffic import TrafficPublisher
from edgegate_gateway.adapters.websocket import WebSocketAdapter
from edgegate_gateway.assistant import Assistant
from edgegate_gateway.chats import Chats, start_chats
from edgegate_gateway.config import GatewaySettings
from edgegate_gateway.console import Console, ConsoleSettings
from edgegate_gateway.conversations import Conversations
from edgegate_gateway.core.breaker import BreakerPolicy
from edgegate_gateway.core.rules import Rules
from edgegate_gateway.local import LocalInference
from edgegate_gateway.pipeline import Pipeline
from edgegate_gateway.servicer import GatewayServicer
from edgegate_gateway.shadow import ShadowTraffic
from edgegate_gateway.spool import OfflineSpool
from edgegate_protos.gateway.v1 import gateway_pb2, gateway_pb2_grpc

log = get_logger(__name__)

# A taskstore call's own share of its timeout; the security round trip it makes comes on top.
TASKSTORE_TIMEOUT_S = 5.0


def build(settings: GatewaySettings) -> ServiceRuntime:
    """The gateway service: everything below starts once NATS is connected (the pipeline
    needs the bus), still before gRPC serves, and stops on SIGTERM."""
    runtime = ServiceRuntime(settings, version=__version__)

    async def start(bus: Bus) -> None:
        gateway = await _start_gateway(settings, runtime, bus)
        runtime.on_stop(gateway.stop)

    runtime.on_start(start)
    return runtime


@dataclass(frozen=True, slots=True)
class _Watches:
    """What the gateway follows in NATS: served models, shared rate limits, version weights."""

    readiness: ModelReadiness
    limiter: RateLimiter
    routes: RouteTable


@dataclass(frozen=True, slots=True)
class _Inference:
    """How a message reaches a model: local replicas behind breakers, the cloud, shadows."""

    local: LocalInference
    breakers: BreakerControls
    shadow: ShadowTraffic
    fallback: Fallback | None


@dataclass(frozen=True, slots=True)
class _Running:
    """What `_start_gateway` started, stopped in the order that drains it."""

    watches: _Watches
    inference: _Inference
    assistant: Assistant | None
    runner: GatewayRunner
    feed: EventsFeed
    mqtt: MqttAdapter | None
    chats: Chats
    replayer: asyncio.Task[None] | None
    console: Console | None
    traffic: TrafficPublisher

    async def stop(self) -> None:
        if self.replayer is not None:
            self.replayer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.replayer
        await self.runner.cleanup()
        if self.console is not None:
            await self.console.stop()
        await self.traffic.stop()
        await self.feed.close()
        if self.mqtt is not None:
            await self.mqtt.close()
        await self.chats.close()
        if self.assistant is not None:
            await self.assistant.stop()
        await self.watches.limiter.stop()
        await self.watches.routes.stop()
        await self.inference.shadow.stop()
        await self.inference.breakers.stop()
        if self.inference.fallback is not None:
            await self.inference.fallback.close()
        await self.watches.readiness.stop()


async def _start_gateway(s: GatewaySettings, runtime: ServiceRuntime, bus: Bus) -> _Running:
    """Every part of the gateway, started in the order each needs the others."""
    watches = await _start_watches(bus)
    inference = await _start_inference(s, runtime, bus, watches.readiness)
    taskstore = TaskstoreClient(bus, timeout_s=s.security_timeout_s + TASKSTORE_TIMEOUT_S)
    spool = _offline_spool(s, bus, taskstore)
    pipeline = Pipeline(
        bus=bus,
        readiness=watches.readiness,
        local=inference.local,
        taskstore=taskstore,
        security_timeout_s=s.security_timeout_s,
        limiter=watches.limiter,
        routes=watches.routes,
        fallback=inference.fallback,
        spool=spool,
        rules=Rules.load(s.routing_rules) if s.routing_rules else None,
        shadow=inference.shadow,
        breakers=inference.breakers,
    )
    assistant = await _start_assistant(
        s, bus, watches.readiness, pipeline, taskstore, inference.fallback
    )
    # One subscription to the taskstore's events for every session here, started by the first.
    feed = EventsFeed(bus)
    conversations = Conversations(
        pipeline=pipeline, taskstore=taskstore, assistant=assistant, feed=feed
    )
    runtime.grpc.add(
        gateway_pb2_grpc.add_GatewayServicer_to_server,
        GatewayServicer(conversations),
        service_name=gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].full_name,
    )
    app = make_app(
        pipeline,
        taskstore=taskstore,
        max_body_bytes=s.max_body_bytes,
        body_timeout_s=s.body_timeout_s,
        assistant=assistant,
    )
    WebSocketAdapter(conversations, max_frame_bytes=s.max_body_bytes).add_routes(app)
    console = await _start_console(s, bus, watches, taskstore, assistant, inference)
    if console is not None:
        console.add_routes(app)
    traffic = TrafficPublisher(
        bus, watches.limiter.counts, instance=runtime.instance, every_s=s.traffic_snapshot_s
    )
    traffic.start()
    mqtt = _mqtt(s, bus, conversations)
    if mqtt is not None:
        mqtt.start()
    chats = await start_chats(s, bus, assistant)
    for webhook in chats.webhooks:
        webhook.add_routes(app)
    runner = await _serve_http(s, app)
    replayer = None
    if spool is not None:
        replayer = asyncio.create_task(_replay_outbox(bus, spool, pipeline))
    return _Running(
        watches, inference, assistant, runner, feed, mqtt, chats, replayer, console, traffic
    )


async def _start_console(
    s: GatewaySettings,
    bus: Bus,
    watches: _Watches,
    taskstore: TaskstoreClient,
    assistant: Assistant | None,
    inference: _Inference,
) -> Console | None:
    """The web console under /console, following what it shows on NATS from now on."""
    if not s.console_enabled:
        return None
    console = Console(
        ConsoleSettings(
            operator_tenants=s.operator_tenants(),
            security_timeout_s=s.security_timeout_s,
        ),
        bus=bus,
        readiness=watches.readiness,
        limiter=watches.limiter,
        taskstore=taskstore,
        local=inference.local,
        controls=inference.breakers,
        # A person's answer joins the assistant's knowledge base, when there is an assistant.
        knowledge=assistant.additions if assistant is not None else None,
    )
    await console.start()
    return console


async def _start_watches(bus: Bus) -> _Watches:
    readiness = ModelReadiness(bus)
    await readiness.start()
    limiter = await RateLimiter.open(bus.js)
    await limiter.start()
    routes = await RouteTable.open(bus.js)
    await routes.start()
    return _Watches(readiness, limiter, routes)


async def _start_inference(
    s: GatewaySettings, runtime: ServiceRuntime, bus: Bus, readiness: ModelReadiness
) -> _Inference:
    """Local inference behind its breakers (their controls and per-model fallbacks from
    NATS KV), the gateway's own cloud fallback, and shadow traffic with its agreement."""
    policy = _breaker_policy(s)
    local = LocalInference(
        bus=bus,
        readiness=readiness,
        policy=policy,
        timeout_s=s.inference_timeout_s,
        instance=runtime.instance,
    )
    cloud = _cloud(s)
    fallback = make_fallback(s.fallback_protocol, cloud) if s.fallback_url else None
    breakers = await BreakerControls.open(bus.js, local=local, policy=policy, cloud=cloud)
    await breakers.start()
    shadow = ShadowTraffic(
        bus=bus,
        readiness=readiness,
        local=local,
        instance=runtime.instance,
        min_cosine=s.shadow_min_cosine,
        max_in_flight=s.shadow_max_in_flight,
        registry=runtime.registry,
    )
    shadow.start(snapshot_s=s.agreement_snapshot_s)
    return _Inference(local, breakers, shadow, fallback)


def _breaker_policy(s: GatewaySettings) -> BreakerPolicy:
    return BreakerPolicy(
        window_s=s.breaker_window_s,
        min_calls=s.breaker_min_calls,
        failure_rate=s.breaker_failure_rate,
        slow_call_s=s.breaker_slow_call_s,
        slow_call_rate=s.breaker_slow_call_rate,
        open_s=s.breaker_open_s,
        max_open_s=s.breaker_max_open_s,
        probes=s.breaker_probes,
    )


def _cloud(s: GatewaySettings) -> FallbackSettings:
    return FallbackSettings(
        base_url=s.fallback_url or "",
        api_key=s.fallback_key(),
        model=s.fallback_model,
        max_concurrency=s.fallback_max_concurrency,
        timeout_s=s.fallback_timeout_s,
        chat_model=s.fallback_chat_model,
    )


def _offline_spool(s: GatewaySettings, bus: Bus, taskstore: TaskstoreClient) -> OfflineSpool | None:
    """The disk outbox for while NATS is away, when a folder is configured for it."""
    if s.outbox_dir is None:
        return None
    outbox = Outbox(s.outbox_dir, max_entries=s.outbox_max_entries)
    return OfflineSpool(outbox, bus=bus, taskstore=taskstore)


async def _start_assistant(
    s: GatewaySettings,
    bus: Bus,
    readiness: ModelReadiness,
    pipeline: Pipeline,
    taskstore: TaskstoreClient,
    fallback: Fallback | None,
) -> Assistant | None:
    """The assistant, when a knowledge folder is configured; it embeds the folder now, and
    the passages added in NATS KV (`edgegate-knowledge`) as they come, until it stops."""
    if s.knowledge_dir is None:
        return None
    additions = await KnowledgeAdditions.open(bus.js)
    assistant = Assistant(
        bus=bus,
        readiness=readiness,
        pipeline=pipeline,
        taskstore=taskstore,
        folder=s.knowledge_dir,
        model=s.assistant_model,
        min_score=s.assistant_min_score,
        fallback=fallback,
        escalate=s.assistant_escalate,
        additions=additions,
    )
    assistant.start()
    return assistant


async def _serve_http(s: GatewaySettings, app: web.Application) -> GatewayRunner:
    runner = GatewayRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, s.http_host, s.http_port)
    await site.start()
    log.info("http serving", port=_bound_port(runner, s.http_port), routes=_routes(app))
    return runner


def _mqtt(s: GatewaySettings, bus: Bus, conversations: Conversations) -> MqttAdapter | None:
    if s.mqtt_host is None or s.mqtt_credential is None:
        return None
    settings = MqttSettings(
        host=s.mqtt_host,
        port=s.mqtt_port,
        prefix=s.mqtt_prefix.strip("/"),
        credential=s.mqtt_credential.get_secret_value(),
        client_id=s.mqtt_client_id or f"edgegate-gateway-{socket.gethostname()}",
        username=s.mqtt_username,
        password=s.mqtt_password.get_secret_value() if s.mqtt_password else None,
    )
    return MqttAdapter(settings, bus=bus, conversations=conversations)


async def _replay_outbox(
    bus: Bus, spool: OfflineSpool, pipeline: Pipeline, every_s: float = 1.0
) -> None:
    """While NATS is connected, hand what the outbox kept to the taskstore."""
    while True:
        await asyncio.sleep(every_s)
        if not bus.connected:
            continue
        try:
            await spool.replay(admit=pipeline.readmit)
        except Exception:
            log.exception("outbox replay failed; it runs again")


def _routes(app: web.Application) -> list[str]:
    """What the HTTP server answers, as "METHOD /path" (HEAD, which aiohttp adds, left out)."""
    served = {f"{r.method} {r.resource.canonical}" for r in app.router.routes() if r.resource}
    return sorted(route for route in served if not route.startswith("HEAD "))


def _bound_port(runner: web.AppRunner, asked: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    return asked
