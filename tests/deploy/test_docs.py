"""docs/deploy.md's values table is the schema's, current and complete."""

from __future__ import annotations

import subprocess
import sys

from support.helm_chart import REPO

TOOL = REPO / "deploy" / "tools" / "values_table.py"


def test_the_values_table_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(TOOL), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_the_table_lists_every_component_s_shared_shape() -> None:
    text = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
    for component in ("gateway", "inference", "taskstore", "security", "operator"):
        for value in ("image.repository", "replicas", "resources.limits", "env", "extraArgs",
                      "nodeSelector", "tolerations", "affinity", "topologySpreadConstraints",
                      "podAnnotations", "podDisruptionBudget.enabled"):  # fmt: skip
            assert f"| `{component}.{value}` |" in text, f"{component}.{value}"
    assert "| `inference.gpu.enabled` | boolean | `false` |" in text
