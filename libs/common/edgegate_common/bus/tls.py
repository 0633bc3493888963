"""TLS for the NATS connection: TLS 1.3 only, optional client certificate."""

from __future__ import annotations

import ssl
from pathlib import Path


def client_tls_context(
    *, ca: Path | None, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext | None:
    """A TLS 1.3 client context, or None when no CA is configured (plain TCP)."""
    if ca is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if cert is not None and key is not None:
        ctx.load_cert_chain(certfile=str(cert), keyfile=str(key))
    return ctx
