"""Gateway settings that the Helm chart relies on."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from edgegate_gateway.config import GatewaySettings


def test_the_fallback_key_is_read_from_its_file(tmp_path: Path) -> None:
    """The chart mounts the fallback's API key Secret as a file, not an environment variable."""
    key = tmp_path / "api-key"
    key.write_text("sk-cloud-123\n", encoding="utf-8")
    settings = GatewaySettings(fallback_api_key_file=key)
    assert settings.fallback_key() == "sk-cloud-123"
    assert "sk-cloud-123" not in repr(settings)
    key.write_text("sk-rotated", encoding="utf-8")  # read when asked, not when settings load
    assert settings.fallback_key() == "sk-rotated"


def test_the_fallback_key_from_the_environment_still_works() -> None:
    assert GatewaySettings(fallback_api_key="sk-env").fallback_key() == "sk-env"
    assert GatewaySettings().fallback_key() == ""


def test_a_key_and_a_key_file_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="fallback_api_key or fallback_api_key_file"):
        GatewaySettings(fallback_api_key="a", fallback_api_key_file=tmp_path / "k")
