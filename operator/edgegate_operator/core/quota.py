"""A TenantQuota as the objects and documents that enforce it, and the status it reports.

One TenantQuota `<name>` becomes, in the tenant's namespace (`spec.namespace`),
a ResourceQuota and a LimitRange both named `edgegate-<name>`, and a rate
document in NATS KV `edgegate-quotas` under `subjects.ident(spec.tenant)`, the
key every gateway looks the tenant up by. The document is the one the
gateway's `Quota.from_json` reads:

    {"rate_per_s": 50, "burst": 100, "key_rate_per_s": 5, "key_burst": 10}

Bursts are always written (ceil of the rate when the spec leaves them out, as
the CRD promises), so the gateway's own fallback never decides them.

Owner references: a namespaced owner must be in its dependent's namespace, or
the garbage collector treats the reference as dangling and deletes the
dependent at once. So the children carry one only when the TenantQuota lives
in the tenant's namespace itself; otherwise the operator deletes them through
its finalizer, and it always deletes the rate document itself (KV knows no
owners).

What the CRD schema cannot refuse (a quantity that matches its pattern but
does not parse, a negative or fractional count, a default request above the
default limit, and rates, again, for clusters that skip CEL rules) makes the
spec invalid: nothing of it is applied and the status says why.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from edgegate_common import subjects
from edgegate_operator.core.patches import merge_patch
from edgegate_operator.core.status import clip
from edgegate_operator.core.units import format_time

LABEL_TENANTQUOTA = "edgegate.io/tenantquota"
MANAGED_BY = {"app.kubernetes.io/managed-by": "edgegate-operator"}
# spec.compute key -> ResourceQuota `hard` key. Extended resources (GPUs) may only be
# limited by their requests in a ResourceQuota; cpu and memory say so too, for symmetry.
HARD_NAMES = {
    "cpu": "requests.cpu",
    "memory": "requests.memory",
    "nvidia.com/gpu": "requests.nvidia.com/gpu",
    "pods": "pods",
}
WHOLE = frozenset({"nvidia.com/gpu", "pods"})  # counted in whole units
LIMIT_RANGE_RESOURCES = ("cpu", "memory")
STATUS_KEYS = ("applied", "usage", "conditions", "observedGeneration", "message")
MAX_USAGE = 64  # the CRD's limits on status.usage
MAX_USAGE_VALUE = 64

_QUANTITY = re.compile(
    r"(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<suffix>[KMGTPE]i|[numkMGTPE])|[eE](?P<exponent>[+-]?[0-9]+))?"
)
_SUFFIXES = {
    "": Decimal(1),
    **{
        s: Decimal(10) ** e
        for s, e in zip("numkMGTPE", (-9, -6, -3, 3, 6, 9, 12, 15, 18), strict=True)
    },
    **{f"{p}i": Decimal(1024) ** n for n, p in enumerate("KMGTPE", start=1)},
}


class QuotaSpecError(ValueError):
    """What is wrong with a TenantQuota's spec, every problem in one message."""


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything one valid TenantQuota asks for; None means "none of that kind"."""

    namespace: str
    name: str
    resource_quota: dict[str, Any] | None
    limit_range: dict[str, Any] | None
    key: str
    rates: dict[str, float | int] | None


@dataclass(frozen=True, slots=True)
class Problem:
    """Why the current spec is not in place: invalid, or refused by the API server."""

    reason: Literal["InvalidSpec", "Refused"]
    message: str


def child_name(body: Mapping[str, Any]) -> str:
    """`edgegate-<name>`, the ResourceQuota's and the LimitRange's name."""
    return f"edgegate-{body['metadata']['name']}"[:253].rstrip("-.")


def kv_key(tenant: str) -> str:
    return subjects.ident(tenant)


def plan(body: Mapping[str, Any]) -> Plan:
    """What `body` asks for; QuotaSpecError when anything of it cannot be applied."""
    spec = body.get("spec") or {}
    problems: list[str] = []
    tenant, namespace = _name(spec, "tenant", problems), _name(spec, "namespace", problems)
    hard = _hard(spec.get("compute") or {}, problems)
    limits = _limits(spec.get("limitRange") or {}, problems)
    rates = None if spec.get("rate") is None else _rates(spec["rate"], problems)
    if problems:
        raise QuotaSpecError("; ".join(problems))
    meta = _child_meta(body, namespace)
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": meta, "spec": {"hard": hard}}
    limit_range = {"apiVersion": "v1", "kind": "LimitRange", "metadata": meta}
    return Plan(
        namespace=namespace,
        name=meta["name"],
        resource_quota=quota if hard else None,
        limit_range={**limit_range, "spec": {"limits": limits}} if limits else None,
        key=kv_key(tenant),
        rates=rates,
    )


def _name(spec: Mapping[str, Any], field: str, problems: list[str]) -> str:
    value = spec.get(field)
    if isinstance(value, str) and value:
        return value
    problems.append(f"spec.{field} is required")
    return ""


def _child_meta(body: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    name = body["metadata"]["name"]
    meta: dict[str, Any] = {
        "name": child_name(body),
        "namespace": namespace,
        "labels": {**MANAGED_BY, LABEL_TENANTQUOTA: name[:63].rstrip("-.")},
    }
    if body["metadata"].get("namespace") == namespace:
        meta["ownerReferences"] = [
            {
                "apiVersion": body.get("apiVersion", "edgegate.io/v1alpha1"),
                "kind": body.get("kind", "TenantQuota"),
                "name": name,
                "uid": body["metadata"].get("uid", ""),
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return meta


def object_patch(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch that gives `current` what `desired` sets; {} when it has it.

    Labels others added stay; a spec key the operator no longer sets is removed (null);
    lists are replaced whole, as a merge patch does. Quantities compare by value, so the
    API server's canonical form (`0.5` stored as `500m`) is no difference.
    """
    meta, have = desired["metadata"], current.get("metadata") or {}
    labels = {k: v for k, v in meta["labels"].items() if (have.get("labels") or {}).get(k) != v}
    meta_patch: dict[str, Any] = {"labels": labels} if labels else {}
    owners = meta.get("ownerReferences")
    if owners is not None and not _same(have.get("ownerReferences"), owners):
        meta_patch["ownerReferences"] = owners
    patch: dict[str, Any] = {"metadata": meta_patch} if meta_patch else {}
    spec = merge_patch(current.get("spec") or {}, desired["spec"], same=_same)
    return {**patch, "spec": spec} if spec else patch


