"""ONNX Runtime sessions: execution provider choice, options, and the model call.

Providers are tried in the configured order (TensorRT → CUDA → CPU by
default). Only providers this machine can run are requested: the onnxruntime
build must offer them and, for the GPU ones, a GPU must be present. So a
CPU-only machine asks ONNX Runtime for CPU alone (and says so once in the
log) instead of printing a failed CUDA load for every session. What the
session actually runs with is read back from it and reported.
"""

from __future__ import annotations

import functools
import glob
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors  # type: ignore[import-untyped]

from edgegate_common.errors import Internal, InvalidArgument, ResourceExhausted
from edgegate_common.logging import get_logger
from edgegate_inference.core import datatypes
from edgegate_inference.core.spec import ExecutionProvider, TensorSpec
from edgegate_inference.core.types import Array

log = get_logger(__name__)

ORT_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
SHORT_NAMES = {v: k for k, v in ORT_NAMES.items()}

# Friendly option names -> ONNX Runtime's own (which are accepted as they are too).
_TENSORRT_ALIASES = {
    "fp16": "trt_fp16_enable",
    "engine_cache_path": "trt_engine_cache_path",
    "timing_cache_path": "trt_timing_cache_path",
    "profile_min_shapes": "trt_profile_min_shapes",
    "profile_opt_shapes": "trt_profile_opt_shapes",
    "profile_max_shapes": "trt_profile_max_shapes",
    "workspace_size": "trt_max_workspace_size",
}
_CACHE_SWITCHES = {
    "trt_engine_cache_path": "trt_engine_cache_enable",
    "trt_timing_cache_path": "trt_timing_cache_enable",
}


@functools.cache
def gpu_present() -> bool:
    """A GPU device node exists (or EDGEGATE_GPU=0/1 says otherwise, for tests)."""
    forced = os.environ.get("EDGEGATE_GPU")
    if forced is not None:
        return forced == "1"
    return bool(glob.glob("/dev/nvidia[0-9]*"))


@functools.cache
def _report_cpu_only(skipped: tuple[str, ...]) -> None:
    log.info(
        "no GPU here: ONNX Runtime gets the CPU execution provider only",
        skipped=list(skipped),
        available=ort.get_available_providers(),
    )


def plan_providers(
    requested: Sequence[ExecutionProvider],
    *,
    available: Sequence[str] | None = None,
    has_gpu: bool | None = None,
    base_dir: Path | None = None,
) -> list[tuple[str, dict[str, str]]]:
    """The (ORT provider name, options) list to ask for, CPU always last."""
    available = ort.get_available_providers() if available is None else available
    has_gpu = gpu_present() if has_gpu is None else has_gpu
    plan: list[tuple[str, dict[str, str]]] = []
    skipped: list[str] = []
    for provider in requested:
        ort_name = ORT_NAMES[provider.name]
        usable = ort_name in available and (provider.name == "cpu" or has_gpu)
        if not usable:
            skipped.append(provider.name)
            continue
        plan.append((ort_name, provider_options(provider, base_dir=base_dir)))
    if not any(name == ORT_NAMES["cpu"] for name, _ in plan):
        plan.append((ORT_NAMES["cpu"], {}))
    if skipped and len(plan) == 1:
        _report_cpu_only(tuple(skipped))
    return plan


def provider_options(
    provider: ExecutionProvider, *, base_dir: Path | None = None
) -> dict[str, str]:
    """ORT's option names; cache paths relative to `base_dir` (the version folder)."""
    if provider.name != "tensorrt":
        return dict(provider.options)
    options = {_TENSORRT_ALIASES.get(k, k): v for k, v in provider.options.items()}
    for path_key, switch in _CACHE_SWITCHES.items():
        if path_key in options:
            options.setdefault(switch, "True")
            if base_dir is not None and not Path(options[path_key]).is_absolute():
                options[path_key] = str(base_dir / options[path_key])
    return options


