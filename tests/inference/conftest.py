"""Fixtures: an inference service process serving the small test models."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.harness import NatsLike
from support.inference_support import InferenceServer, build_test_repository, start_inference


@pytest.fixture(scope="module")
def inference_server(
    shared_nats: NatsLike, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InferenceServer]:
    """One inference process per test module, serving the test models (no polling)."""
    root = tmp_path_factory.mktemp("inference")
    repo = build_test_repository(root / "models")
    server = start_inference(
        repo=repo,
        nats_url=shared_nats.url,
        log_dir=root,
        extra=("--repository-poll-s", "0", "--metrics-snapshot-s", "0.3"),
    )
    yield server
    server.process.stop()
