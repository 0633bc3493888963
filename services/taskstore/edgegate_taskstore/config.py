"""Settings of the taskstore service: `EDGEGATE_TASKSTORE_<FIELD>` or `--<field>`."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from edgegate_common.config import ServiceSettings


class TaskstoreSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EDGEGATE_TASKSTORE_")

    service_name: ClassVar[str] = "taskstore"
    grpc_port: int = Field(default=50053, ge=0, le=65535)
    metrics_port: int = Field(default=9103, ge=0, le=65535, description="0 disables /metrics")
