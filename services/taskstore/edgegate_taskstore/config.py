"""Settings of the taskstore service: `EDGEGATE_TASKSTORE_<FIELD>` or `--<field>`."""

from __future__ import annotations

from typing import ClassVar, Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from edgegate_common import tasks
from edgegate_common.config import ServiceSettings


class TaskstoreSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EDGEGATE_TASKSTORE_")

    service_name: ClassVar[str] = "taskstore"
    grpc_port: int = Field(default=50053, ge=0, le=65535)
    metrics_port: int = Field(default=9103, ge=0, le=65535, description="0 disables /metrics")

    # Storage
    replicas: int = Field(default=1, ge=1, le=5, description="JetStream replicas: 1 local, 3 HA")
    max_store_bytes: int = Field(default=-1, description="task bucket and queue size cap; -1 none")
    finished_ttl_s: float = Field(default=7 * 24 * 3600, gt=0, description="keep finished tasks")
    dead_letter_ttl_s: float = Field(default=14 * 24 * 3600, gt=0)
    events_ttl_s: float = Field(default=7 * 24 * 3600, gt=0, description="replayable events")
    duplicate_window_s: float = Field(default=120.0, gt=0, description="Nats-Msg-Id window")
    max_envelope_bytes: int = Field(default=tasks.MAX_ENVELOPE_BYTES, gt=0)

    # Workers
    workers: int = Field(default=16, ge=0, description="tasks run at once; 0: API only")
    max_attempts: int = Field(default=5, ge=1)
    backoff_base_s: float = Field(default=1.0, gt=0)
    backoff_cap_s: float = Field(default=60.0, gt=0)
    ack_wait_s: float = Field(default=30.0, gt=0, description="redeliver after this silence")
    infer_timeout_s: float = Field(default=30.0, gt=0)
    model_wait_s: float = Field(default=5.0, gt=0, description="retry delay while no model")

    # Security and session state
    auth_cache_s: float = Field(default=30.0, ge=0)
    max_state_bytes: int = Field(default=256 * 1024, gt=0)
    max_clock_skew_ms: int = Field(default=60_000, ge=0)

    @model_validator(mode="after")
    def _windows(self) -> Self:
        # A redelivery after a crash comes within the ack wait; the queue and the
        # events stream must still remember the message ids by then.
        if self.duplicate_window_s <= self.ack_wait_s:
            raise ValueError("duplicate_window_s must be longer than ack_wait_s")
        return self
