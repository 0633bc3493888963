"""`edgegate model quantize` on the default model: a quarter of the size, nearly the
same embeddings, and a servable version folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edgegate_inference.tools import int8

pytestmark = pytest.mark.timeout(300)  # the first user of default_model_repo may build it
SENTENCES = 50


def _tools(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "edgegate_inference.tools", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=280)


@pytest.fixture(scope="module")
def quantized(
    default_model_repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any], subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("quantized") / "all-MiniLM-L6-v2" / "2"
    report = out.parent / "report.json"
    source = default_model_repo / "all-MiniLM-L6-v2" / "1"
    # 50 sentences to compare on, not the default 200: a quarter of stage 4's work.
    result = _tools("quantize", source, out, "--report", report, "--sentences", str(SENTENCES))
    assert result.returncode == 0, result.stderr
    return out, json.loads(report.read_text()), result


def test_int8_is_small_and_close_to_fp32(
    quantized: tuple[Path, dict[str, Any], subprocess.CompletedProcess[str]],
) -> None:
    _, report, _ = quantized
    assert report["int8_bytes"] < 0.40 * report["fp32_bytes"]
    assert report["accuracy"]["sentences"] == SENTENCES
    assert report["accuracy"]["cosine_min"] >= 0.98
    assert report["accuracy"]["cosine_mean"] >= report["accuracy"]["cosine_min"]
    assert report["settings"]["per_channel"] is True
    for batch in ("batch_1", "batch_32"):
        for precision in ("fp32", "int8"):
            speed = report["speed"][batch][precision]
            assert speed["sentences_per_s"] > 0 and speed["p50_ms"] > 0


def test_the_output_is_a_servable_version_folder(
    quantized: tuple[Path, dict[str, Any], subprocess.CompletedProcess[str]],
) -> None:
    out, report, _ = quantized
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "tokenizer.json"]
    assert report["output"] == str(out / "model.onnx")
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_progress_goes_to_stderr_and_the_table_to_stdout(
    quantized: tuple[Path, dict[str, Any], subprocess.CompletedProcess[str]],
) -> None:
    _, _, result = quantized
    assert "[2/5] quantizing weights" in result.stderr
    assert "batch 32 6/6" in result.stderr
    assert "size (MB)" in result.stdout and "cosine INT8 vs FP32" in result.stdout
    assert "[" not in result.stdout.splitlines()[0]


def test_the_sensitive_matmuls_are_the_ones_after_gelu(default_model_repo: Path) -> None:
    names = int8.after_gelu(default_model_repo / "all-MiniLM-L6-v2" / "1" / "model.onnx")
    assert len(names) == 6  # one feed-forward block per layer


def test_a_missing_input_is_a_clear_error(tmp_path: Path) -> None:
    result = _tools("quantize", tmp_path / "missing.onnx", tmp_path / "out.onnx")
    assert result.returncode == 1
    assert "no such file or folder" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.onnx").exists()


def test_a_file_that_is_not_onnx_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "model.onnx"
    bogus.write_text("not a model")
    result = _tools("quantize", bogus, tmp_path / "out.onnx")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.onnx").exists()


def test_it_will_not_overwrite_without_force(
    quantized: tuple[Path, dict[str, Any], subprocess.CompletedProcess[str]],
    default_model_repo: Path,
) -> None:
    out, _, _ = quantized
    result = _tools("quantize", default_model_repo / "all-MiniLM-L6-v2" / "1", out)
    assert result.returncode == 1
    assert "exists; pass --force" in result.stderr


def test_a_loose_model_file_quantizes_to_a_file(default_model_repo: Path, tmp_path: Path) -> None:
    loose = tmp_path / "encoder.onnx"  # no tokenizer beside it: nothing to measure with
    loose.symlink_to(default_model_repo / "all-MiniLM-L6-v2" / "1" / "model.onnx")
    out = tmp_path / "int8"
    out.mkdir()
    result = _tools("quantize", loose, out, "--no-preprocess", "--report", tmp_path / "r.json")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["encoder.onnx"]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["int8_bytes"] < 0.40 * report["fp32_bytes"]
    assert report["accuracy"] is None and report["speed"] == {}
    assert "no tokenizer.json beside the model" in result.stderr
