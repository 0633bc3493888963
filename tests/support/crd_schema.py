"""Custom resources checked against their CRD the way the Kubernetes API server checks them.

No API server runs in the suite (KMock, which the operator tests use, validates nothing), so
without this a ModelDeployment that `kubectl apply` refuses would pass every test. The CRD's
openAPIV3Schema (OpenAPI 3.0 with Kubernetes extensions) becomes a JSON Schema 2020-12
validator with the API server's semantics:

- defaults are applied first, as the server does on decoding, so rules see defaulted objects;
- an unknown field is refused (kubectl's strict field validation), so every object that has
  `properties` gets `additionalProperties: false`;
- `x-kubernetes-int-or-string` is `anyOf: integer | string`; `exclusiveMinimum: true` (3.0)
  becomes the number form; `x-kubernetes-list-type: set` is `uniqueItems`, and
  `x-kubernetes-list-map-keys` refuses two items with the same keys;
- `format: date-time` is checked (RFC 3339 with a time zone);
- `x-kubernetes-validations`: no CEL library is installed, so each rule the CRDs use has a
  Python predicate in `CEL_PREDICATES`, keyed by the rule's text. A rule without one makes
  `CrdChecker` raise `UncheckedRule`: a new CEL rule cannot go unchecked.

The operator's tests reuse `checker("modeldeployments").defaulted(...)` to get the spec the
operator will actually see.
"""

from __future__ import annotations

import copy
import functools
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from jsonschema import Draft202012Validator, ValidationError

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "deploy" / "helm" / "edgegate" / "crds"
GROUP = "edgegate.io"
VERSION = "v1alpha1"
GPU = "nvidia.com/gpu"

Json = dict[str, Any]


def _gpu_limit_needs_gpu_provider(spec: Json) -> bool:
    limits = spec.get("resources", {}).get("limits", {})
    providers = spec.get("runtime", {}).get("executionProviders", [])
    return GPU not in limits or any(p in ("tensorrt", "cuda") for p in providers)


def _one_step_kind(step: Json) -> bool:
    return sum(key in step for key in ("setWeight", "pause", "analysis")) == 1


def _agreement_needs_shadow(canary: Json) -> bool:
    if "minAgreement" not in canary.get("analysis", {}):
        return True
    return int(canary.get("shadowPercent", 0)) > 0


def _open_time_bounded(breaker: Json) -> bool:
    return bool(breaker["maxOpenSeconds"] >= breaker["openSeconds"])


def _per_key_burst_needs_rate(rate: Json) -> bool:
    return "perKeyBurst" not in rate or "perKeyRequestsPerSecond" in rate


# Rule text (whitespace folded to single spaces, as YAML's `>-` folds it) -> what it means.
CEL_PREDICATES: dict[str, Callable[[Json], bool]] = {
    "!has(self.resources) || !has(self.resources.limits) || "
    "!has(self.resources.limits.nvidia__dot__com__slash__gpu) || "
    "(has(self.runtime) && has(self.runtime.executionProviders) && "
    "self.runtime.executionProviders.exists(p, p == 'tensorrt' || p == 'cuda'))": (
        _gpu_limit_needs_gpu_provider
    ),
    "[has(self.setWeight), has(self.pause), has(self.analysis)].exists_one(x, x)": _one_step_kind,
    "!has(self.analysis) || !has(self.analysis.minAgreement) || "
    "(has(self.shadowPercent) && self.shadowPercent > 0)": _agreement_needs_shadow,
    "self.maxOpenSeconds >= self.openSeconds": _open_time_bounded,
    "!has(self.perKeyBurst) || has(self.perKeyRequestsPerSecond)": _per_key_burst_needs_rate,
}


class UncheckedRule(LookupError):
    """A CEL rule in a CRD that `CEL_PREDICATES` cannot evaluate."""


@dataclass(frozen=True)
class Refusal:
    """One reason the API server would refuse an object: the field, and what is wrong."""

    path: str
    message: str


def fold(rule: str) -> str:
    """A rule's text with its whitespace folded, the key it has in `CEL_PREDICATES`."""
    return " ".join(rule.split())


def predicate(rule: str) -> Callable[[Json], bool]:
    try:
        return CEL_PREDICATES[fold(rule)]
    except KeyError:
        raise UncheckedRule(f"no Python predicate for the CEL rule {rule!r}") from None


