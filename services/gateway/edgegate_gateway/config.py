"""Settings of the gateway service: `EDGEGATE_GATEWAY_<FIELD>` or `--<field>`."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from edgegate_common.config import ServiceSettings


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EDGEGATE_GATEWAY_")

    service_name: ClassVar[str] = "gateway"
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    metrics_port: int = Field(default=9101, ge=0, le=65535, description="0 disables /metrics")

    # HTTP (OpenAI-compatible)
    http_host: str = Field(default="0.0.0.0")
    http_port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=1024 * 1024, gt=0, description="larger bodies get 413")

    # Calls the pipeline makes
    security_timeout_s: float = Field(default=2.0, gt=0)
    inference_timeout_s: float = Field(default=30.0, gt=0)
