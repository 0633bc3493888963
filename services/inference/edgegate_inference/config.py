"""Settings of the inference service: `EDGEGATE_INFERENCE_<FIELD>` or `--<field>`."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from edgegate_common.config import ServiceSettings


class InferenceSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EDGEGATE_INFERENCE_")

    service_name: ClassVar[str] = "inference"
    grpc_port: int = Field(default=8001, ge=0, le=65535)
    metrics_port: int = Field(default=8002, ge=0, le=65535, description="0 disables /metrics")
    model_repository: Path = Field(
        default=Path(".edgegate/models"), description="<repo>/<model>/<version>/model.onnx"
    )
    repository_poll_s: float = Field(
        default=5.0, ge=0, description="rescan for new or changed models; 0: load/unload RPCs only"
    )
    metrics_snapshot_s: float = Field(
        default=5.0, ge=0, description="per-version metric snapshots on NATS; 0: none"
    )
    model_drain_timeout_s: float = Field(
        default=30.0, ge=0, description="how long a retired version may finish its queue"
    )