def load_crd(plural: str) -> Json:
    """The CRD `<plural>.edgegate.io` from deploy/helm/edgegate/crds/."""
    crd: Json = yaml.safe_load((CRDS / f"{plural}.{GROUP}.yaml").read_text(encoding="utf-8"))
    return crd


def open_api_schema(crd: Json, *, version: str = VERSION) -> Json:
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema: Json = served["schema"]["openAPIV3Schema"]
    return schema


def walk(schema: Json, path: str = "") -> Iterator[tuple[str, Json]]:
    """Every schema node with its field path (`spec.canary.steps[]`), the root first."""
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}" if path else name)
    if isinstance(schema.get("items"), dict):
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}[*]")


def rules(schema: Json) -> Iterator[tuple[str, Json]]:
    """Every `x-kubernetes-validations` rule with the path of the node that carries it."""
    for path, node in walk(schema):
        for rule in node.get("x-kubernetes-validations", []):
            yield path, rule


def to_jsonschema(node: Json) -> Json:
    """One openAPIV3Schema node as JSON Schema 2020-12 with the API server's strictness."""
    out: Json = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: to_jsonschema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = to_jsonschema(value)
        elif key in ("anyOf", "allOf", "oneOf"):
            out[key] = [to_jsonschema(sub) for sub in value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            if value is True:
                out[key] = node[bound]
        elif key in ("minimum", "maximum"):
            exclusive = "exclusiveMinimum" if key == "minimum" else "exclusiveMaximum"
            if node.get(exclusive) is not True:
                out[key] = value
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string") and "anyOf" not in node:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if node.get("nullable") and "type" in node:
        out["type"] = [node["type"], "null"]
    if "properties" in node and "additionalProperties" not in node:
        out["additionalProperties"] = False
    return out


def with_defaults(schema: Json, value: Any) -> Any:
    """`value` as the API server decodes it: nulls pruned, then the schema's defaults applied.

    A null in a field that is not `nullable` is dropped (so an operator may write `None` for
    "absent"); a missing property with a default gets it, then defaulting goes on inside it:
    `runtime: {default: {}}` thus yields `runtime.executionProviders: [cpu]`.
    """
    value = copy.deepcopy(value)
    _default_in_place(schema, value)
    return value


def _default_in_place(schema: Json, value: Any) -> None:
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in value and value[name] is None and not sub.get("nullable"):
                del value[name]
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                _default_in_place(sub, value[name])
        if isinstance(schema.get("additionalProperties"), dict):
            for item in value.values():
                _default_in_place(schema["additionalProperties"], item)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _default_in_place(schema["items"], item)


def _field_path(field_path: str) -> deque[str]:
    """A rule's `fieldPath` (`.analysis.minAgreement`) as path elements."""
    return deque(part for part in field_path.split(".") if part)


def _cel(
    validator: Any, rule_list: Sequence[Json], instance: Any, schema: Json
) -> Iterator[ValidationError]:
    # The API server evaluates rules only on a value of the node's type.
    if not validator.is_type(instance, schema.get("type", "object")):
        return
    for rule in rule_list:
        if not predicate(rule["rule"])(instance):
            yield ValidationError(rule["message"], path=_field_path(rule.get("fieldPath", "")))


def _list_map_keys(
    validator: Any, keys: Sequence[str], instance: Any, schema: Json
) -> Iterator[ValidationError]:
    if not isinstance(instance, list):
        return
    seen: set[tuple[Any, ...]] = set()
    for index, item in enumerate(instance):
        if not isinstance(item, dict):
            continue
        key = tuple(repr(item.get(k)) for k in keys)
        if key in seen:
            shown = ", ".join(f"{k}={item.get(k)!r}" for k in keys)
            yield ValidationError(f"duplicate entry with {shown}", path=deque([index]))
        seen.add(key)


FORMATS = jsonschema.FormatChecker(formats=())


def _date_time(value: object) -> bool:
    """RFC 3339 as Kubernetes reads it: a date, a time and a zone (`Z` or an offset)."""
    if not isinstance(value, str):
        return True
    parsed = datetime.fromisoformat(value)
    return "T" in value.upper() and parsed.tzinfo is not None


FORMATS.checks("date-time", raises=ValueError)(_date_time)


KubernetesValidator = jsonschema.validators.extend(
    Draft202012Validator,
    {"x-kubernetes-validations": _cel, "x-kubernetes-list-map-keys": _list_map_keys},
)


def _format_path(parts: Sequence[Any]) -> str:
    text = ""
    for part in parts:
        if isinstance(part, int) or "." in str(part) or "/" in str(part):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _refusals(error: ValidationError) -> Iterator[Refusal]:
    path = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set(error.schema.get("properties", {}))
        for name in sorted(set(error.instance) - known):
            field = _format_path([*path, name])
            yield Refusal(field, f'unknown field "{field}"')
        return
    yield Refusal(_format_path(path), error.message)


class CrdChecker:
    """Validates objects of one CRD version the way the API server would."""

    def __init__(self, crd: Json, *, version: str = VERSION) -> None:
        self.crd = crd
        self.schema = open_api_schema(crd, version=version)
        for _, rule in rules(self.schema):
            predicate(rule["rule"])  # UncheckedRule now, not when some object reaches it
        converted = to_jsonschema(self.schema)
        KubernetesValidator.check_schema(converted)
        self._validator = KubernetesValidator(converted, format_checker=FORMATS)

    def defaulted(self, obj: Mapping[str, Any]) -> Json:
        """The object as the API server stores it: with every default applied."""
        result: Json = with_defaults(self.schema, dict(obj))
        return result

    def refusals(self, obj: Mapping[str, Any]) -> list[Refusal]:
        """Why the API server would refuse `obj` (defaults applied first); [] if it would not."""
        errors = self._validator.iter_errors(self.defaulted(obj))
        found = [refusal for error in errors for refusal in _refusals(error)]
        return sorted(found, key=lambda r: (r.path, r.message))


INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]


