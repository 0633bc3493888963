"""Hot update: a new version loads beside the old one, takes over atomically, none fails."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as tc
from support import model_factory as mf
from support.harness import NatsLike
from support.inference_support import CONTROL_HEADERS, InferenceServer, start_inference
from support.waiting import wait_until
from tritonclient.utils import InferenceServerException

pytestmark = pytest.mark.timeout(120)

CONFIG = "max_batch_size: 8\ndynamic_batching: {}\nwarmup: [{batch_size: 8, count: 3}]\n"


@pytest.fixture
def polling_server(shared_nats: NatsLike, tmp_path: Path) -> Iterator[InferenceServer]:
    repo = tmp_path / "models"
    mf.write_model(repo, "scale", versions=(1,), onnx_bytes=mf.scale(factor=2.0), config=CONFIG)
    server = start_inference(
        repo=repo, nats_url=shared_nats.url, log_dir=tmp_path, extra=("--repository-poll-s", "0.2")
    )
    yield server
    server.process.stop()


def _add_version(repo: Path, version: int, onnx_bytes: bytes) -> None:
    """Write the file beside, then rename: a poll never sees half a model."""
    folder = repo / "scale" / str(version)
    folder.mkdir()
    partial = folder / "model.onnx.partial"
    partial.write_bytes(onnx_bytes)
    os.replace(partial, folder / "model.onnx")


class _Load:
    """Clients calling the model without naming a version, recording every factor seen."""

    def __init__(self, url: str, *, threads: int = 4) -> None:
        self.factors: list[list[float]] = [[] for _ in range(threads)]
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(url, i), daemon=True) for i in range(threads)
        ]

    def __enter__(self) -> _Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)

    def _run(self, url: str, index: int) -> None:
        client = tc.InferenceServerClient(url)
        x = np.ones((1, 4), dtype=np.float32)
        while not self._stop.is_set():
            tensor = tc.InferInput("X", [1, 4], "FP32")
            tensor.set_data_from_numpy(x)
            try:
                y = client.infer("scale", [tensor]).as_numpy("Y")
                self.factors[index].append(float(y[0, 0]))
            except Exception as exc:
                self.errors.append(repr(exc))

    def wait_for(self, factor: float, *, timeout_s: float = 15.0) -> None:
        wait_until(
            lambda: any(f and f[-1] == factor for f in self.factors),
            timeout_s=timeout_s,
            interval_s=0.05,
            what=f"factor {factor} to be served (errors: {self.errors[:3]})",
        )

    def wait_more_answers(self, count: int, *, timeout_s: float = 15.0) -> None:
        """Until every client has had `count` more answers than it has now."""
        marks = [len(f) + count for f in self.factors]
        wait_until(
            lambda: all(len(f) >= mark for f, mark in zip(self.factors, marks, strict=True)),
            timeout_s=timeout_s,
            interval_s=0.05,
            what=f"{count} more answers for every client (errors: {self.errors[:3]})",
        )


def _reason(client: tc.InferenceServerClient, model: str, version: str = "") -> str:
    """Why the repository index says `model` (`version`, or any) is not ready; "" if none."""
    index = client.get_model_repository_index().models
    matches = (m for m in index if m.name == model and version in ("", m.version))
    return next((m.reason for m in matches if m.reason), "")


def test_new_version_takes_over_without_a_failed_request(polling_server) -> None:  # type: ignore[no-untyped-def]
    client = tc.InferenceServerClient(polling_server.url)
    with _Load(polling_server.url) as load:
        load.wait_for(2.0)
        _add_version(polling_server.repo, 2, mf.scale(factor=4.0))
        load.wait_for(4.0)
        load.wait_more_answers(5)  # every client keeps calling after the switch
    assert load.errors == []
    for seen in load.factors:
        assert set(seen) <= {2.0, 4.0}
        switched = seen.index(4.0) if 4.0 in seen else len(seen)
        assert all(f == 4.0 for f in seen[switched:]), "a client went back to the old version"
    assert client.is_model_ready("scale", "2")
    assert not client.is_model_ready("scale", "1")  # drained and unloaded (latest 1)


def test_failed_load_keeps_the_old_version_serving(polling_server) -> None:  # type: ignore[no-untyped-def]
    client = tc.InferenceServerClient(polling_server.url)
    with _Load(polling_server.url, threads=2) as load:
        load.wait_for(2.0)
        _add_version(polling_server.repo, 2, b"this is not an onnx model")
        wait_until(
            lambda: "cannot load" in _reason(client, "scale", "2"),
            timeout_s=10,
            what="version 2's load failure in the repository index",
        )
        load.wait_more_answers(5)  # every client keeps calling after the failure
    assert load.errors == []
    assert {f for seen in load.factors for f in seen} == {2.0}
    assert client.is_model_ready("scale", "1")
    # An explicit load reports the failure to the caller too.
    with pytest.raises(InferenceServerException) as refused:
        client.load_model("scale", headers=CONTROL_HEADERS)
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "2/model.onnx: ONNX Runtime cannot load it" in refused.value.message()
    assert client.is_model_ready("scale", "1")


def test_a_broken_model_does_not_stop_the_poller(polling_server) -> None:  # type: ignore[no-untyped-def]
    client = tc.InferenceServerClient(polling_server.url)
    text_config = "max_batch_size: 4\ntext: {tokenizer: tokenizer.json}\n"
    broken = mf.write_model(
        polling_server.repo, "broken_text", onnx_bytes=mf.toy_encoder(vocab=10), config=text_config
    )
    (broken / "1" / "tokenizer.json").write_text("{ half a tokenizer")  # the library's own error
    reason = wait_until(
        lambda: "tokenizer" in (found := _reason(client, "broken_text")) and found,
        timeout_s=10,
        what="broken_text's load failure in the repository index",
    )
    assert "tokenizer.json" in reason and "key must be a string" in reason
    # The poller is still alive: a new version of another model is picked up.
    _add_version(polling_server.repo, 2, mf.scale(factor=4.0))
    wait_until(lambda: client.is_model_ready("scale", "2"), timeout_s=10, what="scale 2 ready")


def test_an_explicit_unload_sticks_while_polling(polling_server) -> None:  # type: ignore[no-untyped-def]
    client = tc.InferenceServerClient(polling_server.url)
    client.unload_model("scale", headers=CONTROL_HEADERS)
    time.sleep(1.0)  # the behaviour: five polls pass and none loads it again
    assert not client.is_model_ready("scale")
    client.load_model("scale", headers=CONTROL_HEADERS)
    assert client.is_model_ready("scale")
