"""Wires the gateway service: the pipeline, the HTTP adapter and gRPC on the shared runtime."""

from __future__ import annotations

from aiohttp import web

from edgegate_common.bus import Bus
from edgegate_common.bus.readiness import ModelReadiness
from edgegate_common.logging import get_logger
from edgegate_common.service import ServiceRuntime
from edgegate_gateway import __version__
from edgegate_gateway.adapters.openai_http import make_app
from edgegate_gateway.adapters.rate_limits import RateLimiter
from edgegate_gateway.adapters.routes import RouteTable
from edgegate_gateway.config import GatewaySettings
from edgegate_gateway.pipeline import Pipeline, Timeouts
from edgegate_gateway.servicer import GatewayServicer
from edgegate_protos.gateway.v1 import gateway_pb2, gateway_pb2_grpc

log = get_logger(__name__)


def build(settings: GatewaySettings) -> ServiceRuntime:
    runtime = ServiceRuntime(settings, version=__version__)

    async def start(bus: Bus) -> None:
        readiness = ModelReadiness(bus.nc)
        await readiness.start()
        limiter = await RateLimiter.open(bus.js)
        await limiter.start()
        routes = await RouteTable.open(bus.js)
        await routes.start()
        pipeline = Pipeline(
            bus=bus,
            readiness=readiness,
            limiter=limiter,
            routes=routes,
            timeouts=Timeouts(
                security_s=settings.security_timeout_s, inference_s=settings.inference_timeout_s
            ),
        )
        # The pipeline needs the bus, so the servicer is registered here: still
        # before gRPC starts serving.
        runtime.grpc.add(
            gateway_pb2_grpc.add_GatewayServicer_to_server,
            GatewayServicer(pipeline),
            service_name=gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].full_name,
        )
        runner = web.AppRunner(
            make_app(pipeline, max_body_bytes=settings.max_body_bytes), access_log=None
        )
        await runner.setup()
        site = web.TCPSite(runner, settings.http_host, settings.http_port)
        await site.start()
        log.info("http serving", port=_bound_port(runner, settings.http_port))

        async def stop() -> None:
            await runner.cleanup()
            await limiter.stop()
            await routes.stop()
            await readiness.stop()

        runtime.on_stop(stop)

    runtime.on_start(start)
    return runtime


def _bound_port(runner: web.AppRunner, asked: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    return asked
