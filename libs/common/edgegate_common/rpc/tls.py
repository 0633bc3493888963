"""TLS 1.3 in front of a gRPC server.

grpcio's Python API cannot set a minimum TLS version on server credentials
(grpc/grpc#37305; the Core setters exist, the Python arguments do not), so it
would also accept TLS 1.2. To enforce TLS 1.3 we terminate TLS ourselves with
the standard `ssl` module (TLS 1.3 minimum, ALPN `h2`, optional client
certificates) and pass the decrypted HTTP/2 bytes to the gRPC server on a
private Unix socket — what a service-mesh sidecar does, inside the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path

from edgegate_common.logging import get_logger

log = get_logger(__name__)

_CHUNK_BYTES = 256 * 1024


def server_tls_context(*, cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """TLS 1.3 only; with `client_ca`, clients must present a certificate it signed."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(certfile=str(cert), keyfile=str(key))
    ctx.set_alpn_protocols(["h2"])
    if client_ca is not None:
        ctx.load_verify_locations(cafile=str(client_ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class TlsTerminator:
    """Accept TLS on host:port and relay each connection to a Unix socket."""

    def __init__(self, *, ssl_context: ssl.SSLContext, host: str, port: int, backend: Path) -> None:
        self._ctx = ssl_context
        self._host = host
        self._port = port
        self._backend = backend
        self._server: asyncio.Server | None = None
        self._relays: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(
            self._accept, self._host, self._port, ssl=self._ctx, ssl_handshake_timeout=10.0
        )
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def stop_accepting(self) -> None:
        """Refuse new connections; relays in flight go on (they carry the drain)."""
        if self._server is not None:
            self._server.close()

    async def stop(self) -> None:
        self.stop_accepting()
        for task in list(self._relays):
            task.cancel()
        await asyncio.gather(*self._relays, return_exceptions=True)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._relays.add(task)
        writers = [client_w]
        try:
            try:
                backend_r, backend_w = await asyncio.open_unix_connection(str(self._backend))
            except OSError as exc:
                log.warning("tls relay: backend unreachable", error=repr(exc))
                return
            writers.append(backend_w)
            # HTTP/2 needs no TCP half-close: when either side ends, end both.
            pipes = [
                asyncio.ensure_future(_pipe(client_r, backend_w)),
                asyncio.ensure_future(_pipe(backend_r, client_w)),
            ]
            try:
                await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pipe in pipes:
                    pipe.cancel()
                await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            for writer in writers:
                writer.close()
            if task is not None:
                self._relays.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        while chunk := await reader.read(_CHUNK_BYTES):
            writer.write(chunk)
            await writer.drain()
