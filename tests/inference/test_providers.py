"""Execution provider planning: what ONNX Runtime is asked for, with which options."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog
from support import model_factory as mf

from edgegate_inference.adapters import onnx_runtime
from edgegate_inference.adapters.onnx_runtime import OnnxSession, plan_providers
from edgegate_inference.core.spec import DEFAULT_PROVIDERS, ExecutionProvider, Instances

TRT, CUDA, CPU = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CPUExecutionProvider",
)


def test_without_a_gpu_only_cpu_is_requested_and_said_once() -> None:
    onnx_runtime._report_cpu_only.cache_clear()
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            plan = plan_providers(DEFAULT_PROVIDERS, available=[TRT, CUDA, CPU], has_gpu=False)
            assert plan == [(CPU, {})]
    said = [entry for entry in logs if "no GPU" in entry["event"]]
    assert len(said) == 1
    assert said[0]["skipped"] == ["tensorrt", "cuda"]


def test_gpu_providers_in_order_with_their_options(tmp_path: Path) -> None:
    requested = [
        ExecutionProvider(
            name="tensorrt",
            options={
                "fp16": True,
                "engine_cache_path": "trt-cache",
                "timing_cache_path": "/abs/timing",
                "workspace_size": 1 << 30,
                "profile_min_shapes": "x:1x1",
            },
        ),
        ExecutionProvider(name="cuda", options={"device_id": 1}),
    ]
    plan = plan_providers(requested, available=[TRT, CUDA, CPU], has_gpu=True, base_dir=tmp_path)
    assert [name for name, _ in plan] == [TRT, CUDA, CPU]  # CPU always last
    trt = plan[0][1]
    assert trt["trt_fp16_enable"] == "True"
    assert trt["trt_engine_cache_enable"] == "True"
    assert trt["trt_engine_cache_path"] == str(tmp_path / "trt-cache")  # beside the model
    assert trt["trt_timing_cache_path"] == "/abs/timing"
    assert trt["trt_max_workspace_size"] == str(1 << 30)
    assert trt["trt_profile_min_shapes"] == "x:1x1"
    assert plan[1] == (CUDA, {"device_id": "1"})


def test_a_provider_this_build_lacks_is_skipped() -> None:
    plan = plan_providers(DEFAULT_PROVIDERS, available=[CUDA, CPU], has_gpu=True)
    assert [name for name, _ in plan] == [CUDA, CPU]


def test_session_reports_what_actually_runs(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(mf.scale())
    session = OnnxSession(path, providers=DEFAULT_PROVIDERS)
    assert session.providers[-1] == "cpu"
    assert set(session.providers) <= {"tensorrt", "cuda", "cpu"}


def test_threads_spin_as_onnx_runtime_does_unless_the_config_says_not(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(mf.scale())
    keys = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")
    assert Instances().allow_spinning  # the default leaves ONNX Runtime's own: spinning
    spinning = OnnxSession(path, providers=DEFAULT_PROVIDERS)._session.get_session_options()
    for key in keys:
        with pytest.raises(RuntimeError, match=f"does not have configuration with key: {key}$"):
            spinning.get_session_config_entry(key)  # not set: ORT's default (spin)
    still = OnnxSession(path, providers=DEFAULT_PROVIDERS, allow_spinning=False)
    options = still._session.get_session_options()
    assert [options.get_session_config_entry(key) for key in keys] == ["0", "0"]
