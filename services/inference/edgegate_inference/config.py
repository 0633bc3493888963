"""Settings of the inference service: `EDGEGATE_INFERENCE_<FIELD>` or `--<field>`."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from edgegate_common.config import ServiceSettings

MIN_REPOSITORY_KEY_CHARS = 16


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

    # Repository control (RepositoryModelLoad/Unload) is off unless the operator sets a key;
    # then a call must carry it in the `edgegate-repository-key` metadata.
    repository_control_key: SecretStr | None = Field(
        default=None, description="enables load/unload RPCs for callers that present this key"
    )
    repository_control_key_file: Path | None = Field(
        default=None, description="the same key read from a file (a mounted Secret)"
    )

    @model_validator(mode="after")
    def _one_key(self) -> Self:
        if self.repository_control_key is not None and self.repository_control_key_file:
            raise ValueError("set repository_control_key or repository_control_key_file, not both")
        return self

    def repository_key(self) -> SecretStr | None:
        """The repository-control key, read from its file when it has one; None: control is off.

        Read here rather than at validation so that a settings dump never holds it. A key
        shorter than MIN_REPOSITORY_KEY_CHARS is refused: it could be guessed.
        """
        key = self.repository_control_key
        if self.repository_control_key_file is not None:
            key = SecretStr(self.repository_control_key_file.read_text(encoding="utf-8").strip())
        if key is not None and len(key.get_secret_value()) < MIN_REPOSITORY_KEY_CHARS:
            raise ValueError(
                f"the repository control key must be at least {MIN_REPOSITORY_KEY_CHARS} characters"
            )
        return key
