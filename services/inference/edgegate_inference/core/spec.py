"""What a model's config says: the typed, validated form of `config.yaml`.

A model folder holds `config.yaml` (this schema) or Triton's `config.pbtxt`
(see `triton_config`); both become one `ModelSpec`, and `config_files.load`
picks the file. Those two build on this module, never the reverse. The field
names follow Triton's model configuration where it has the same concept, with
units in the names (`max_queue_delay_us`), so that Triton users recognise them:

    max_batch_size: 64
    dynamic_batching:
      max_queue_delay_us: 2000
      preferred_batch_sizes: [16, 32]
      priority_levels: 2
      default_priority_level: 2
      queue_policy: {max_queue_size: 512, default_timeout_us: 0, timeout_action: reject}
    instances: {count: 1, intra_op_threads: 2}
    execution_providers:
      - {name: tensorrt, options: {trt_fp16_enable: "true", trt_engine_cache_path: /cache}}
      - {name: cuda, options: {device_id: "0"}}
      - {name: cpu}
    text: {tokenizer: tokenizer.json, max_length: 256, pooling: mean, normalize: true}
    warmup: [{batch_size: 1}, {batch_size: 32}]
    version_policy: {latest: 1}

Inputs and outputs may be left out: they are then read from the ONNX model.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import yaml  # type: ignore[import-untyped]
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgegate_common.errors import InvalidArgument
from edgegate_inference.core.datatypes import DATATYPES


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TensorSpec(_Frozen):
    """One input or output. `dims` exclude the batch dimension when batching; -1 is variable."""

    name: str = Field(min_length=1)
    datatype: str
    dims: tuple[int, ...]

    @field_validator("datatype")
    @classmethod
    def _known_datatype(cls, value: str) -> str:
        if value not in DATATYPES:
            raise ValueError(f"unknown datatype {value!r}; expected one of {sorted(DATATYPES)}")
        return value

    @field_validator("dims")
    @classmethod
    def _valid_dims(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(d < -1 or d == 0 for d in value):
            raise ValueError(f"dims must be positive or -1 (variable), got {list(value)}")
        return value


# The queue timeout of a model whose config names none. Triton has no default (requests
# wait for ever); here a request that could not start within 2 s is refused at once with
# RESOURCE_EXHAUSTED and a retry hint (see core/admission.py), since an interactive caller
# is better served by "retry in 1.5 s" now than by a 15 s wait. 2 s leaves room for a few
# batches of a model whose batch takes up to ~0.5 s; slower models set their own.
# A Triton config.pbtxt says 0 (no timeout) unless it names one, as in Triton.
DEFAULT_QUEUE_TIMEOUT_US = 2_000_000


class QueuePolicy(_Frozen):
    """How long a request may wait and how many may wait (Triton's ModelQueuePolicy)."""

    max_queue_size: int = Field(default=0, ge=0, description="0: unbounded")
    default_timeout_us: int = Field(
        default=DEFAULT_QUEUE_TIMEOUT_US, ge=0, description="0: no timeout (and no admission)"
    )
    allow_timeout_override: bool = True
    timeout_action: Literal["reject", "delay"] = "reject"


class DynamicBatching(_Frozen):
    max_queue_delay_us: int = Field(default=0, ge=0)
    preferred_batch_sizes: tuple[int, ...] = ()
    priority_levels: int = Field(default=0, ge=0, description="0: one level")
    default_priority_level: int = Field(default=0, ge=0)
    queue_policy: QueuePolicy = QueuePolicy()
    priority_queue_policy: Mapping[int, QueuePolicy] = Field(default_factory=dict)
    preserve_ordering: bool = False

    @model_validator(mode="after")
    def _levels(self) -> DynamicBatching:
        levels = max(self.priority_levels, 1)
        if self.default_priority_level > levels:
            raise ValueError(
                f"default_priority_level {self.default_priority_level} exceeds "
                f"priority_levels {self.priority_levels}"
            )
        bad = [level for level in self.priority_queue_policy if not 1 <= level <= levels]
        if bad:
            raise ValueError(f"priority_queue_policy names levels {bad} outside 1..{levels}")
        return self

    @property
    def levels(self) -> int:
        return max(self.priority_levels, 1)

    @property
    def default_level(self) -> int:
        """Level of requests that name none. 1 is the highest (Triton's convention);
        unset, the middle level, so that callers can ask for both more and less."""
        return self.default_priority_level or (self.levels + 1) // 2

    def policy(self, level: int) -> QueuePolicy:
        return self.priority_queue_policy.get(level, self.queue_policy)


class Instances(_Frozen):
    count: int = Field(default=1, ge=1, le=64)
    intra_op_threads: int = Field(
        default=0, ge=0, description="0: all cores for the first instance, 1 for the others"
    )
    inter_op_threads: int = Field(default=0, ge=0)
    # ONNX Runtime's threads spin briefly before they sleep (its default): on 2 cores
    # that is faster at batch 1 and no slower batched. False: threads never spin.
    allow_spinning: bool = True


ProviderName = Literal["tensorrt", "cuda", "cpu"]


class ExecutionProvider(_Frozen):
    """One ONNX Runtime execution provider and its options (ORT's own option names)."""

    name: ProviderName
    options: Mapping[str, str] = Field(default_factory=dict)

    @field_validator("options", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        # YAML reads `true` and `0` as bool and int; ORT takes option values as strings.
        if isinstance(value, Mapping):
            return {str(k): _option_str(v) for k, v in value.items()}
        return value


def _option_str(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


DEFAULT_PROVIDERS = (
    ExecutionProvider(name="tensorrt"),
    ExecutionProvider(name="cuda"),
    ExecutionProvider(name="cpu"),
)


class TextPipeline(_Frozen):
    """Text in (a BYTES input), tokenised here; pooled and normalised vectors out."""

    tokenizer: str = "tokenizer.json"  # in the version folder, else the model folder
    input: str = "TEXT"
    output: str = "embedding"
    max_length: int = Field(default=256, ge=1)
    pooling: Literal["mean", "cls", "none"] = "mean"
    normalize: bool = True
    token_output: str = Field(default="", description="model output to pool; '' = the first")


class Warmup(_Frozen):
    """A request run through every new session before it serves (zeros or random data)."""

    batch_size: int = Field(default=1, ge=1)
    data: Literal["zero", "random"] = "random"
    dims: Mapping[str, tuple[int, ...]] = Field(default_factory=dict)  # for -1 dims
    count: int = Field(default=1, ge=1)


class VersionPolicy(_Frozen):
    """Which version folders serve: the latest N (default 1), all, or named ones."""

    latest: int | None = Field(default=None, ge=1)
    all: bool = False
    specific: tuple[int, ...] = ()

    @model_validator(mode="after")
    def _one_kind(self) -> VersionPolicy:
        kinds = sum([self.latest is not None, self.all, bool(self.specific)])
        if kinds > 1:
            raise ValueError("version_policy takes one of latest, all, specific")
        return self

    def select(self, available: Iterable[int]) -> list[int]:
        versions = sorted(set(available))
        if self.all:
            return versions
        if self.specific:
            return [v for v in versions if v in self.specific]
        return versions[-(self.latest or 1) :]


class ModelSpec(_Frozen):
    name: str = ""
    max_batch_size: int = Field(default=0, ge=0)
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    dynamic_batching: DynamicBatching | None = None
    instances: Instances = Instances()
    execution_providers: tuple[ExecutionProvider, ...] = DEFAULT_PROVIDERS
    text: TextPipeline | None = None
    warmup: tuple[Warmup, ...] = ()
    version_policy: VersionPolicy = VersionPolicy()

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if self.dynamic_batching is not None and self.max_batch_size == 0:
            raise ValueError("dynamic_batching needs max_batch_size > 0")
        if self.dynamic_batching is not None:
            too_big = [
                s for s in self.dynamic_batching.preferred_batch_sizes if s > self.max_batch_size
            ]
            if too_big:
                raise ValueError(f"preferred_batch_sizes {too_big} exceed max_batch_size")
        if not self.execution_providers:
            raise ValueError("execution_providers may not be empty")
        return self


_MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


# The repository layout: <repo>/<model>/<config file>, <repo>/<model>/<version>/model.onnx
# (the config files and their reading: `config_files`).
MODEL_FILE = "model.onnx"


def valid_model_name(name: str) -> bool:
    """A folder name that is safe as a model name (no path tricks, no hidden folders)."""
    return _MODEL_NAME.fullmatch(name) is not None


def parse_yaml(text: str, *, source: str, name: str) -> ModelSpec:
    """Validate a `config.yaml`; errors name the file and the field."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidArgument(f"{source}: expected a mapping at the top level")
    data.setdefault("name", name)
    return validate(data, source=source)


def validate(data: Mapping[str, Any], *, source: str) -> ModelSpec:
    try:
        return ModelSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise InvalidArgument(f"{source}: {problems}") from None
