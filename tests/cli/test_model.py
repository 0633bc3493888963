"""`edgegate model ...`: the CLI hands the model tools their arguments and their exit status."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)  # the first user of default_model_repo may build it


# What a machine set up from PyPI alone lacks; an import of any of them fails in `_no_torch`.
TORCH_MODULES = ("torch", "transformers", "sentence_transformers", "onnxscript")


def _edgegate(*args: str | Path, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    edgegate = Path(sys.executable).parent / "edgegate"
    command = [str(edgegate), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)


def _no_torch(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """`edgegate model ARGS` as on a machine without PyTorch, even where it is installed."""
    script = (
        "import sys; sys.modules.update(dict.fromkeys(sys.argv[1].split(',')));"
        "from edgegate_inference.tools.__main__ import main; raise SystemExit(main(sys.argv[2:]))"
    )
    command = [sys.executable, "-c", script, ",".join(TORCH_MODULES), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=280)


def test_inspect_a_model_folder_shows_its_config_and_graph(default_model_repo: Path) -> None:
    result = _edgegate("model", "inspect", default_model_repo / "all-MiniLM-L6-v2")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "text: TEXT -> embedding" in out
    assert "embedding  FP32  [384]" in out
    assert "input_ids       INT64  [batch, seq]" in out
    assert "last_hidden_state  FP32  [batch, seq, 384]" in out
    assert "opset 18" in out
    assert "versions: 1 (serves 1)" in out


def test_inspect_a_model_file_shows_its_inputs_and_outputs(default_model_repo: Path) -> None:
    path = default_model_repo / "all-MiniLM-L6-v2" / "1" / "model.onnx"
    result = _edgegate("model", "inspect", path)
    assert result.returncode == 0, result.stderr
    assert "attention_mask  INT64" in result.stdout
    assert "source: sentence-transformers/all-MiniLM-L6-v2" in result.stdout


def test_build_default_skips_a_model_that_is_there(default_model_repo: Path) -> None:
    model = default_model_repo / "all-MiniLM-L6-v2" / "1" / "model.onnx"
    before = model.stat().st_mtime_ns
    result = _edgegate("model", "build-default", "--repo", default_model_repo)
    assert result.returncode == 0, result.stderr
    assert "is there already" in result.stdout
    assert model.stat().st_mtime_ns == before


def test_a_bad_path_is_a_one_line_error(tmp_path: Path) -> None:
    result = _edgegate("model", "inspect", tmp_path / "nothing-here")
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == f"edgegate model: error: {tmp_path / 'nothing-here'}: no such file or folder"
    )


def test_help_and_usage_errors_come_from_the_model_tools() -> None:
    helped = _edgegate("model", "--help")
    assert helped.returncode == 0
    assert "build-default" in helped.stdout and "quantize" in helped.stdout
    missing = _edgegate("model")
    assert missing.returncode == 2
    assert "usage: edgegate model" in missing.stderr


def test_build_default_needs_no_pytorch(tmp_path: Path) -> None:
    result = _no_torch("build-default", "--repo", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "[3/4] checking the graph and comparing ONNX Runtime with NumPy" in result.stderr
    inspected = _edgegate("model", "inspect", tmp_path / "all-MiniLM-L6-v2" / "1")
    assert "exporter: edgegate bert_onnx" in inspected.stdout
    assert "last_hidden_state  FP32  [batch, seq, 384]" in inspected.stdout


def test_the_torch_exporter_without_pytorch_is_a_one_line_error(tmp_path: Path) -> None:
    result = _no_torch("build-default", "--repo", tmp_path, "--exporter", "torch")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "edgegate model: error: --exporter torch needs torch, which is not installed: "
        "pip install 'edgegate-inference[torch-export]' (the default exporter needs no PyTorch)"
    )
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_torch_exporter_builds_where_pytorch_is_installed(tmp_path: Path) -> None:
    for module in ("torch", "transformers", "onnxscript"):
        pytest.importorskip(module)
    build = ("model", "build-default", "--repo", tmp_path, "--exporter", "torch")
    result = _edgegate(*build, timeout_s=280)  # PyTorch's exporter: a minute on a busy machine
    assert result.returncode == 0, result.stderr
    assert "comparing ONNX Runtime with PyTorch" in result.stderr
    inspected = _edgegate("model", "inspect", tmp_path / "all-MiniLM-L6-v2" / "1")
    assert "(dynamo)" in inspected.stdout