class OnnxSession:
    """One ONNX Runtime session: one model instance."""

    def __init__(
        self,
        path: Path,
        *,
        providers: Sequence[ExecutionProvider],
        intra_op_threads: int = 0,
        inter_op_threads: int = 0,
        allow_spinning: bool = True,
    ) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = inter_op_threads
        # ONNX Runtime's worker threads spin a little while before they sleep, within
        # a call and after it (its default). That saves a wake-up per operator and,
        # for the next call, per thread: measured on 2 cores, batch-1 calls are ~0.5 ms
        # faster and batched throughput is no lower (docs/BENCHMARKS.md). Turn it off
        # where the cores are shared with other busy work.
        if not allow_spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only: warnings go through our own log
        plan = plan_providers(providers, base_dir=path.parent)
        try:
            self._session = ort.InferenceSession(
                str(path),
                sess_options=options,
                providers=[name for name, _ in plan],
                provider_options=[opts for _, opts in plan],
            )
        except (ort_errors.Fail, ort_errors.InvalidGraph, ort_errors.InvalidProtobuf) as exc:
            raise InvalidArgument(f"{path}: ONNX Runtime cannot load it: {exc}") from None
        except ort_errors.NoSuchFile:
            raise InvalidArgument(f"{path}: no such model file") from None
        self.providers = [SHORT_NAMES.get(p, p) for p in self._session.get_providers()]
        self._output_names = [o.name for o in self._session.get_outputs()]

    def inputs(self, *, batched: bool) -> list[TensorSpec]:
        return [_spec(i, batched=batched) for i in self._session.get_inputs()]

    def outputs(self, *, batched: bool) -> list[TensorSpec]:
        return [_spec(o, batched=batched) for o in self._session.get_outputs()]

    def run(self, feeds: Mapping[str, Array]) -> dict[str, Array]:
        feeds = {name: _as_text(name, a) if a.dtype.kind == "O" else a for name, a in feeds.items()}
        try:
            values = self._session.run(self._output_names, feeds)
        except ort_errors.InvalidArgument as exc:
            raise InvalidArgument(f"the model rejected the input: {exc}") from None
        except (ort_errors.RuntimeException, ort_errors.Fail) as exc:
            if "allocat" in str(exc).lower():
                raise ResourceExhausted(f"out of memory running the model: {exc}") from None
            raise Internal(f"the model failed: {exc}") from None
        return dict(zip(self._output_names, values, strict=True))


def _as_text(name: str, array: Array) -> Array:
    """ONNX string tensors hold text: ONNX Runtime takes `str`, so BYTES must be UTF-8."""
    out = np.empty(array.shape, dtype=np.object_)
    flat = out.reshape(-1)
    for i, item in enumerate(array.reshape(-1)):
        try:
            flat[i] = item.decode("utf-8") if isinstance(item, bytes) else str(item)
        except UnicodeDecodeError:
            raise InvalidArgument(
                f"input {name!r}: BYTES element {i} is not UTF-8; this model's string input "
                "takes text"
            ) from None
    return out


def _spec(arg: ort.NodeArg, *, batched: bool) -> TensorSpec:
    dims = [d if isinstance(d, int) and d > 0 else -1 for d in arg.shape]
    if batched:
        dims = dims[1:]
    return TensorSpec(name=arg.name, datatype=datatypes.from_onnx(arg.type), dims=tuple(dims))


def zeros_or_random(spec: TensorSpec, shape: Sequence[int], *, random: bool) -> Array:
    """Warm-up data for one input."""
    if spec.datatype == "BYTES":
        out = np.empty(shape, dtype=np.object_)
        out.fill(b"edgegate warm-up")
        return out
    dtype = datatypes.NUMPY[spec.datatype]
    if not random or dtype.kind == "b":
        return np.zeros(shape, dtype=dtype)
    if dtype.kind in "iu":
        return np.random.default_rng(0).integers(0, 2, size=shape).astype(dtype)
    return np.random.default_rng(0).random(size=shape).astype(dtype)
