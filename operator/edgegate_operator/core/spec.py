"""A ModelDeployment's `spec`, read into frozen dataclasses.

The CRD's schema refuses most bad input at the API server. What it cannot
see is checked here and raised as `SpecError`, whose message becomes the
resource's Degraded condition: the operator keeps traffic where it was and
waits for a corrected spec instead of crash-looping. Those checks:

- canary steps: exactly one of setWeight / pause / analysis per step (the
  CEL rule's twin, for clusters without CEL), weights that never go down,
  and a list that reaches `setWeight: 100`. Promotion moves all traffic at
  once, so a canary must have carried all of it under analysis first; an
  SRE who wants the jump says so with `promote --full`. No steps at all
  means one step, `setWeight: 100`: the new version takes over once ready.
- durations that parse (`30s`, `500ms`), an analysis interval above zero
  and within the progress deadline (a longer one could never finish);
- `minAgreement` only with shadow traffic, a GPU limit only with a GPU
  execution provider, one breaker override per version.

Fields the operator core does not act on (fallback, runtime batching,
resources other than the GPU check) are left to the adapters that use them.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeAlias, TypeVar, cast

from edgegate_operator.core.units import parse_duration_ms

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_URI = re.compile(r"^(file|pvc|s3|gs|https?|oci)://\S+$")
_SHA256 = re.compile(r"^[a-f0-9]{64}$")
_PROVIDERS = ("tensorrt", "cuda", "cpu")
_MAX_STEPS = 32

BreakerMode: TypeAlias = Literal["auto", "open", "closed"]
_T = TypeVar("_T")


class SpecError(ValueError):
    """What is wrong with a spec, worded for a Degraded condition's message."""


@dataclass(frozen=True, slots=True)
class ModelRef:
    name: str
    version: str
    uri: str
    sha256: str | None = None


@dataclass(frozen=True, slots=True)
class SetWeight:
    weight: int


@dataclass(frozen=True, slots=True)
class Pause:
    duration_ms: int | None = None  # None: until resumed or promoted


@dataclass(frozen=True, slots=True)
class Analyze:
    interval_ms: int


Step: TypeAlias = SetWeight | Pause | Analyze


@dataclass(frozen=True, slots=True)
class AnalysisPolicy:
    interval_ms: int = 30_000
    max_error_rate: float = 0.01
    max_p99_latency_s: float = 1.0
    min_requests: int = 20
    failure_limit: int = 2
    inconclusive_limit: int = 3
    min_agreement: float | None = None


@dataclass(frozen=True, slots=True)
class CanaryPolicy:
    steps: tuple[Step, ...] = (SetWeight(100),)
    analysis: AnalysisPolicy = field(default_factory=AnalysisPolicy)
    shadow_percent: int = 0
    progress_deadline_s: int = 600


@dataclass(frozen=True, slots=True)
class BreakerOverride:
    version: str
    mode: BreakerMode


@dataclass(frozen=True, slots=True)
class ModelDeploymentSpec:
    model: ModelRef
    replicas: int = 1
    canary: CanaryPolicy = field(default_factory=CanaryPolicy)
    breakers: tuple[BreakerOverride, ...] = ()
    paused: bool = False
    execution_providers: tuple[str, ...] = ("cpu",)

    @classmethod
    def from_dict(cls, spec: Mapping[str, object]) -> ModelDeploymentSpec:
        """Read a CR's spec (defaults per the contract); SpecError says what is wrong."""
        try:
            return _parse(spec)
        except SpecError:
            raise
        except ValueError as exc:
            raise SpecError(str(exc)) from None

    def breaker_mode(self, version: str) -> BreakerMode:
        return next((o.mode for o in self.breakers if o.version == version), "auto")


def describe_step(step: Step) -> str:
    """`setWeight 20`, `pause 30s`, `pause (until resumed)`, `analysis 1m`: for messages."""
    if isinstance(step, SetWeight):
        return f"setWeight {step.weight}"
    if isinstance(step, Pause):
        if step.duration_ms is None:
            return "pause (until resumed)"
        return f"pause {step.duration_ms / 1000:g}s"
    return f"analysis {step.interval_ms / 1000:g}s"


