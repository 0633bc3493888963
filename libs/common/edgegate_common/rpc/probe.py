"""Ask a gRPC server's standard health service: a function, and `python -m` for pods.

    python -m edgegate_common.rpc.probe HOST:PORT [--service NAME] [--wait-s 60]

Exit status 0 when the answer is SERVING, 1 otherwise, with the status on stdout. The Helm
chart's `helm test` pod and the image start checks run it inside edgegate's own images, so
they need no grpc_health_probe binary.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


async def health_status(
    target: str,
    *,
    service: str = "",
    timeout_s: float = 1.0,
    credentials: grpc.ChannelCredentials | None = None,
) -> str:
    """The gRPC health status name at `target` (e.g. "SERVING"), or "UNREACHABLE".

    `credentials` for a server that serves TLS.
    """
    channel = (
        grpc.aio.insecure_channel(target)
        if credentials is None
        else grpc.aio.secure_channel(target, credentials)
    )
    async with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = await stub.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return "SERVICE_UNKNOWN"
            return "UNREACHABLE"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


async def wait_serving(target: str, *, service: str = "", wait_s: float = 0.0) -> str:
    """The status at `target`, asked again every half second until SERVING or `wait_s` ran out."""
    deadline = time.monotonic() + wait_s
    while True:
        status = await health_status(target, service=service, timeout_s=2.0)
        if status == "SERVING" or time.monotonic() >= deadline:
            return status
        await asyncio.sleep(0.5)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgegate_common.rpc.probe")
    parser.add_argument("target", help="HOST:PORT of a gRPC server")
    parser.add_argument("--service", default="", help="a service name; empty: the whole server")
    parser.add_argument("--wait-s", type=float, default=0.0, help="keep asking this long")
    args = parser.parse_args(argv)
    status = asyncio.run(wait_serving(args.target, service=args.service, wait_s=args.wait_s))
    print(status)
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
