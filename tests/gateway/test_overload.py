"""Overload end to end: a burst beyond what a slow model can serve in its queue timeout.

The real suite (nats-server, security, inference, gateway as processes) serves
a text model slow enough to overload on purpose (30-100 ms a batch on one
thread). A burst of embedding requests gets 200 for what the model can start
within its queue timeout and 429 with Retry-After at once for the rest; the
breaker, judging service time rather than queueing, stays closed, so no
request gets a 503 "circuit open" and the model answers locally afterwards.
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from support.inference_support import minilm_tokenizer
from support.model_factory import slow_encoder, write_model
from support.suite_stack import Stack, start_stack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

MODEL = "slow_text"
SENTENCES = 16  # per request: one full batch of the model
CLIENTS = 32  # 1-3 s of work at once, against a 1 s queue timeout
SLOW_CONFIG = """
max_batch_size: 16
dynamic_batching: {queue_policy: {default_timeout_us: 1000000}}
instances: {count: 1, intra_op_threads: 1}
text: {tokenizer: tokenizer.json, max_length: 32, pooling: mean, normalize: true}
warmup: [{batch_size: 16}]
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("gateway-overload")
    running = start_stack(folder, inference=False, taskstores=0)
    try:
        model_dir = write_model(
            folder / "models", MODEL, onnx_bytes=slow_encoder(vocab=30522), config=SLOW_CONFIG
        )
        shutil.copy(minilm_tokenizer(), model_dir / "1" / "tokenizer.json")
        running.start_inference()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def base_url(stack: Stack) -> str:
    # A breaker that would open within the burst if it counted queueing as slowness.
    _, port = stack.start_gateway(
        "--breaker-min-calls", "5",
        "--breaker-slow-call-s", "0.3",
        "--breaker-slow-call-rate", "0.5",
        "--breaker-open-s", "30",
    )  # fmt: skip
    return f"http://127.0.0.1:{port}/v1"


def _embed(base: str, token: str, texts: list[str]) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(
        f"{base}/embeddings",
        data=json.dumps({"model": MODEL, "input": texts}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, dict(answer.headers), json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        with refused:
            return refused.code, dict(refused.headers), json.loads(refused.read())


def _burst(base: str, token: str, wave: int) -> list[tuple[int, dict[str, str], Any]]:
    def one(client: int) -> tuple[int, dict[str, str], Any]:
        texts = [f"wave {wave} client {client} sentence {i} about load" for i in range(SENTENCES)]
        return _embed(base, token, texts)

    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(one, range(CLIENTS)))


def test_a_burst_gets_answers_and_429s_never_503s_and_the_breaker_stays_closed(
    stack: Stack, base_url: str
) -> None:
    token = stack.token("infer:*")
    # The service rate is measured on what the model serves: first one full batch.
    warm = [f"wave 0 client 0 sentence {i} about load" for i in range(SENTENCES)]
    assert _embed(base_url, token, warm)[0] == 200
    answers = _burst(base_url, token, 1) + _burst(base_url, token, 2)
    statuses = [s for s, _, _ in answers]
    # No 503 "circuit open", no 504 from a request that timed out in the queue.
    assert set(statuses) == {200, 429}, [(s, b) for s, _, b in answers if s != 200]
    for status, headers, body in answers:
        if status == 429:
            assert float(headers["Retry-After"]) > 0
            assert "overloaded" in body["error"]["message"]
        else:
            assert headers["Edgegate-Backend"] == "local"
            assert len(body["data"]) == SENTENCES
    # The breaker is closed: the model still answers locally.
    status, headers, _ = _embed(base_url, token, ["after the burst"])
    assert (status, headers["Edgegate-Backend"]) == (200, "local")