def _parse(spec: Mapping[str, object]) -> ModelDeploymentSpec:
    model = _obj(spec, "model", "spec.model", required=True)
    ref = ModelRef(
        name=_text(model, "name", "spec.model.name", pattern=_NAME),
        version=_text(model, "version", "spec.model.version", pattern=_VERSION),
        uri=_text(model, "uri", "spec.model.uri", pattern=_URI),
        sha256=None
        if model.get("sha256") is None
        else _text(model, "sha256", "spec.model.sha256", pattern=_SHA256),
    )
    providers = _providers(_obj(spec, "runtime", "spec.runtime"))
    _check_gpu(_obj(spec, "resources", "spec.resources"), providers)
    return ModelDeploymentSpec(
        model=ref,
        replicas=_int(spec, "replicas", "spec.replicas", default=1, lo=0, hi=100),
        canary=_canary(_obj(spec, "canary", "spec.canary")),
        breakers=_breakers(spec.get("breakers", [])),
        paused=_typed(spec.get("paused", False), bool, "spec.paused", "true or false"),
        execution_providers=providers,
    )


def _canary(doc: Mapping[str, object]) -> CanaryPolicy:
    policy = _analysis(_obj(doc, "analysis", "spec.canary.analysis"))
    shadow = _int(doc, "shadowPercent", "spec.canary.shadowPercent", default=0, lo=0, hi=100)
    if policy.min_agreement is not None and shadow == 0:
        raise SpecError(
            "spec.canary.analysis.minAgreement needs spec.canary.shadowPercent > 0: "
            "agreement is measured on shadow traffic"
        )
    deadline_s = _int(
        doc, "progressDeadlineSeconds", "spec.canary.progressDeadlineSeconds",
        default=600, lo=1, hi=86_400,
    )  # fmt: skip
    steps = _steps(doc.get("steps", []), default_interval_ms=policy.interval_ms)
    for index, step in enumerate(steps):
        if isinstance(step, Analyze) and step.interval_ms > deadline_s * 1000:
            raise SpecError(
                f"spec.canary.steps[{index}]: the analysis interval ({describe_step(step)}) is "
                f"longer than progressDeadlineSeconds ({deadline_s}): it could never finish"
            )
    return CanaryPolicy(
        steps=steps, analysis=policy, shadow_percent=shadow, progress_deadline_s=deadline_s
    )


def _analysis(doc: Mapping[str, object]) -> AnalysisPolicy:
    where = "spec.canary.analysis"
    agreement = doc.get("minAgreement")
    return AnalysisPolicy(
        interval_ms=_interval_ms(doc.get("interval", "30s"), f"{where}.interval"),
        max_error_rate=_num(doc, "maxErrorRate", f"{where}.maxErrorRate", 0.01, hi=1),
        max_p99_latency_s=_num(
            doc, "maxP99LatencySeconds", f"{where}.maxP99LatencySeconds", 1.0, positive=True
        ),
        min_requests=_int(doc, "minRequests", f"{where}.minRequests", default=20, lo=1),
        failure_limit=_int(doc, "failureLimit", f"{where}.failureLimit", default=2, lo=1),
        inconclusive_limit=_int(
            doc, "inconclusiveLimit", f"{where}.inconclusiveLimit", default=3, lo=1
        ),
        min_agreement=None
        if agreement is None
        else _num(doc, "minAgreement", f"{where}.minAgreement", 0.0, hi=1),
    )


def _steps(raw: object, *, default_interval_ms: int) -> tuple[Step, ...]:
    items = _typed(raw, list, "spec.canary.steps", "a list")
    if len(items) > _MAX_STEPS:
        raise SpecError(f"spec.canary.steps has {len(items)} steps; at most {_MAX_STEPS}")
    if not items:
        return (SetWeight(100),)
    steps = tuple(
        _step(item, f"spec.canary.steps[{i}]", default_interval_ms) for i, item in enumerate(items)
    )
    weights = [(i, s.weight) for i, s in enumerate(steps) if isinstance(s, SetWeight)]
    for (before, low), (at, high) in itertools.pairwise(weights):
        if high < low:
            raise SpecError(
                f"spec.canary.steps[{at}] sets weight {high} after steps[{before}] set {low}: "
                "weights may only go up (abort is how traffic goes back)"
            )
    if not weights or weights[-1][1] != 100:
        raise SpecError(
            "spec.canary.steps never reaches setWeight 100: add {setWeight: 100} as the last "
            "weight step (promotion would otherwise move all traffic at once, unanalysed)"
        )
    return steps