def structural_problems(schema: Json) -> list[str]:
    """What keeps `schema` from being a structural schema the API server accepts, in words.

    The API server's rules (types everywhere, no junctors but int-or-string's anyOf, no
    uniqueItems, properties or additionalProperties, metadata unrestricted, defaults that
    validate once defaulted, list-map keys required or defaulted), plus this contract's:
    no x-kubernetes-preserve-unknown-fields, a message on every rule, fieldPaths that exist.
    """
    problems: list[str] = []
    for path, node in walk(schema):
        problems += [f"{path or '<root>'}: {p}" for p in _node_problems(node)]
    metadata = schema.get("properties", {}).get("metadata", {})
    if set(metadata.get("properties", {})) - {"name", "generateName"}:
        problems.append("metadata: only name and generateName may be restricted")
    return problems


def _node_problems(node: Json) -> Iterator[str]:
    int_or_string = node.get("x-kubernetes-int-or-string") is True
    if node.get("x-kubernetes-preserve-unknown-fields"):
        yield "x-kubernetes-preserve-unknown-fields (every schema here is structural)"
    if ("type" in node) == int_or_string:
        yield "a type, or else x-kubernetes-int-or-string, and not both"
    for junctor in ("allOf", "anyOf", "oneOf", "not"):
        if junctor in node and not (int_or_string and node.get(junctor) == INT_OR_STRING):
            yield f"{junctor}: only int-or-string's anyOf is structural here"
    if node.get("uniqueItems"):
        yield "uniqueItems (the API server refuses it: use x-kubernetes-list-type: set)"
    if "properties" in node and "additionalProperties" in node:
        yield "both properties and additionalProperties"
    if node.get("type") == "array" and not isinstance(node.get("items"), dict):
        yield "an array without one items schema"
    if "default" in node:
        default = with_defaults(node, node["default"])
        validator = KubernetesValidator(to_jsonschema(node), format_checker=FORMATS)
        for error in validator.iter_errors(default):
            yield f"default {node['default']!r}: {error.message}"
    items = node.get("items", {})
    for key in node.get("x-kubernetes-list-map-keys", []):
        if key not in items.get("required", []) and "default" not in items["properties"][key]:
            yield f"list-map key {key} neither required nor defaulted"
    for rule in node.get("x-kubernetes-validations", []):
        if not rule.get("message"):
            yield f"rule {rule['rule']!r} has no message"
        target = node
        for part in _field_path(rule.get("fieldPath", "")):
            target = target.get("properties", {}).get(part, {})
        if not target:
            yield f"rule {rule['rule']!r}: fieldPath {rule['fieldPath']} names no field"


def undocumented(schema: Json) -> list[str]:
    """Fields (properties) without a description; metadata is Kubernetes' own."""
    return [
        path or "<root>"
        for path, node in walk(schema)
        if not node.get("description") and path != "metadata" and not path.endswith(("[]", "[*]"))
    ]


@functools.cache
def checker(plural: str) -> CrdChecker:
    """The checker for `<plural>.edgegate.io` (modeldeployments, tenantquotas), built once."""
    return CrdChecker(load_crd(plural))
