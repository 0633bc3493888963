"""Settings: environment variables and --flags, with clear errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from edgegate_gateway.config import GatewaySettings
from edgegate_inference.config import InferenceSettings


def test_defaults_are_the_documented_ports() -> None:
    assert GatewaySettings.from_args([]).grpc_port == 50051
    assert InferenceSettings.from_args([]).grpc_port == 8001


def test_environment_uses_the_service_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEGATE_GATEWAY_NATS_URL", "nats://a:4222, nats://b:4222")
    monkeypatch.setenv("EDGEGATE_INFERENCE_GRPC_PORT", "9001")
    gateway = GatewaySettings.from_args([])
    assert gateway.nats_servers == ["nats://a:4222", "nats://b:4222"]
    assert gateway.grpc_port == 50051  # another service's variable does not leak in
    assert InferenceSettings.from_args([]).grpc_port == 9001


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEGATE_GATEWAY_GRPC_PORT", "6000")
    settings = GatewaySettings.from_args(["--grpc-port", "7000", "--log-level", "debug"])
    assert settings.grpc_port == 7000
    assert settings.log_level == "debug"


def test_a_bad_value_names_the_field() -> None:
    with pytest.raises(ValidationError, match="grpc_port"):
        GatewaySettings(grpc_port=70000)


def test_tls_files_come_in_pairs() -> None:
    with pytest.raises(ValidationError, match="grpc_tls_cert and grpc_tls_key"):
        GatewaySettings(grpc_tls_cert="cert.pem")


def test_an_unknown_flag_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        GatewaySettings.from_args(["--no-such-flag", "1"])
    assert "no-such-flag" in capsys.readouterr().err