def _step(raw: object, where: str, default_interval_ms: int) -> Step:
    item = _typed(raw, dict, where, "an object")
    keys = sorted(k for k in ("setWeight", "pause", "analysis") if k in item)
    if len(keys) != 1:
        raise SpecError(
            f"{where} must have exactly one of setWeight, pause, analysis (has {keys or 'none'})"
        )
    if keys == ["setWeight"]:
        return SetWeight(_int(item, "setWeight", f"{where}.setWeight", default=0, lo=0, hi=100))
    if keys == ["pause"]:
        pause = _typed(item["pause"] or {}, dict, f"{where}.pause", "an object")
        if pause.get("duration") is None:
            return Pause(None)
        return Pause(parse_duration_ms(pause["duration"], field=f"{where}.pause.duration"))
    analysis = _typed(item["analysis"] or {}, dict, f"{where}.analysis", "an object")
    interval = analysis.get("interval")
    if interval is None:
        return Analyze(default_interval_ms)
    return Analyze(_interval_ms(interval, f"{where}.analysis.interval"))


def _interval_ms(raw: object, where: str) -> int:
    interval_ms = parse_duration_ms(raw, field=where)
    if interval_ms <= 0:
        raise SpecError(f"{where} must be longer than 0")
    return interval_ms


def _breakers(raw: object) -> tuple[BreakerOverride, ...]:
    overrides: list[BreakerOverride] = []
    for i, entry in enumerate(_typed(raw, list, "spec.breakers", "a list")):
        where = f"spec.breakers[{i}]"
        item = _typed(entry, dict, where, "an object")
        version = _text(item, "version", f"{where}.version", pattern=_VERSION)
        mode = item.get("mode", "auto")
        if mode not in ("auto", "open", "closed"):
            raise SpecError(f"{where}.mode is {mode!r}; one of auto, open, closed")
        if any(o.version == version for o in overrides):
            raise SpecError(f"{where}: version {version!r} has a breaker override already")
        overrides.append(BreakerOverride(version=version, mode=cast(BreakerMode, mode)))
    return tuple(overrides)


def _providers(runtime: Mapping[str, object]) -> tuple[str, ...]:
    where = "spec.runtime.executionProviders"
    raw = _typed(runtime.get("executionProviders", ["cpu"]), list, where, "a list")
    for provider in raw:
        if provider not in _PROVIDERS:
            raise SpecError(f"{where}: {provider!r} is not one of {', '.join(_PROVIDERS)}")
    if len(set(raw)) != len(raw) or not raw:
        raise SpecError(f"{where} must list each provider once, at least one")
    return tuple(cast(list[str], raw))


def _check_gpu(resources: Mapping[str, object], providers: tuple[str, ...]) -> None:
    limits = _obj(resources, "limits", "spec.resources.limits")
    gpus = limits.get("nvidia.com/gpu")
    if gpus in (None, 0, "0") or {"cuda", "tensorrt"} & set(providers):
        return
    raise SpecError(
        "spec.resources.limits asks for nvidia.com/gpu but spec.runtime.executionProviders "
        f"({', '.join(providers)}) has neither cuda nor tensorrt: the GPU would sit idle"
    )


def _obj(
    doc: Mapping[str, object], key: str, where: str, *, required: bool = False
) -> Mapping[str, object]:
    if key not in doc or doc[key] is None:
        if required:
            raise SpecError(f"{where} is required")
        return {}
    return cast(Mapping[str, object], _typed(doc[key], dict, where, "an object"))


def _text(doc: Mapping[str, object], key: str, where: str, *, pattern: re.Pattern[str]) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not pattern.match(value):
        raise SpecError(f"{where} is {value!r}; it must match {pattern.pattern}")
    return value


def _int(
    doc: Mapping[str, object], key: str, where: str, *, default: int, lo: int,
    hi: int | None = None,
) -> int:  # fmt: skip
    value = doc.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
        raise SpecError(f"{where} is {value!r}; it must be a whole number >= {lo}")
    if hi is not None and value > hi:
        raise SpecError(f"{where} is {value}; at most {hi}")
    return value


def _num(
    doc: Mapping[str, object], key: str, where: str, default: float, *,
    hi: float | None = None, positive: bool = False,
) -> float:  # fmt: skip
    value = doc.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise SpecError(f"{where} is {value!r}; it must be a number")
    if value < 0 or (positive and value == 0) or (hi is not None and value > hi):
        bounds = "> 0" if positive else ">= 0" if hi is None else f"between 0 and {hi:g}"
        raise SpecError(f"{where} is {value}; it must be {bounds}")
    return float(value)


def _typed(value: object, kind: type[_T], where: str, what: str) -> _T:
    if not isinstance(value, kind):
        raise SpecError(f"{where} must be {what}, not {type(value).__name__}")
    return value
