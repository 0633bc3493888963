"""Settings of the security service: `EDGEGATE_SECURITY_<FIELD>` or `--<field>`."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal, Self

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from edgegate_common.config import ServiceSettings
from edgegate_security.core import inspection


class SecuritySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EDGEGATE_SECURITY_")

    service_name: ClassVar[str] = "security"
    grpc_port: int = Field(default=50052, ge=0, le=65535)
    metrics_port: int = Field(default=9102, ge=0, le=65535, description="0 disables /metrics")

    # tokens
    issuer: str = Field(default="edgegate", description="the iss of the tokens we sign")
    trusted_issuers: list[str] = Field(
        default_factory=list, description="more issuers accepted (an identity provider's)"
    )
    audience: str = Field(default="edgegate", description="the aud tokens must carry")
    leeway_s: float = Field(default=30.0, ge=0, le=600, description="clock skew allowed")
    keys_dir: Path = Field(
        default=Path(".edgegate/keys"), description="signing keys (PEM), kept across restarts"
    )
    signing_alg: Literal["ES256", "RS256", "EdDSA"] = "ES256"
    keys_reload_s: float = Field(default=5.0, gt=0, description="re-read keys_dir this often")
    max_token_ttl_s: int = Field(default=24 * 3600, gt=0, description="longest token issued")
    jwks_url: str | None = Field(default=None, description="an identity provider's JWKS")
    jwks_cache_s: float = Field(default=300.0, gt=0)
    token_cache_size: int = Field(default=10_000, ge=0, description="verified tokens kept")
    allow_hs256: bool = Field(default=False, description="local development only")
    hs256_secret: str | None = Field(default=None, description="needs allow_hs256")

    # inspection
    max_part_bytes: int = Field(default=inspection.MAX_PART_BYTES, gt=0)
    max_total_bytes: int = Field(default=inspection.MAX_TOTAL_BYTES, gt=0)
    max_parts: int = Field(default=inspection.MAX_PARTS, gt=0)
    pii_max_scan_chars: int = Field(
        default=inspection.MAX_SCAN_CHARS, gt=0, description="longest text PII masking reads"
    )
    deny_patterns: dict[str, str] = Field(
        default_factory=dict, description='name -> regex, e.g. {"secrets": "password"}'
    )
    injection_threshold: float = Field(
        default=inspection.INJECTION_THRESHOLD, ge=0, description="0 turns it off"
    )
    pii_enabled: bool = Field(default=True, description="detect and mask PII in messages")
    pii_secrets_file: Path | None = Field(
        default=None, description="64 random bytes (token key, hash salt); default keys_dir/pii.key"
    )
    pii_operators: dict[str, str] = Field(
        default_factory=dict, description="entity -> mask|redact|replace|hash|tokenize"
    )
    pii_default_operator: Literal["mask", "redact", "replace", "hash", "tokenize"] = "mask"

    @model_validator(mode="after")
    def _hs256_needs_secret(self) -> Self:
        if self.allow_hs256 and not self.hs256_secret:
            raise ValueError("allow_hs256 needs hs256_secret")
        return self