def _same(a: object, b: object) -> bool:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return same_quantity(a, b)


# --- quantities --------------------------------------------------------------------------


def parse_quantity(value: object) -> Decimal:
    """A Kubernetes quantity (`500m`, `16Gi`, `1e3`, 20) as a number; ValueError if it is none.

    The CRD's pattern lets through exponents Kubernetes cannot read (`1e1.5`); this refuses
    them as the API server's parser does.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    match = _QUANTITY.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{value!r} is not a quantity (e.g. 500m, 16Gi, 2)")
    number = Decimal(match["number"])
    try:
        if match["exponent"] is not None:
            return number.scaleb(int(match["exponent"]))
        return number * _SUFFIXES[match["suffix"] or ""]
    except (ArithmeticError, InvalidOperation):  # an exponent beyond any machine's number
        raise ValueError(f"{value!r} is out of range") from None


def same_quantity(a: object, b: object) -> bool:
    """Whether two values are the same quantity (`1` and `1000m`), or simply equal."""
    try:
        return parse_quantity(a) == parse_quantity(b)
    except ValueError:
        return a == b


def _quantity(value: object, field: str, problems: list[str], *, whole: bool = False) -> str:
    try:
        number = parse_quantity(value)
    except ValueError as exc:
        problems.append(f"{field}: {exc}")
        return ""
    if number < 0:
        problems.append(f"{field}: {value} is negative")
    elif whole and number != number.to_integral_value():
        problems.append(f"{field}: {value} is not a whole number")
    return str(value)


def _hard(compute: Mapping[str, Any], problems: list[str]) -> dict[str, str]:
    return {
        hard: _quantity(compute[key], f"spec.compute.{key}", problems, whole=key in WHOLE)
        for key, hard in HARD_NAMES.items()
        if compute.get(key) is not None
    }


def _limits(spec: Mapping[str, Any], problems: list[str]) -> list[dict[str, Any]]:
    """One Container item; each default limit is also the default request unless one is given.

    The API server fills a missing default request from the default limit itself, so
    writing it out keeps the stored object equal to the desired one.
    """
    sides: dict[str, dict[str, str]] = {}
    for side in ("default", "defaultRequest"):
        given = spec.get(side) or {}
        sides[side] = {
            key: _quantity(given[key], f"spec.limitRange.{side}.{key}", problems)
            for key in LIMIT_RANGE_RESOURCES
            if given.get(key) is not None
        }
    default, request = sides["default"], {**sides["default"], **sides["defaultRequest"]}
    for key in sorted(default.keys() & sides["defaultRequest"].keys()):
        if _above(request[key], default[key]):
            problems.append(
                f"spec.limitRange.defaultRequest.{key} ({request[key]}) is above "
                f"spec.limitRange.default.{key} ({default[key]})"
            )
    if not request:
        return []
    item: dict[str, Any] = {"type": "Container", "defaultRequest": request}
    return [{**item, "default": default} if default else item]


def _above(a: str, b: str) -> bool:
    """Whether quantity `a` exceeds `b`; False when either does not parse (reported already)."""
    try:
        return parse_quantity(a) > parse_quantity(b)
    except ValueError:
        return False


# --- rates --------------------------------------------------------------------------------


def _rates(rate: Mapping[str, Any], problems: list[str]) -> dict[str, float | int]:
    """The gateway's quota document for `spec.rate`."""
    doc: dict[str, float | int] = {}
    for rate_name, burst_name, out_rate, out_burst in (
        ("requestsPerSecond", "burst", "rate_per_s", "burst"),
        ("perKeyRequestsPerSecond", "perKeyBurst", "key_rate_per_s", "key_burst"),
    ):
        raw_rate, raw_burst = rate.get(rate_name), rate.get(burst_name)
        if raw_rate is None:
            if raw_burst is not None:
                problems.append(f"spec.rate.{burst_name} needs spec.rate.{rate_name}")
            elif rate_name == "requestsPerSecond":
                problems.append(f"spec.rate.{rate_name} is required")
            continue
        per_s, burst = _number(raw_rate), _number(raw_burst)
        if per_s is None or per_s <= 0:
            never = " (its burst would never refill)" if raw_burst is not None else ""
            problems.append(f"spec.rate.{rate_name} must be a number above 0{never}")
            continue
        if raw_burst is None:
            burst = max(1, math.ceil(per_s))
        elif burst is None or burst < 1 or burst != int(burst):
            problems.append(f"spec.rate.{burst_name} must be a whole number of at least 1")
            continue
        doc[out_rate], doc[out_burst] = raw_rate, int(burst)
    return doc


