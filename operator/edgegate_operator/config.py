"""Settings of the operator: `EDGEGATE_OPERATOR_<FIELD>` or `--<field>`."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from edgegate_common.config import ServiceSettings


class OperatorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EDGEGATE_OPERATOR_")

    service_name: ClassVar[str] = "operator"
    metrics_port: int = Field(default=9102, ge=0, le=65535, description="0 disables /metrics")
    namespaces: str = Field(default="", description="comma-separated; empty: all namespaces")
    kubeconfig: Path | None = Field(
        default=None, description="outside a cluster; default: in-cluster, else KUBECONFIG"
    )
    resync_s: float = Field(
        default=1.0, gt=0, description="each resource is reconciled at least this often"
    )
    status_min_interval_s: float = Field(
        default=2.0, ge=0, description="status writes that only mirror observations, at most"
    )
    analysis_grace_s: float = Field(
        default=1.0, ge=0, description="wait after a window for its last metric snapshots"
    )
    observations_keep_s: float = Field(
        default=3600.0, gt=0, description="metric snapshots kept in NATS for analysis"
    )
    inference_image: str = Field(default="edgegate/inference:latest")
    inference_nats_url: str = Field(
        default="nats://nats:4222", description="the NATS URL inference pods are given"
    )
    inference_metrics_snapshot_s: float = Field(default=5.0, gt=0)

    @property
    def watched_namespaces(self) -> list[str]:
        return [n.strip() for n in self.namespaces.split(",") if n.strip()]
