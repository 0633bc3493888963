"""Settings shared by every service, read from the environment and the command line.

Each service subclasses `ServiceSettings` with its own prefix, so
`EDGEGATE_GATEWAY_NATS_URL=nats://nats:4222` and
`python -m edgegate_gateway --nats-url nats://nats:4222` mean the same thing.
The command line wins over the environment; both win over the defaults.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LogLevel = Literal["debug", "info", "warning", "error"]


class ServiceSettings(BaseSettings):
    """What every edgegate service needs to join the suite."""

    model_config = SettingsConfigDict(
        env_prefix="EDGEGATE_",
        extra="forbid",
        cli_kebab_case=True,
        cli_implicit_flags=True,
    )

    # Which service these settings are for: fixed per subclass, not configurable,
    # because it names the service's NATS subjects and health entries.
    service_name: ClassVar[str] = "service"

    # NATS
    nats_url: str = Field(default="nats://127.0.0.1:4222", description="comma-separated URLs")
    nats_connect_timeout_s: float = Field(default=30.0, gt=0, description="give up after this")
    nats_tls_ca: Path | None = Field(default=None, description="CA bundle; enables TLS 1.3")
    nats_tls_cert: Path | None = Field(default=None, description="client certificate (mTLS)")
    nats_tls_key: Path | None = Field(default=None, description="client key (mTLS)")

    # gRPC
    grpc_host: str = Field(default="0.0.0.0")
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    grpc_max_message_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    grpc_tls_cert: Path | None = Field(default=None, description="server certificate chain")
    grpc_tls_key: Path | None = Field(default=None, description="server private key")
    grpc_tls_client_ca: Path | None = Field(default=None, description="require client certs")
    drain_timeout_s: float = Field(default=10.0, ge=0, description="SIGTERM grace period")
    not_serving_delay_s: float = Field(
        default=0.0, ge=0, description="on SIGTERM, report NOT_SERVING this long before draining"
    )

    # Observability
    metrics_port: int = Field(default=9100, ge=0, le=65535, description="0 disables /metrics")
    log_level: LogLevel = "info"
    otlp_endpoint: str | None = Field(default=None, description="OTLP/gRPC trace collector")

    @model_validator(mode="after")
    def _tls_pairs(self) -> Self:
        if (self.grpc_tls_cert is None) != (self.grpc_tls_key is None):
            raise ValueError("grpc_tls_cert and grpc_tls_key must be set together")
        if (self.nats_tls_cert is None) != (self.nats_tls_key is None):
            raise ValueError("nats_tls_cert and nats_tls_key must be set together")
        if self.grpc_tls_client_ca is not None and self.grpc_tls_cert is None:
            raise ValueError("grpc_tls_client_ca needs grpc_tls_cert and grpc_tls_key")
        return self

    @property
    def nats_servers(self) -> list[str]:
        return [url.strip() for url in self.nats_url.split(",") if url.strip()]

    @classmethod
    def from_args(cls, argv: Sequence[str] | None = None) -> Self:
        """Build settings from the environment plus `--field` flags in `argv`."""
        return cls(
            _cli_parse_args=list(argv or []),
            _cli_prog_name=f"python -m edgegate_{cls.service_name}",
        )
