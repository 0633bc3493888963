"""Wires the security service: keys, verifier, inspector, PII engine, audit log, transports."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from edgegate_common.bus import Bus
from edgegate_common.logging import get_logger
from edgegate_common.service import ServiceRuntime
from edgegate_protos.security.v1 import security_pb2, security_pb2_grpc
from edgegate_security import __version__
from edgegate_security.adapters import bus as security_bus
from edgegate_security.adapters.jwks_client import HttpJwksClient
from edgegate_security.api import SecurityApi
from edgegate_security.audit.log import AuditLog
from edgegate_security.config import SecuritySettings
from edgegate_security.core.inspection import DenyPattern, Inspector, Limits
from edgegate_security.core.jwks import RemoteJwks
from edgegate_security.core.keyring import KeyRing
from edgegate_security.core.tokens import TokenIssuer, TokenPolicy, TokenVerifier
from edgegate_security.plane import SecurityPlane
from edgegate_security.secret_files import random_secret
from edgegate_security.servicer import SecurityServicer

if TYPE_CHECKING:
    from edgegate_security.pii.engine import PiiEngine

log = get_logger(__name__)

PII_SECRETS_FILE = "pii.key"


def build(settings: SecuritySettings) -> ServiceRuntime:
    runtime = ServiceRuntime(settings, version=__version__)
    # Held by the plane from here on; it records once start() gave it the connection.
    audit = AuditLog(replica=runtime.instance)
    ring = KeyRing.open(
        settings.keys_dir, alg=settings.signing_alg, max_token_ttl_s=settings.max_token_ttl_s
    )
    plane = build_plane(settings, ring=ring, audit=audit)
    api = SecurityApi(plane)
    runtime.grpc.add(
        security_pb2_grpc.add_SecurityServicer_to_server,
        SecurityServicer(api),
        service_name=security_pb2.DESCRIPTOR.services_by_name["Security"].full_name,
    )

    async def start(bus: Bus) -> None:
        reloader = asyncio.get_running_loop().create_task(_reload_keys(ring, settings))
        # The audit log runs before anything is served: no decision goes unrecorded.
        await audit.start(bus)

        async def stop() -> None:
            reloader.cancel()
            await audit.close()

        runtime.on_stop(stop)
        await security_bus.serve(bus, api)

    runtime.on_start(start)
    return runtime


def build_plane(settings: SecuritySettings, *, ring: KeyRing, audit: AuditLog) -> SecurityPlane:
    remote = None
    if settings.jwks_url:
        remote = RemoteJwks(HttpJwksClient(settings.jwks_url), ttl_s=settings.jwks_cache_s)
    policy = TokenPolicy(
        issuers=frozenset({settings.issuer, *settings.trusted_issuers}),
        audience=settings.audience,
        leeway_s=settings.leeway_s,
        hs256_secret=settings.hs256_secret.encode()
        if settings.allow_hs256 and settings.hs256_secret
        else None,
    )
    pii = _pii_engine(settings) if settings.pii_enabled else None
    inspector = Inspector(
        limits=Limits(
            max_part_bytes=settings.max_part_bytes,
            max_total_bytes=settings.max_total_bytes,
            max_parts=settings.max_parts,
            max_scan_chars=settings.pii_max_scan_chars,
        ),
        deny_patterns=[
            DenyPattern.compile(name=name, regex=regex)
            for name, regex in settings.deny_patterns.items()
        ],
        injection_threshold=settings.injection_threshold,
        redactor=pii,
    )
    return SecurityPlane(
        verifier=TokenVerifier(
            policy=policy, ring=ring, remote=remote, cache_size=settings.token_cache_size
        ),
        inspector=inspector,
        audit=audit,
        issuer=TokenIssuer(ring, issuer=settings.issuer, audience=settings.audience),
        ring=ring,
        restorer=pii,
        audit_verifier=audit,
        audit_browser=audit,
        leeway_s=settings.leeway_s,
    )


async def _reload_keys(ring: KeyRing, settings: SecuritySettings) -> None:
    """Pick up keys rotated or retired by another process (`edgegate keys rotate`)."""
    while True:
        await asyncio.sleep(settings.keys_reload_s)
        ring.reload()


def _pii_engine(settings: SecuritySettings) -> PiiEngine:
    # Imported here: Presidio takes seconds to load, and only a service with PII on needs it.
    from edgegate_security.pii.engine import PiiEngine

    path = settings.pii_secrets_file or settings.keys_dir / PII_SECRETS_FILE
    secret = random_secret(path, size=64)
    engine = PiiEngine(
        token_key=secret[:32],
        hash_salt=secret[32:],
        operators=settings.pii_operators,
        default_operator=settings.pii_default_operator,
    )
    log.info("pii masking on", default_operator=settings.pii_default_operator)
    return engine
