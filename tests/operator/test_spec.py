"""Reading a ModelDeployment's spec: the contract's defaults, and what the schema cannot refuse.

A spec the CRD lets through but the operator cannot act on must become a SpecError whose
message names the field (it is the Degraded condition an SRE reads), never a crash.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from support.crd_schema import REPO, checker

from edgegate_operator.core import (
    AnalysisPolicy,
    Analyze,
    BreakerOverride,
    ModelDeploymentSpec,
    Pause,
    SetWeight,
    SpecError,
)
from edgegate_operator.core.spec import describe_step
from edgegate_operator.core.units import format_time, parse_duration_ms, parse_time

MODEL = {"name": "m", "version": "1", "uri": "file:///models/m/1/model.onnx"}


def spec_with(**fields: Any) -> dict[str, Any]:
    return {"model": dict(MODEL), **fields}


def test_a_minimal_spec_gets_the_contracts_defaults() -> None:
    spec = ModelDeploymentSpec.from_dict(spec_with())
    assert spec.replicas == 1
    assert spec.paused is False
    assert spec.execution_providers == ("cpu",)
    assert spec.breakers == ()
    # No steps: one step, all traffic to the canary once it is ready, then promotion.
    assert spec.canary.steps == (SetWeight(100),)
    assert spec.canary.shadow_percent == 0
    assert spec.canary.progress_deadline_s == 600
    assert spec.canary.analysis == AnalysisPolicy(
        interval_ms=30_000,
        max_error_rate=0.01,
        max_p99_latency_s=1.0,
        min_requests=20,
        failure_limit=2,
        inconclusive_limit=3,
        min_agreement=None,
    )


def test_the_example_resource_reads_as_written() -> None:
    raw = yaml.safe_load((REPO / "deploy/examples/modeldeployment.yaml").read_text())
    spec = ModelDeploymentSpec.from_dict(checker("modeldeployments").defaulted(raw)["spec"])
    assert spec.model.version == "2"
    assert spec.model.sha256 is not None
    assert spec.replicas == 3
    assert spec.canary.steps == (
        SetWeight(5),
        Pause(300_000),
        Analyze(30_000),  # no interval of its own: canary.analysis.interval
        SetWeight(25),
        Analyze(60_000),
        Pause(None),
        SetWeight(50),
        Analyze(30_000),
        SetWeight(100),
        Analyze(30_000),
    )
    assert spec.canary.analysis.min_agreement == 0.98
    assert spec.canary.analysis.max_p99_latency_s == 0.25
    assert spec.canary.progress_deadline_s == 900


def test_breaker_overrides_are_read_per_version() -> None:
    spec = ModelDeploymentSpec.from_dict(
        spec_with(breakers=[{"version": "1", "mode": "open"}, {"version": "2"}])
    )
    assert spec.breakers == (BreakerOverride("1", "open"), BreakerOverride("2", "auto"))
    assert spec.breaker_mode("1") == "open"
    assert spec.breaker_mode("3") == "auto"


BAD: list[tuple[dict[str, Any], str]] = [
    ({}, "spec.model is required"),
    ({"model": {**MODEL, "version": "-1"}}, "spec.model.version"),
    ({"model": {**MODEL, "uri": "ftp://x/m.onnx"}}, "spec.model.uri"),
    ({"model": {**MODEL, "sha256": "ABC"}}, "spec.model.sha256"),
    (spec_with(replicas="3"), "spec.replicas is '3'; it must be a whole number"),
    (spec_with(replicas=True), "spec.replicas is True"),
    (spec_with(replicas=101), "spec.replicas is 101; at most 100"),
    (spec_with(paused="yes"), "spec.paused must be true or false"),
    (
        spec_with(canary={"steps": [{"setWeight": 10, "pause": {}}, {"setWeight": 100}]}),
        "spec.canary.steps[0] must have exactly one of setWeight, pause, analysis",
    ),
    (spec_with(canary={"steps": [{}]}), "exactly one of setWeight, pause, analysis (has none)"),
    (
        spec_with(canary={"steps": [{"setWeight": 50}, {"setWeight": 10}, {"setWeight": 100}]}),
        "spec.canary.steps[1] sets weight 10 after steps[0] set 50: weights may only go up",
    ),
    (
        spec_with(canary={"steps": [{"setWeight": 20}, {"analysis": {}}]}),
        "spec.canary.steps never reaches setWeight 100",
    ),
    (
        spec_with(canary={"steps": [{"pause": {"duration": "5 minutes"}}, {"setWeight": 100}]}),
        "spec.canary.steps[0].pause.duration: '5 minutes' is not a duration",
    ),
    (
        spec_with(canary={"steps": [{"analysis": {"interval": "0s"}}, {"setWeight": 100}]}),
        "spec.canary.steps[0].analysis.interval must be longer than 0",
    ),
    (
        spec_with(
            canary={
                "steps": [{"setWeight": 100}, {"analysis": {"interval": "2h"}}],
                "progressDeadlineSeconds": 600,
            }
        ),
        "spec.canary.steps[1]: the analysis interval (analysis 7200s) is longer than "
        "progressDeadlineSeconds (600)",
    ),
    (spec_with(canary={"analysis": {"interval": "30"}}), "spec.canary.analysis.interval"),
    (
        spec_with(canary={"analysis": {"minAgreement": 0.9}}),
        "minAgreement needs spec.canary.shadowPercent > 0",
    ),
    (spec_with(canary={"analysis": {"maxErrorRate": 1.5}}), "maxErrorRate is 1.5"),
    (spec_with(canary={"analysis": {"maxP99LatencySeconds": 0}}), "it must be > 0"),
    (spec_with(canary={"analysis": {"failureLimit": 0}}), "failureLimit is 0"),
    (spec_with(canary={"steps": [{"setWeight": 100}] * 33}), "33 steps; at most 32"),
    (
        spec_with(resources={"limits": {"nvidia.com/gpu": 1}}),
        "has neither cuda nor tensorrt: the GPU would sit idle",
    ),
    (spec_with(runtime={"executionProviders": ["rocm"]}), "'rocm' is not one of"),
    (
        spec_with(breakers=[{"version": "1", "mode": "open"}, {"version": "1", "mode": "auto"}]),
        "version '1' has a breaker override already",
    ),
    (spec_with(breakers=[{"version": "1", "mode": "half"}]), "spec.breakers[0].mode is 'half'"),
]


@pytest.mark.parametrize(("spec", "says"), BAD)
def test_what_the_schema_cannot_refuse_is_a_spec_error_naming_the_field(
    spec: dict[str, Any], says: str
) -> None:
    with pytest.raises(SpecError) as caught:
        ModelDeploymentSpec.from_dict(copy.deepcopy(spec))
    assert says in str(caught.value)


def test_gpu_limits_with_a_gpu_provider_are_fine() -> None:
    spec = spec_with(
        resources={"limits": {"nvidia.com/gpu": 1}}, runtime={"executionProviders": ["cuda"]}
    )
    assert ModelDeploymentSpec.from_dict(spec).execution_providers == ("cuda",)


def test_steps_are_described_for_messages() -> None:
    assert describe_step(SetWeight(20)) == "setWeight 20"
    assert describe_step(Pause(None)) == "pause (until resumed)"
    assert describe_step(Pause(90_000)) == "pause 90s"
    assert describe_step(Analyze(500)) == "analysis 0.5s"


def test_durations_parse_in_their_units() -> None:
    assert parse_duration_ms("500ms", field="f") == 500
    assert parse_duration_ms("30s", field="f") == 30_000
    assert parse_duration_ms("5m", field="f") == 300_000
    assert parse_duration_ms("2h", field="f") == 7_200_000
    for bad in ("30", "1.5s", "s", "-1s", 30, None):
        with pytest.raises(ValueError, match=r"f: .* is not a duration"):
            parse_duration_ms(bad, field="f")


@given(st.integers(min_value=0, max_value=4_102_444_800_000))
def test_times_survive_their_text_form_to_the_millisecond(at_ms: int) -> None:
    text = format_time(at_ms)
    assert text.endswith("Z")
    assert parse_time(text, field="t") == at_ms


def test_kubernetes_times_without_fractions_are_read() -> None:
    assert parse_time("1970-01-01T00:00:01Z", field="t") == 1000
    assert parse_time("1970-01-01T01:00:00+01:00", field="t") == 0
    with pytest.raises(ValueError, match="t: 'yesterday' is not an RFC 3339 time"):
        parse_time("yesterday", field="t")