def _number(value: object) -> float | None:
    """`value` as a finite number; None for anything else (a bool is no number here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


# --- status -------------------------------------------------------------------------------


def status(
    body: Mapping[str, Any],
    *,
    outcome: Plan | Problem,
    quota: Mapping[str, Any] | None,
    now_ms: int,
) -> dict[str, Any]:
    """The status after a reconcile that applied a Plan, or stopped at a Problem.

    `quota` is the ResourceQuota as read back: its `status.used` is the usage, and
    `status.hard` tells which resources are at their limit. A condition keeps its
    lastTransitionTime while its status stays the same.
    """
    generation = body.get("metadata", {}).get("generation")
    observed = (quota or {}).get("status") or {}
    used, hard = dict(observed.get("used") or {}), dict(observed.get("hard") or {})
    if isinstance(outcome, Plan):
        message = _summary(outcome, _at_limit(used, hard))
        ready = ("True", "Applied", message)
        degraded = ("False", "Applied", "the current spec is in place")
    else:
        message = clip(outcome.message)
        ready = ("False", outcome.reason, message)
        degraded = ("True", outcome.reason, message)
    previous = (body.get("status") or {}).get("conditions") or []
    doc: dict[str, Any] = {
        "applied": isinstance(outcome, Plan),
        "usage": {
            key: clip(str(used[key]), limit=MAX_USAGE_VALUE) for key in sorted(used)[:MAX_USAGE]
        },
        "conditions": [
            _condition(kind, state, previous, generation, now_ms)
            for kind, state in (("Ready", ready), ("Degraded", degraded))
        ],
        "message": message,
    }
    if isinstance(generation, int):
        doc["observedGeneration"] = generation
    return doc


def _condition(
    kind: str,
    state: tuple[str, str, str],
    previous: list[Any],
    generation: object,
    now_ms: int,
) -> dict[str, Any]:
    status_, reason, message = state
    before = next((c for c in previous if isinstance(c, Mapping) and c.get("type") == kind), {})
    since = before.get("lastTransitionTime")
    if before.get("status") != status_ or not isinstance(since, str):
        since = format_time(now_ms)
    doc = {
        "type": kind,
        "status": status_,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
    }
    return {**doc, "observedGeneration": generation} if isinstance(generation, int) else doc


def _at_limit(used: Mapping[str, Any], hard: Mapping[str, Any]) -> list[str]:
    """`pods (20 of 20)` for each resource whose usage has reached its hard limit."""
    full = []
    for key in sorted(hard.keys() & used.keys()):
        try:
            if parse_quantity(used[key]) >= parse_quantity(hard[key]):
                full.append(f"{key} ({used[key]} of {hard[key]})")
        except ValueError:
            continue
    return full


def _summary(applied: Plan, full: list[str]) -> str:
    kinds = [
        kind
        for kind, obj in (
            ("ResourceQuota", applied.resource_quota),
            ("LimitRange", applied.limit_range),
        )
        if obj is not None
    ]
    where = (
        f"{' and '.join(kinds)} {applied.name} in {applied.namespace}"
        if kinds
        else f"no ResourceQuota or LimitRange in {applied.namespace}"
    )
    rates = applied.rates
    if rates is None:
        limit = "the gateways' default rate limits"
    else:
        limit = f"{rates['rate_per_s']:g} requests/s (burst {rates['burst']})"
        if "key_rate_per_s" in rates:
            limit += f", {rates['key_rate_per_s']:g}/s per key (burst {rates['key_burst']})"
    text = f"{where}; {limit}"
    if full:
        text += "; at the limit: " + ", ".join(full)
    return clip(text)
