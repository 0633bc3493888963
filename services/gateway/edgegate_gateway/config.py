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
