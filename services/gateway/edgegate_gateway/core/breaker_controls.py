"""The operator's breaker document for one model, from NATS KV `edgegate-breakers`.

    {"modes": {"1": "auto", "2": "open"},
     "breaker": {"windowSeconds": 30, "minCalls": 20, "failureRate": 0.5,
                 "slowCallSeconds": 2, "slowCallRate": 0.8, "openSeconds": 10,
                 "maxOpenSeconds": 300, "probes": 3},
     "fallback": {"endpoint": "https://...", "protocol": "openai", "model": "x"}}

Every section is optional, and each is read on its own: a bad `breaker`
must not undo a good `modes` (the operator may be forcing a broken version
open at that very moment). Each reader raises ValueError saying what is
wrong; the caller logs it and keeps what it had for that section.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from edgegate_gateway.core.breaker import BreakerPolicy, Mode

# The document's camelCase fields → BreakerPolicy's, with what each must be.
_POLICY_FIELDS: dict[str, tuple[str, type[int] | type[float]]] = {
    "windowSeconds": ("window_s", float),
    "minCalls": ("min_calls", int),
    "failureRate": ("failure_rate", float),
    "slowCallSeconds": ("slow_call_s", float),
    "slowCallRate": ("slow_call_rate", float),
    "openSeconds": ("open_s", float),
    "maxOpenSeconds": ("max_open_s", float),
    "probes": ("probes", int),
}
_RATES = ("failure_rate", "slow_call_rate")


def modes(doc: Mapping[str, Any]) -> dict[str, Mode]:
    """The forced mode of each version the document names (none: every version AUTO)."""
    raw = doc.get("modes", {})
    if not isinstance(raw, dict):
        raise ValueError('"modes" must be {"<version>": "auto" | "open" | "closed", ...}')
    known = {m.value: m for m in Mode}
    for version, mode in raw.items():
        if mode not in known:
            raise ValueError(f'the mode of version {version!r} must be "auto", "open" or "closed"')
    return {str(version): known[mode] for version, mode in raw.items()}


def policy(doc: Mapping[str, Any], *, base: BreakerPolicy) -> BreakerPolicy | None:
    """`base` with the fields `breaker` sets; None when the document has no `breaker`."""
    raw = doc.get("breaker")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValueError('"breaker" must be an object of breaker settings')
    unknown = sorted(set(raw) - set(_POLICY_FIELDS))
    if unknown:
        raise ValueError(f'"breaker" has unknown fields {unknown}; known: {sorted(_POLICY_FIELDS)}')
    changes: dict[str, Any] = {}
    for name, value in raw.items():
        field, kind = _POLICY_FIELDS[name]
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if not numeric or (kind is int and not float(value).is_integer()) or value <= 0:
            whole = "a whole number" if kind is int else "a number"
            raise ValueError(f'"breaker.{name}" must be {whole} > 0')
        if field in _RATES and value > 1:
            raise ValueError(f'"breaker.{name}" is a share of calls: at most 1')
        changes[field] = kind(value)
    chosen = dataclasses.replace(base, **changes)
    if chosen.max_open_s < chosen.open_s:
        raise ValueError('"breaker.maxOpenSeconds" must not be below "openSeconds"')
    return chosen


@dataclass(frozen=True, slots=True)
class FallbackTarget:
    """Where this model's cloud fallback calls go instead of the gateway's own."""

    endpoint: str
    protocol: Literal["openai", "oip"]
    model: str  # the cloud's model name; empty: the same name as locally


def fallback(doc: Mapping[str, Any]) -> FallbackTarget | None:
    """The model's own fallback endpoint (None: the gateway's own, if any).

    `apiKeySecretRef` is the operator's to resolve; the gateway reads no
    Kubernetes secret, so it is accepted and not used here.
    """
    raw = doc.get("fallback")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValueError('"fallback" must be {"endpoint": ..., "protocol": ..., "model": ...}')
    endpoint, protocol, model = raw.get("endpoint"), raw.get("protocol", "openai"), raw.get("model")
    if not isinstance(endpoint, str) or not endpoint:
        raise ValueError('"fallback.endpoint" must be a URL (or host:port for oip)')
    if protocol not in ("openai", "oip"):
        raise ValueError('"fallback.protocol" must be "openai" or "oip"')
    if model is not None and not isinstance(model, str):
        raise ValueError('"fallback.model" must be a string')
    return FallbackTarget(endpoint=endpoint, protocol=protocol, model=model or "")
