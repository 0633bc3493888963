"""Settings of the inference service: `EDGEGATE_INFERENCE_<FIELD>` or `--<field>`."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from edgegate_common.config import ServiceSettings


class InferenceSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EDGEGATE_INFERENCE_")

    service_name: ClassVar[str] = "inference"
    grpc_port: int = Field(default=8001, ge=0, le=65535)
    metrics_port: int = Field(default=8002, ge=0, le=65535, description="0 disables /metrics")
