"""The gRPC server every service runs: health, reflection, limits, TLS, drain."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]
from grpc_reflection.v1alpha import reflection, reflection_pb2

from edgegate_common.config import ServiceSettings
from edgegate_common.logging import get_logger
from edgegate_common.metrics import RpcMetrics
from edgegate_common.rpc.interceptor import ServiceInterceptor
from edgegate_common.rpc.tls import TlsTerminator, server_tls_context

log = get_logger(__name__)

Registrar = Callable[[Any, grpc.aio.Server], None]

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class GrpcServer:
    """A grpc.aio server with the standard health and reflection services.

    Register servicers with `add` before `start`. Health reports SERVING for
    the whole server ("") and for each registered service once `set_serving`
    says so. `stop` flips everything to NOT_SERVING first and keeps accepting
    for `not_serving_delay_s`, so that load balancers and readiness probes
    notice before the server stops accepting.
    """

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        metrics: RpcMetrics | None = None,
        descriptor_pool: DescriptorPool | None = None,
    ) -> None:
        self._settings = settings
        self._pool = descriptor_pool
        limit = settings.grpc_max_message_bytes
        self.server = grpc.aio.server(
            interceptors=[ServiceInterceptor(metrics=metrics)],
            options=[
                ("grpc.max_send_message_length", limit),
                ("grpc.max_receive_message_length", limit),
                ("grpc.so_reuseport", 0),
            ],
        )
        self.health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self._service_names: list[str] = []
        self._tls: TlsTerminator | None = None
        self._socket_dir: tempfile.TemporaryDirectory[str] | None = None
        self.port = 0

    def add(self, registrar: Registrar, servicer: Any, *, service_name: str) -> None:
        """Register one servicer, e.g. `add(add_GatewayServicer_to_server, impl, ...)`."""
        registrar(servicer, self.server)
        self._service_names.append(service_name)

    async def start(self) -> int:
        names = [*self._service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name]
        if self._pool is not None:
            # Reflection answers from one pool: give a private pool the standard services too.
            for file in (health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR):
                try:
                    self._pool.FindFileByName(file.name)
                except KeyError:
                    self._pool.AddSerializedFile(file.serialized_pb)
        reflection.enable_server_reflection(
            [*names, reflection.SERVICE_NAME], self.server, pool=self._pool
        )
        s = self._settings
        if s.grpc_tls_cert is not None and s.grpc_tls_key is not None:
            self._socket_dir = tempfile.TemporaryDirectory(prefix="edgegate-grpc-")
            backend = Path(self._socket_dir.name) / "grpc.sock"
            self.server.add_insecure_port(f"unix:{backend}")
            await self.server.start()
            ctx = server_tls_context(
                cert=s.grpc_tls_cert, key=s.grpc_tls_key, client_ca=s.grpc_tls_client_ca
            )
            self._tls = TlsTerminator(
                ssl_context=ctx, host=s.grpc_host, port=s.grpc_port, backend=backend
            )
            self.port = await self._tls.start()
        else:
            self.port = self.server.add_insecure_port(f"{s.grpc_host}:{s.grpc_port}")
            await self.server.start()
        log.info(
            "grpc serving", port=self.port, tls=self._tls is not None, services=self._service_names
        )
        return self.port

    async def set_serving(self, serving: bool) -> None:
        status = SERVING if serving else NOT_SERVING
        for name in ("", *self._service_names):
            await self.health.set(name, status)

    async def stop(self, *, grace_s: float, not_serving_delay_s: float = 0.0) -> None:
        """NOT_SERVING first; after `not_serving_delay_s`, stop accepting; calls get `grace_s`."""
        await self.health.enter_graceful_shutdown()
        if not_serving_delay_s > 0:
            await asyncio.sleep(not_serving_delay_s)
        if self._tls is not None:
            self._tls.stop_accepting()
        await self.server.stop(grace_s)
        if self._tls is not None:
            await self._tls.stop()
        if self._socket_dir is not None:
            self._socket_dir.cleanup()
