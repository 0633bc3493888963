"""Run one edgegate service process: NATS, gRPC, /metrics, and a clean drain.

A service supplies its settings class and a `build` function that registers
its gRPC servicers and NATS handlers on a `ServiceRuntime`; `run_main` does
the rest the same way for every service:

    def build(settings: GatewaySettings) -> ServiceRuntime:
        runtime = ServiceRuntime(settings, version=__version__)
        runtime.grpc.add(add_GatewayServicer_to_server, GatewayServicer(), service_name=...)
        return runtime

On SIGTERM (or SIGINT) health turns NOT_SERVING, the gRPC server stops
accepting and finishes calls in flight within `drain_timeout_s`, and the NATS
connection drains before the process exits 0.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import CollectorRegistry

from edgegate_common import subjects
from edgegate_common.bus import Bus, RequestContext, client_tls_context
from edgegate_common.config import ServiceSettings
from edgegate_common.errors import EdgegateError
from edgegate_common.logging import configure_logging, get_logger
from edgegate_common.metrics import BusMetrics, MetricsServer, RpcMetrics
from edgegate_common.rpc import GrpcServer
from edgegate_common.telemetry import configure_tracing
from edgegate_protos.common.v1 import status_pb2

log = get_logger(__name__)

StartHook = Callable[[Bus], Awaitable[None]]
StopHook = Callable[[], Awaitable[None]]
S = TypeVar("S", bound=ServiceSettings)


class ServiceRuntime:
    """The parts every service process has, started and stopped in the right order.

    Create it inside a running event loop (grpc.aio binds to the loop).
    """

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        version: str,
        requires_nats: bool = True,
        descriptor_pool: DescriptorPool | None = None,
    ) -> None:
        self.settings = settings
        self.name = settings.service_name
        self.version = version
        self.instance = f"{socket.gethostname()}-{os.getpid()}"
        self.registry = CollectorRegistry()
        self._bus_metrics = BusMetrics(self.registry)
        self.grpc = GrpcServer(
            settings, metrics=RpcMetrics(self.registry), descriptor_pool=descriptor_pool
        )
        self.metrics_server: MetricsServer | None = None
        self._bus: Bus | None = None
        self._requires_nats = requires_nats
        self._start_hooks: list[StartHook] = []
        self._stop_hooks: list[StopHook] = []
        self._started_at = Timestamp()
        self._stopping = asyncio.Event()
        self._health_updates: set[asyncio.Task[None]] = set()

    @property
    def bus(self) -> Bus:
        if self._bus is None:
            raise RuntimeError("the bus is connected in start()")
        return self._bus

    def on_start(self, hook: StartHook) -> None:
        """Run `hook(bus)` once NATS is connected, before gRPC starts serving."""
        self._start_hooks.append(hook)

    def on_stop(self, hook: StopHook) -> None:
        """Run `hook()` once gRPC and NATS requests have drained, before the NATS connection
        closes (reverse order of adding)."""
        self._stop_hooks.append(hook)

    async def start(self) -> None:
        s = self.settings
        self._started_at.GetCurrentTime()
        if s.metrics_port:
            self.metrics_server = MetricsServer(
                self.registry, host=s.grpc_host, port=s.metrics_port
            )
            self.metrics_server.start()
        self._bus = await Bus.connect(
            servers=s.nats_servers,
            name=f"edgegate-{self.name}-{self.instance}",
            connect_timeout_s=s.nats_connect_timeout_s,
            tls=client_tls_context(ca=s.nats_tls_ca, cert=s.nats_tls_cert, key=s.nats_tls_key),
            on_connection_change=self._on_nats_connection,
            metrics=self._bus_metrics,
        )
        await self._bus.serve(
            subjects.status(self.name),
            status_pb2.StatusRequest,
            self._status,
            queue=subjects.queue_group(self.name),
        )
        for hook in self._start_hooks:
            await hook(self._bus)
        await self.grpc.start()
        await self.grpc.set_serving(self.serving)
        log.info(
            "service started",
            version=self.version,
            grpc_port=self.grpc.port,
            metrics_port=self.metrics_server.port if self.metrics_server else None,
        )

    @property
    def serving(self) -> bool:
        if self._stopping.is_set():
            return False
        return not self._requires_nats or (self._bus is not None and self._bus.connected)

    def request_stop(self) -> None:
        self._stopping.set()

    async def stop(self) -> None:
        self._stopping.set()
        log.info("draining", grace_s=self.settings.drain_timeout_s)
        await self.grpc.stop(
            grace_s=self.settings.drain_timeout_s,
            not_serving_delay_s=self.settings.not_serving_delay_s,
        )
        if self._bus is not None:
            # No NATS request may arrive once the stop hooks start closing what
            # handlers use; the connection stays up for them to flush.
            await self._bus.stop_serving(timeout_s=self.settings.drain_timeout_s)
        for hook in reversed(self._stop_hooks):
            try:
                await hook()
            except Exception:
                log.exception("stop hook failed")
        if self._bus is not None:
            await self._bus.close()
        if self.metrics_server is not None:
            self.metrics_server.stop()
        log.info("stopped")

    async def run(self) -> None:
        """Start, serve until SIGTERM/SIGINT, then drain and stop."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        try:
            # A SIGTERM while still starting (NATS not reachable yet, say) stops
            # the start instead of waiting for it: Kubernetes' grace period is short.
            starting = asyncio.ensure_future(self.start())
            stopping = asyncio.ensure_future(self._stopping.wait())
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():
                starting.cancel()
                log.info("stop requested while starting")
            else:
                starting.result()  # a failed start raises here
            await stopping
        finally:
            await self.stop()

    async def _status(
        self, _: status_pb2.StatusRequest, __: RequestContext
    ) -> status_pb2.ServiceStatus:
        log.debug("status requested")
        return status_pb2.ServiceStatus(
            service=self.name,
            instance=self.instance,
            version=self.version,
            serving=self.serving,
            started_at=self._started_at,
        )

    def _on_nats_connection(self, connected: bool) -> None:
        self._bus_metrics.connected.set(1 if connected else 0)
        if self._requires_nats and self.grpc.port:
            task = asyncio.get_running_loop().create_task(self.grpc.set_serving(self.serving))
            self._health_updates.add(task)
            task.add_done_callback(self._health_updates.discard)


def run_main(
    settings_cls: type[S],
    build: Callable[[S], ServiceRuntime],
    argv: Sequence[str] | None = None,
) -> None:
    """The `python -m edgegate_<svc>` entry point shared by every service."""
    settings = settings_cls.from_args(sys.argv[1:] if argv is None else argv)
    configure_logging(service=settings.service_name, level=settings.log_level)
    configure_tracing(service=settings.service_name, otlp_endpoint=settings.otlp_endpoint)
    started = time.monotonic()

    async def serve() -> None:
        # grpc.aio binds to the running loop, so the runtime is built inside it.
        await build(settings).run()

    try:
        asyncio.run(serve())
    except EdgegateError as exc:
        log.error("service failed", error=exc.message, code=exc.code.name)
        raise SystemExit(1) from None
    log.info("exit", ran_s=round(time.monotonic() - started, 3))
