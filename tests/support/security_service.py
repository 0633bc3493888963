"""The security service as a real process, over TLS, for the service-level tests.

One process per test module: nats-server with TLS and its monitoring port,
`python -m edgegate_security` serving gRPC over TLS and talking TLS to NATS,
PII masking on (e-mail addresses tokenised, so Restore has work to do), a deny
pattern, and a small part limit so "too large" fits in one NATS message.
Tokens come from `edgegate token issue`, the admin path the issue names.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from edgegate_common import subjects
from edgegate_common.bus import Bus, client_tls_context
from edgegate_common.local import LocalNatsServer, ServiceProcess, free_port
from edgegate_protos.security.v1 import security_pb2_grpc
from edgegate_security.audit.chain import AuditRecord, parse_record
from edgegate_security.audit.reader import read_stream
from support.certs import Certs, make_certs
from support.waiting import eventually

MAX_PART_BYTES = 64 * 1024
DENY_PATTERN = "internal use only"
TENANT = "acme"
OTHER_TENANT = "globex"


@dataclass
class SecurityService:
    process: ServiceProcess
    nats: LocalNatsServer
    certs: Certs
    keys_dir: Path
    env: dict[str, str]
    monitor_port: int

    @property
    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self.certs.ca.read_bytes())

    @asynccontextmanager
    async def stub(self) -> AsyncIterator[security_pb2_grpc.SecurityStub]:
        async with grpc.aio.secure_channel(self.process.target, self.credentials) as channel:
            yield security_pb2_grpc.SecurityStub(channel)

    @asynccontextmanager
    async def bus(self) -> AsyncIterator[Bus]:
        bus = await Bus.connect(
            servers=[self.nats.url],
            name="test",
            connect_timeout_s=5,
            tls=client_tls_context(ca=self.certs.ca),
        )
        try:
            yield bus
        finally:
            await bus.close()

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`edgegate ARGS` with the service's settings in the environment."""
        result = subprocess.run(
            [str(Path(sys.executable).with_name("edgegate")), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check:
            assert result.returncode == 0, result.stderr
        return result

    def issue(self, *scopes: str, tenant: str = TENANT, sub: str = "alice") -> str:
        args = ["token", "issue", "--tenant", tenant, "--sub", sub, "--nats-url", self.nats.url]
        for scope in scopes:
            args += ["--scope", scope]
        return self.cli(*args).stdout.strip()


@contextmanager
def running_service(folder: Path) -> Iterator[SecurityService]:
    certs = make_certs(folder / "certs")
    monitor_port = free_port()
    tls = ("--tls", "--tlscert", str(certs.cert), "--tlskey", str(certs.key))
    nats = LocalNatsServer(store_dir=folder / "nats", extra_args=(*tls, "-m", str(monitor_port)))
    nats.start()
    keys_dir = folder / "keys"
    env = {
        **os.environ,
        "EDGEGATE_SECURITY_KEYS_DIR": str(keys_dir),
        "EDGEGATE_SECURITY_NATS_URL": nats.url,
        "EDGEGATE_SECURITY_NATS_TLS_CA": str(certs.ca),
        "EDGEGATE_SECURITY_MAX_PART_BYTES": str(MAX_PART_BYTES),
        "EDGEGATE_SECURITY_DENY_PATTERNS": json.dumps({"internal": DENY_PATTERN}),
        "EDGEGATE_SECURITY_PII_OPERATORS": json.dumps({"EMAIL_ADDRESS": "tokenize"}),
    }
    process = ServiceProcess(
        "security",
        nats_url=nats.url,
        grpc_port=free_port(),
        metrics_port=0,
        log_file=folder / "security.log",
        extra_args=("--grpc-tls-cert", str(certs.cert), "--grpc-tls-key", str(certs.key)),
        env=env,
        credentials=grpc.ssl_channel_credentials(root_certificates=certs.ca.read_bytes()),
    )
    process.start()
    try:
        asyncio.run(process.wait_serving(timeout_s=90))
        yield SecurityService(process, nats, certs, keys_dir, env, monitor_port)
    finally:
        process.stop()
        nats.stop()


async def audit_records(bus: Bus, *, after: int = 0) -> list[AuditRecord]:
    """The records stored on the audit stream after stream sequence `after`."""
    info = await bus.js.stream_info(subjects.STREAM_AUDIT)
    last = info.state.last_seq
    if last <= after:
        return []
    return [
        parse_record(data)
        async for _, data in read_stream(bus.js, from_stream_seq=after + 1, up_to_seq=last)
    ]


async def audit_tail(bus: Bus) -> int:
    return int((await bus.js.stream_info(subjects.STREAM_AUDIT)).state.last_seq)


async def wait_for_record(
    bus: Bus, *, after: int, match: Callable[[AuditRecord], bool], timeout_s: float = 5.0
) -> AuditRecord:
    """The first record after `after` that `match`es; the writer stores asynchronously."""

    async def first_match() -> AuditRecord | None:
        return next((r for r in await audit_records(bus, after=after) if match(r)), None)

    return await eventually(
        first_match, timeout_s=timeout_s, what=f"a matching audit record after sequence {after}"
    )
