"""Bad values fail at render time, with a message that names the value.

values.schema.json types every value and refuses unknown keys; what a schema cannot say
(one value against another) the chart's own checks refuse. Each case is run through the
real `helm template`, which is what `helm install` does first.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from support.helm_chart import CHART, EXAMPLES, template

SCHEMA = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))

# (--set pairs, text the error must contain: the value's path and what is wrong)
REFUSED: list[tuple[list[str], list[str]]] = [
    (["gateway.replicas=two"], ["/gateway/replicas", "integer"]),
    (["gateway.replica=2"], ["/gateway", "replica"]),
    (["gatway.replicas=2"], ["gatway"]),
    (["nats.replicas=2"], ["/nats/replicas", "3"]),
    (["inference.gpu.enabled=true"], ["/inference/gpu/image/repository"]),
    (["nats.enabled=false"], ["/nats/external/url"]),
    (["nats.external.url=http://nats:4222", "nats.enabled=false"], ["/nats/external/url"]),
    (["gateway.image.pullPolicy=Sometimes"], ["/gateway/image/pullPolicy"]),
    (["security.image.digest=latest"], ["/security/image/digest"]),
    (["security.signingKeys.algorithm=HS256"], ["/security/signingKeys/algorithm"]),
    (["gateway.fallback.apiKeySecret.name=cloud"], ["/gateway/fallback/apiKeySecret/key"]),
    (["gateway.ingress.enabled=true"], ["/gateway/ingress/hosts"]),
    (["inference.models[0].name=m", "inference.models[0].version=1",
      "inference.models[0].uri=s3://bucket/m.onnx"], ["/inference/models/0/uri"]),
    (["operator.watchNamespaces[0]=Team_A"], ["/operator/watchNamespaces/0"]),
    (["networkPolicy.apiServerCIDRs[0]=10.0.0.1"], ["/networkPolicy/apiServerCIDRs/0"]),
    # Checked by the chart itself (templates/_helpers.tpl, edgegate.validate):
    (["gateway.autoscaling.enabled=true", "gateway.autoscaling.minReplicas=5",
      "gateway.autoscaling.maxReplicas=2"], ["gateway.autoscaling.minReplicas (5)"]),
    (["inference.models[0].name=m", "inference.models[0].version=1",
      "inference.models[0].uri=https://x/m.onnx",
      "inference.modelVolume.persistentVolumeClaim.claimName=models"],
     ["inference.models", "inference.modelVolume"]),
    (["nats.external.url=nats://elsewhere:4222"], ["nats.external.url", "nats.enabled"]),
    (["inference.models[0].name=m", "inference.models[0].version=1",
      "inference.models[0].uri=https://x/m.onnx", "inference.models[1].name=m",
      "inference.models[1].version=1", "inference.models[1].uri=https://x/n.onnx"],
     ["inference.models lists m/1 twice"]),
]  # fmt: skip


@pytest.mark.parametrize(("sets", "expected"), REFUSED, ids=[" ".join(s) for s, _ in REFUSED])
def test_bad_values_are_refused_naming_the_value(sets: list[str], expected: list[str]) -> None:
    result = template(sets=sets)
    assert result.returncode != 0, f"accepted: {sets}"
    for text in expected:
        assert text in result.stderr, result.stderr


def test_the_good_forms_of_the_same_values_render() -> None:
    """The refusals above are about the values, not about --set or the chart failing anyway."""
    result = template(
        sets=[
            "gateway.replicas=2",
            "nats.replicas=3",
            "inference.gpu.enabled=true",
            "inference.gpu.image.repository=edgegate/inference-gpu",
            "nats.enabled=false",
            "nats.external.url=nats://elsewhere:4222",
            "security.signingKeys.algorithm=EdDSA",
            "gateway.fallback.apiKeySecret.name=cloud",
            "gateway.fallback.apiKeySecret.key=api-key",
        ]
    )
    assert result.returncode == 0, result.stderr


def test_the_schema_refuses_unknown_keys_everywhere_it_owns_them() -> None:
    """Every object the schema defines (not Kubernetes pass-throughs) closes its keys."""
    open_objects = []

    def walk(node: dict[str, object], path: str) -> None:
        closed = node.get("additionalProperties") is False
        if node.get("type") == "object" and "properties" in node and not closed:
            open_objects.append(path)
        for key, sub in dict(node.get("properties", {})).items():
            walk(sub, f"{path}.{key}")
        for key, sub in dict(node.get("definitions", {})).items():
            walk(sub, f"#{key}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")

    walk(SCHEMA, "")
    assert open_objects == []


def test_every_value_is_described() -> None:
    """docs/deploy.md's table comes from these descriptions."""
    missing = []

    def walk(node: dict[str, object], path: str) -> None:
        for key, sub in dict(node.get("properties", {})).items():
            if not sub.get("description"):
                missing.append(f"{path}.{key}")
            target = sub
            if "$ref" in sub:
                target = SCHEMA["definitions"][sub["$ref"].rsplit("/", 1)[1]]
            walk(target, f"{path}.{key}")

    walk(SCHEMA, "")
    assert missing == []


@pytest.mark.parametrize("path", [CHART / "values.yaml", *EXAMPLES], ids=lambda p: p.name)
def test_the_defaults_and_examples_fit_the_schema(path: Path) -> None:
    values = yaml.safe_load(path.read_text(encoding="utf-8"))
    if path.name == "values.yaml":
        jsonschema.validate(values, SCHEMA)
    else:  # an example overrides part of the defaults: check the merge, as helm does
        merged = merge(yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8")), values)
        jsonschema.validate(merged, SCHEMA)


def merge(base: dict[str, object], override: dict[str, object]) -> dict[str, object]:
    out = dict(base)
    for key, value in override.items():
        current = out.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            out[key] = merge(current, value)
        else:
            out[key] = value
    return out
