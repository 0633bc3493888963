"""Triton's `config.pbtxt` <-> `ModelSpec`.

Users bringing a Triton model repository keep their `config.pbtxt`: the
fields edgegate implements are read from it (inputs/outputs, max batch size,
dynamic batching with queue policies, instance groups, ORT thread parameters,
execution accelerators, warm-up, version policy); the rest is ignored, as
Triton's ONNX Runtime backend ignores what it does not use. The `ModelConfig`
RPC answers with the reverse conversion.

Text pipelines have no Triton field; in pbtxt they are `parameters` named
`edgegate.text.<field>` (e.g. `edgegate.text.pooling: {string_value: "mean"}`).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import text_format

from edgegate_common.errors import InvalidArgument
from edgegate_inference.core import datatypes
from edgegate_inference.core.spec import ModelSpec, QueuePolicy, validate
from edgegate_protos.oip import model_config_pb2 as mc

_TEXT_PREFIX = "edgegate.text."
_ORT_PROVIDERS = {"tensorrt": "tensorrt", "cuda": "cuda"}
# Triton's ONNX Runtime backend parameters <-> `Instances` fields.
_THREAD_PARAMS = (
    ("intra_op_thread_count", "intra_op_threads"),
    ("inter_op_thread_count", "inter_op_threads"),
)


def parse_pbtxt(text: str, *, source: str, name: str) -> ModelSpec:
    config = mc.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise InvalidArgument(f"{source}: not a valid Triton model config: {exc}") from None
    try:
        data = _spec_dict(config, name=name)
    except InvalidArgument as exc:  # name the file, as validate() does
        raise InvalidArgument(f"{source}: {exc.message}") from None
    return validate(data, source=source)


def _spec_dict(config: mc.ModelConfig, *, name: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": config.name or name,
        "max_batch_size": config.max_batch_size,
        "inputs": [_tensor(t) for t in config.input],
        "outputs": [_tensor(t) for t in config.output],
        "instances": _instances(config),
        "warmup": [_warmup(w) for w in config.model_warmup],
        "version_policy": _version_policy(config),
    }
    if config.HasField("dynamic_batching"):
        data["dynamic_batching"] = _batching(config.dynamic_batching)
    providers = _providers(config)
    if providers:
        data["execution_providers"] = providers
    text = {
        key.removeprefix(_TEXT_PREFIX): param.string_value
        for key, param in config.parameters.items()
        if key.startswith(_TEXT_PREFIX)
    }
    if text:
        data["text"] = text
    return data


def _tensor(t: mc.ModelInput | mc.ModelOutput) -> dict[str, Any]:
    try:
        datatype = datatypes.from_config(mc.DataType.Name(t.data_type))
    except InvalidArgument as exc:
        raise InvalidArgument(f"tensor {t.name!r}: {exc.message}") from None
    return {"name": t.name, "datatype": datatype, "dims": list(t.dims)}


def _instances(config: mc.ModelConfig) -> dict[str, Any]:
    count = sum(max(group.count, 1) for group in config.instance_group) or 1
    params = config.parameters
    out: dict[str, Any] = {"count": count}
    for key, field in _THREAD_PARAMS:
        if key in params:
            value = params[key].string_value
            try:
                out[field] = int(value)
            except ValueError:
                raise InvalidArgument(
                    f"parameters.{key}: expected a whole number, got {value!r}"
                ) from None
    return out


def _providers(config: mc.ModelConfig) -> list[dict[str, Any]]:
    kinds = {group.kind for group in config.instance_group}
    if kinds and kinds <= {mc.ModelInstanceGroup.KIND_CPU}:
        return [{"name": "cpu"}]
    accelerators = config.optimization.execution_accelerators.gpu_execution_accelerator
    if not accelerators:
        return []  # edgegate's default order
    providers = [
        {"name": _ORT_PROVIDERS[a.name], "options": dict(a.parameters)}
        for a in accelerators
        if a.name in _ORT_PROVIDERS
    ]
    if not any(p["name"] == "cuda" for p in providers):
        providers.append({"name": "cuda"})
    return [*providers, {"name": "cpu"}]


def _batching(b: mc.ModelDynamicBatching) -> dict[str, Any]:
    return {
        "max_queue_delay_us": b.max_queue_delay_microseconds,
        "preferred_batch_sizes": list(b.preferred_batch_size),
        "priority_levels": b.priority_levels,
        "default_priority_level": b.default_priority_level,
        "queue_policy": _queue_policy(b.default_queue_policy),
        "priority_queue_policy": {
            int(level): _queue_policy(p) for level, p in b.priority_queue_policy.items()
        },
        "preserve_ordering": b.preserve_ordering,
    }


def _queue_policy(p: mc.ModelQueuePolicy) -> dict[str, Any]:
    return {
        "max_queue_size": p.max_queue_size,
        "default_timeout_us": p.default_timeout_microseconds,
        "allow_timeout_override": p.allow_timeout_override,
        "timeout_action": "delay" if p.timeout_action == mc.ModelQueuePolicy.DELAY else "reject",
    }


def _warmup(w: mc.ModelWarmup) -> dict[str, Any]:
    zero = any(i.WhichOneof("input_data_type") == "zero_data" for i in w.inputs.values())
    return {
        "batch_size": max(w.batch_size, 1),
        "data": "zero" if zero else "random",
        "dims": {name: list(i.dims) for name, i in w.inputs.items()},
        "count": max(w.count, 1),
    }


def _version_policy(config: mc.ModelConfig) -> dict[str, Any]:
    policy = config.version_policy
    kind = policy.WhichOneof("policy_choice")
    if kind == "all":
        return {"all": True}
    if kind == "specific":
        return {"specific": list(policy.specific.versions)}
    if kind == "latest":
        return {"latest": policy.latest.num_versions or 1}
    return {}


# -- the reverse: what the ModelConfig RPC reports ---------------------------


def to_model_config(spec: ModelSpec) -> mc.ModelConfig:
    config = mc.ModelConfig(
        name=spec.name,
        platform="onnxruntime_onnx",
        backend="onnxruntime",
        max_batch_size=spec.max_batch_size,
    )
    for t in spec.inputs:
        config.input.add(name=t.name, data_type=_dtype(t.datatype), dims=t.dims)
    for t in spec.outputs:
        config.output.add(name=t.name, data_type=_dtype(t.datatype), dims=t.dims)
    config.instance_group.add(
        count=spec.instances.count,
        kind=mc.ModelInstanceGroup.KIND_GPU
        if spec.execution_providers[0].name != "cpu"
        else mc.ModelInstanceGroup.KIND_CPU,
    )
    for key, field in _THREAD_PARAMS:
        threads = getattr(spec.instances, field)
        if threads:  # 0 is ONNX Runtime's default, which Triton expresses by omission
            config.parameters[key].string_value = str(threads)
    b = spec.dynamic_batching
    if b is not None:
        db = config.dynamic_batching
        db.max_queue_delay_microseconds = b.max_queue_delay_us
        db.preferred_batch_size.extend(b.preferred_batch_sizes)
        db.priority_levels = b.priority_levels
        db.default_priority_level = b.default_priority_level
        db.preserve_ordering = b.preserve_ordering
        _set_policy(db.default_queue_policy, b.queue_policy)
        for level, policy in b.priority_queue_policy.items():
            _set_policy(db.priority_queue_policy[level], policy)
    for provider in spec.execution_providers:
        if provider.name in _ORT_PROVIDERS:
            accel = config.optimization.execution_accelerators.gpu_execution_accelerator.add(
                name=provider.name
            )
            accel.parameters.update(provider.options)
    vp = spec.version_policy
    if vp.all:
        config.version_policy.all.SetInParent()
    elif vp.specific:
        config.version_policy.specific.versions.extend(vp.specific)
    else:
        config.version_policy.latest.num_versions = vp.latest or 1
    if spec.text is not None:
        for key, value in spec.text.model_dump().items():
            config.parameters[_TEXT_PREFIX + key].string_value = str(value)
    return config


def _dtype(datatype: str) -> int:
    return mc.DataType.Value(datatypes.to_config(datatype))


def _set_policy(target: mc.ModelQueuePolicy, policy: QueuePolicy) -> None:
    target.max_queue_size = policy.max_queue_size
    target.default_timeout_microseconds = policy.default_timeout_us
    target.allow_timeout_override = policy.allow_timeout_override
    target.timeout_action = (
        mc.ModelQueuePolicy.DELAY
        if policy.timeout_action == "delay"
        else mc.ModelQueuePolicy.REJECT
    )
