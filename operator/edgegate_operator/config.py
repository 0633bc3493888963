"""Settings of the operator: `EDGEGATE_OPERATOR_<FIELD>` or `--<field>`."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from edgegate_common.config import ServiceSettings
from edgegate_operator.core.peering import DEFAULT_LIFETIME_S, MAX_PRIORITY


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
    # Replicas (kopf peering): one acts, the others wait to take over.
    peering: str = Field(
        default="",
        description="the kopf peering object's name (ClusterKopfPeering when all namespaces "
        "are watched, else a KopfPeering in each); empty: standalone, one replica only",
    )
    priority: int = Field(
        default=0,
        ge=0,
        description=f"peering priority, the highest acts; 0: a random one in 1..{MAX_PRIORITY}",
    )
    peering_lifetime_s: int = Field(
        default=DEFAULT_LIFETIME_S,
        ge=1,
        description="a replica that died is taken over from this long after its last keep-alive",
    )
    peering_read_s: float = Field(
        default=2.0, gt=0, description="the resync re-reads the peering object at most this often"
    )
    health_port: int = Field(
        default=8081, ge=0, le=65535, description="GET /healthz (kopf's liveness); 0 disables"
    )

    @property
    def watched_namespaces(self) -> list[str]:
        return [n.strip() for n in self.namespaces.split(",") if n.strip()]
