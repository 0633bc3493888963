"""The repository in-process: failures stay with their model, retiring always completes."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from pydantic import ValidationError
from support import model_factory as mf
from support.waiting import eventually

from edgegate_common.errors import Internal, NotFound
from edgegate_inference import repository as repository_module
from edgegate_inference.config import InferenceSettings
from edgegate_inference.repository import ModelRepository

CONFIG = "max_batch_size: 4\ndynamic_batching: {}\n"


def _repo(tmp_path: Path, *names: str) -> Path:
    for name in names:
        mf.write_model(tmp_path, name, onnx_bytes=mf.scale(), config=CONFIG)
    return tmp_path


async def test_an_unexpected_error_stays_with_its_model(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    real_build = repository_module.build_version

    def build(**kwargs):  # type: ignore[no-untyped-def]
        if kwargs["name"] == "b_broken":
            raise RuntimeError("disk went away")
        return real_build(**kwargs)

    monkeypatch.setattr(repository_module, "build_version", build)
    repo = ModelRepository(_repo(tmp_path, "a_ok", "b_broken", "c_ok"))
    await repo.load_all()  # does not raise; loads the models after the broken one
    try:
        assert repo.ready("a_ok") and repo.ready("c_ok")
        with pytest.raises(Internal, match="disk went away"):
            await repo.load("b_broken")
        reasons = {e.name: e.reason for e in repo.index()}
        assert "RuntimeError('disk went away')" in reasons["b_broken"]
        await repo.rescan()  # the poller's step survives it too
    finally:
        await repo.close()


async def test_a_caller_that_leaves_does_not_leave_a_version_half_closed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    repo = ModelRepository(_repo(tmp_path, "m"), drain_timeout_s=5)
    await repo.load("m")
    old = repo.get("m")
    assert old.batcher is not None
    slow = asyncio.Event()
    # A request that holds the old version's queue, so retiring has to drain.
    old_runner = old.runners[0]

    entered = threading.Event()

    def held(inputs):  # type: ignore[no-untyped-def]
        entered.set()
        while not slow.is_set():
            threading.Event().wait(0.01)
        return old_runner(inputs)

    old.batcher._runners[0] = held  # type: ignore[attr-defined]
    import numpy as np

    request = asyncio.ensure_future(old.batcher.infer({"X": np.ones((1, 3), np.float32)}, size=1))
    await eventually(entered.is_set, timeout_s=5, interval_s=0.01, what="the old version running")
    reload = asyncio.ensure_future(repo.load("m"))  # explicit: rebuilds and retires the old
    await eventually(
        lambda: repo.get("m") is not old, timeout_s=10, interval_s=0.01, what="the switch"
    )
    reload.cancel()  # the caller's deadline passes mid-drain
    with pytest.raises(asyncio.CancelledError):
        await reload
    slow.set()
    await request  # the old version still answered what it had accepted
    old_threads = list(old.batcher._executors[0]._threads)  # type: ignore[attr-defined]
    assert old_threads
    await eventually(
        lambda: not any(t.is_alive() for t in old_threads),
        timeout_s=5,
        what="the retired version's threads to end",
    )
    assert repo.get("m") is not old
    await repo.close()
    with pytest.raises(NotFound):
        repo.get("m")


def test_the_repository_control_key_comes_from_a_file_and_must_be_long(tmp_path: Path) -> None:
    assert InferenceSettings().repository_key() is None  # off unless the operator sets one
    key_file = tmp_path / "key"
    key_file.write_text("a-key-of-twenty-chars\n", encoding="utf-8")
    from_file = InferenceSettings(repository_control_key_file=key_file)
    key = from_file.repository_key()
    assert key is not None and key.get_secret_value() == "a-key-of-twenty-chars"
    assert "twenty" not in repr(from_file) + str(key)  # never printed
    with pytest.raises(ValueError, match="at least 16"):
        InferenceSettings(repository_control_key="short").repository_key()  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="not both"):
        InferenceSettings(
            repository_control_key="a-key-of-twenty-chars",  # type: ignore[arg-type]
            repository_control_key_file=key_file,
        )
