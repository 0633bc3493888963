"""Settings of the security service: `EDGEGATE_SECURITY_<FIELD>` or `--<field>`."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from edgegate_common.config import ServiceSettings


class SecuritySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EDGEGATE_SECURITY_")

    service_name: ClassVar[str] = "security"
    grpc_port: int = Field(default=50052, ge=0, le=65535)
    metrics_port: int = Field(default=9102, ge=0, le=65535, description="0 disables /metrics")
