"""skaffold.yaml: valid for skaffold/v4beta14, and consistent with the Dockerfiles and chart.

The skaffold binary is not obtainable here, so the file is checked against skaffold's own
JSON schema (deploy/tools/schemas, or SKAFFOLD_SCHEMA), and what skaffold would do with it is
checked piece by piece: every Dockerfile exists, every image it builds is handed to the
chart, and the values it sets render.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from support.helm_chart import REPO, template

SCHEMA = Path(
    os.environ.get(
        "SKAFFOLD_SCHEMA", REPO / "deploy" / "tools" / "schemas" / "skaffold-v4beta14.json"
    )
)
CONFIG: dict[str, Any] = yaml.safe_load((REPO / "skaffold.yaml").read_text(encoding="utf-8"))


def variants() -> dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """(artifacts, releases) of the base config and of each profile, as skaffold applies them."""
    base = (CONFIG["build"]["artifacts"], CONFIG["deploy"]["helm"]["releases"])
    out = {"base": base}
    for profile in CONFIG["profiles"]:
        artifacts = profile.get("build", {}).get("artifacts", base[0])
        releases = profile.get("deploy", {}).get("helm", {}).get("releases", base[1])
        out[profile["name"]] = (artifacts, releases)
    return out


def template_key(image: str) -> str:
    """Skaffold's template name for an image: non-alphanumerics become underscores."""
    return re.sub(r"[^A-Za-z0-9]", "_", image)


def test_it_validates_against_the_v4beta14_schema() -> None:
    assert CONFIG["apiVersion"] == "skaffold/v4beta14"
    assert SCHEMA.exists(), f"no skaffold schema at {SCHEMA}"
    jsonschema.validate(CONFIG, json.loads(SCHEMA.read_text(encoding="utf-8")))


def test_the_schema_check_can_fail() -> None:
    bad = {**CONFIG, "deploy": {"helm": {"releases": [{"chart": "typo"}]}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, json.loads(SCHEMA.read_text(encoding="utf-8")))


def test_every_service_has_an_artifact_built_from_its_dockerfile() -> None:
    artifacts, _ = variants()["base"]
    images = {a["image"]: a["docker"]["dockerfile"] for a in artifacts}
    assert images == {
        "edgegate/gateway": "services/gateway/Dockerfile",
        "edgegate/inference": "services/inference/Dockerfile",
        "edgegate/taskstore": "services/taskstore/Dockerfile",
        "edgegate/security": "services/security/Dockerfile",
        "edgegate/operator": "operator/Dockerfile",
    }
    for artifact in artifacts:
        assert artifact["context"] == "."  # the Dockerfiles need libs/ and protos/
        assert (REPO / artifact["docker"]["dockerfile"]).is_file(), artifact["image"]


@pytest.mark.parametrize("variant", sorted(variants()))
def test_every_built_image_reaches_the_chart_and_the_values_render(variant: str) -> None:
    artifacts, releases = variants()[variant]
    (release,) = releases
    assert release["chartPath"] == "deploy/helm/edgegate"
    templates = release["setValueTemplates"]
    for artifact in artifacts:
        key = template_key(artifact["image"])
        assert f"{{{{.IMAGE_REPO_{key}}}}}" in templates.values(), artifact["image"]
        assert f"{{{{.IMAGE_TAG_{key}}}}}" in templates.values(), artifact["image"]
    # What helm gets once skaffold has filled the templates in:
    sets = [f"{k}=filled-{k.split('.')[0]}" for k in templates]
    sets += [f"{k}={json.dumps(v)}" for k, v in release.get("setValues", {}).items()]
    files = [REPO / f for f in release.get("valuesFiles", [])]
    result = template(files, sets)
    assert result.returncode == 0, result.stderr


def test_no_profile_patches_a_list_by_position() -> None:
    for profile in CONFIG["profiles"]:
        assert "patches" not in profile, profile["name"]


def test_the_gpu_profile_builds_the_gpu_image_on_a_cuda_base() -> None:
    artifacts, releases = variants()["gpu"]
    (gpu,) = [a for a in artifacts if a["image"] == "edgegate/inference-gpu"]
    args = gpu["docker"]["buildArgs"]
    assert args["INFERENCE_EXTRA"] == "gpu"
    assert "nvidia" in args["BASE_IMAGE"]
    assert releases[0]["valuesFiles"] == ["deploy/helm/edgegate/examples/gpu.yaml"]
