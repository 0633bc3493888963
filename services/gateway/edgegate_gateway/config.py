"""Settings of the gateway service: `EDGEGATE_GATEWAY_<FIELD>` or `--<field>`."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal, Self

from pydantic import Field, SecretStr, model_validator
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
    body_timeout_s: float = Field(default=30.0, gt=0, description="slower bodies get 408")

    # Messages accepted while NATS is unreachable wait here; unset: refused (503) instead
    outbox_dir: Path | None = Field(default=None, description="a local folder, kept on restart")
    outbox_max_entries: int = Field(default=10_000, ge=1)

    # Routing rules: channel / command prefix / model hint → model or pipeline (core/rules.py)
    routing_rules: Path | None = Field(default=None, description="a YAML file; unset: none")

    # The web console under /console (sign-in with an admin token)
    console_enabled: bool = Field(default=True, description="serve /console")
    console_operator_tenants: str = Field(
        default="operators",
        description="comma-separated tenants whose admins run the whole suite (force breakers, "
        "see every tenant's quota and traffic); other admins see only their own tenant",
    )
    traffic_snapshot_s: float = Field(
        default=5.0, ge=0, description="how often per-tenant traffic counts are published; 0: never"
    )

    # Calls the pipeline makes
    security_timeout_s: float = Field(default=2.0, gt=0)
    inference_timeout_s: float = Field(default=30.0, gt=0)

    # The default assistant (/v1/chat/completions); no folder: no assistant
    knowledge_dir: Path | None = Field(default=None, description="FAQ / document files")
    assistant_model: str = Field(default="all-MiniLM-L6-v2", description="embeds the passages")
    assistant_min_score: float = Field(default=0.5, ge=-1, le=1, description="cosine threshold")
    assistant_escalate: bool = Field(default=True, description="unanswered: an escalation task")

    # Chat webhooks answer with the assistant, as the tenant of this edgegate token
    webhook_credential: SecretStr | None = Field(default=None, description="a service token")
    telegram_secret_token: SecretStr | None = Field(default=None, description="setWebhook secret")
    telegram_bot_token: SecretStr | None = None
    telegram_api_base: str = "https://api.telegram.org"
    slack_signing_secret: SecretStr | None = None
    slack_bot_token: SecretStr | None = None
    slack_api_base: str = "https://slack.com"
    discord_public_key: str | None = Field(default=None, description="the application's, hex")
    discord_api_base: str = "https://discord.com/api/v10"
    whatsapp_app_secret: SecretStr | None = None
    whatsapp_verify_token: SecretStr | None = None
    whatsapp_access_token: SecretStr | None = None
    whatsapp_api_base: str = "https://graph.facebook.com/v21.0"

    # MQTT: devices' requests from a broker, answered with this token's tenant; unset: off
    mqtt_host: str | None = None
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    mqtt_prefix: str = Field(default="edgegate/v1", description="<prefix>/<device>/request")
    mqtt_credential: SecretStr | None = Field(default=None, description="a service token")
    mqtt_client_id: str = Field(default="", description="unique per replica; empty: host name")
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None

    # Circuit breaker, one per model version
    breaker_window_s: float = Field(default=30.0, gt=0)
    breaker_min_calls: int = Field(default=20, ge=1)
    breaker_failure_rate: float = Field(default=0.5, gt=0, le=1)
    breaker_slow_call_s: float = Field(default=5.0, gt=0)
    breaker_slow_call_rate: float = Field(default=0.8, gt=0, le=1)
    breaker_open_s: float = Field(default=5.0, gt=0, description="doubles while it keeps failing")
    breaker_max_open_s: float = Field(default=60.0, gt=0)
    breaker_probes: int = Field(default=3, ge=1, description="half-open test calls")

    # Shadow traffic (a route's "shadow"): copies compared with the answer the caller got
    shadow_min_cosine: float = Field(
        default=0.99, ge=-1, le=1, description="float outputs agree at this cosine per row"
    )
    shadow_max_in_flight: int = Field(default=32, ge=1, description="more copies are dropped")
    agreement_snapshot_s: float = Field(
        default=5.0, ge=0, description="how often agreement counts are published; 0: never"
    )

    # Cloud fallback: OpenAI-compatible HTTP, or a remote OIP v2 gRPC server; unset: none
    fallback_protocol: Literal["openai", "oip"] = "openai"
    fallback_url: str | None = Field(
        default=None, description="https://api.openai.com/v1, or host:port for oip"
    )
    fallback_api_key: SecretStr | None = None
    fallback_api_key_file: Path | None = Field(
        default=None, description="the same key read from a file (a mounted Secret)"
    )
    fallback_model: str = Field(default="", description="the cloud's model name; empty: same")
    fallback_max_concurrency: int = Field(default=8, ge=1)
    fallback_timeout_s: float = Field(default=10.0, gt=0)
    fallback_chat_model: str = Field(default="", description="answers below the threshold")

    @model_validator(mode="after")
    def _one_fallback_key(self) -> Self:
        if self.fallback_api_key is not None and self.fallback_api_key_file is not None:
            raise ValueError("set fallback_api_key or fallback_api_key_file, not both")
        return self

    def operator_tenants(self) -> frozenset[str]:
        return frozenset(t.strip() for t in self.console_operator_tenants.split(",") if t.strip())

    def fallback_key(self) -> str:
        """The cloud fallback's API key ("" for none), read from its file when it has one.

        Read when asked rather than at validation, so that a settings dump never holds it;
        a Kubernetes Secret mounted as a file keeps it out of the pod's environment too.
        """
        if self.fallback_api_key_file is not None:
            return self.fallback_api_key_file.read_text(encoding="utf-8").strip()
        return self.fallback_api_key.get_secret_value() if self.fallback_api_key else ""
