"""The whole suite for the operator's end-to-end tests, on real parts.

A nats-server and the security service (tests/support/suite_stack.py), KMock as the
Kubernetes API (kmock_cluster.py), the kubelet harness running real
inference processes for the operator's Deployments (kubelet.py), the real
gateway taking traffic, and `python -m edgegate_operator` as a process of
its own, so a test can SIGKILL it and start another.

Models come from a folder laid out like a model repository, named in each
ModelDeployment by a file:// uri, as a volume would be mounted in a pod.
"""

from __future__ import annotations

import asyncio
import functools
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
import nats.errors
import nats.js.errors
import openai

from edgegate_common import subjects
from edgegate_common.bus import Bus
from support import model_factory as mf
from support.crd_schema import checker
from support.inference_support import TEXT_CONFIG, minilm_tokenizer
from support.kmock_cluster import MODELDEPLOYMENTS, KMockCluster
from support.kubelet import Kubelet
from support.suite_stack import Stack, start_stack
from support.waiting import wait_until

NAMESPACE = "edgegate"
VOCAB = 30522
OPERATOR_ARGS = (
    "--metrics-port", "0",
    "--health-port", "0",  # two worlds on one machine must not share 8081
    "--resync-s", "0.5",
    "--status-min-interval-s", "1",
    "--analysis-grace-s", "0.6",
    "--inference-metrics-snapshot-s", "0.5",
)  # fmt: skip


def write_version(source: Path, model: str, version: int, onnx_bytes: bytes) -> str:
    """A text model version in the source folder; its file:// uri."""
    mf.write_model(source, model, versions=(version,), onnx_bytes=onnx_bytes, config=TEXT_CONFIG)
    shutil.copy(minilm_tokenizer(), source / model / str(version) / "tokenizer.json")
    return (source / model / str(version) / "model.onnx").as_uri()


def model_deployment(
    name: str, *, version: int, uri: str, steps: list[dict[str, Any]], **canary: Any
) -> dict[str, Any]:
    analysis = {
        "interval": "4s",
        "maxErrorRate": 0.02,
        "maxP99LatencySeconds": 1.0,
        "minRequests": 5,
        "failureLimit": 1,
        "inconclusiveLimit": 2,
        **canary.pop("analysis", {}),
    }
    return {
        "apiVersion": "edgegate.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "model": {"name": name, "version": str(version), "uri": uri},
            "replicas": 1,
            "canary": {
                "steps": steps,
                "analysis": analysis,
                "progressDeadlineSeconds": 120,
                **canary,
            },
        },
    }


@dataclass
class Traffic:
    """Embedding requests through the gateway from `workers` threads, as fast as they answer."""

    client: openai.OpenAI
    model: str
    texts: tuple[str, ...] = ("the cat sat", "a dog ran home", "is it raining")
    answers: int = 0
    failures: list[str] = field(default_factory=list)
    workers: int = 4
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Traffic:
        for _ in range(self.workers):
            self._threads.append(threading.Thread(target=self._run, daemon=True))
            self._threads[-1].start()
        return self

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            text = self.texts[i % len(self.texts)]
            i += 1
            try:
                self.client.embeddings.create(model=self.model, input=[text])
                with self._lock:
                    self.answers += 1
            except openai.APIError as exc:
                with self._lock:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.005)  # pacing: steady traffic, not a flood

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


@dataclass
class World:
    folder: Path
    stack: Stack
    cluster: KMockCluster
    kubelet: Kubelet
    kubeconfig: Path
    gateway_port: int
    source: Path
    operator: subprocess.Popen[bytes] | None = None
    operator_starts: int = 0

    @functools.cached_property
    def api(self) -> kubernetes.client.ApiClient:
        """One client for the test's own calls (closed with the world)."""
        return kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig))

    @property
    def custom(self) -> kubernetes.client.CustomObjectsApi:
        return kubernetes.client.CustomObjectsApi(self.api)

    @property
    def core(self) -> kubernetes.client.CoreV1Api:
        return kubernetes.client.CoreV1Api(self.api)

    @property
    def apps(self) -> kubernetes.client.AppsV1Api:
        return kubernetes.client.AppsV1Api(self.api)

    def start_operator(self) -> None:
        self.operator_starts += 1
        with (self.folder / f"operator-{self.operator_starts}.log").open("ab") as log:
            self.operator = self._spawn(log)

    def _spawn(self, log: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable, "-m", "edgegate_operator",
                "--nats-url", self.stack.nats.url,
                "--kubeconfig", str(self.kubeconfig),
                *OPERATOR_ARGS,
            ],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def kill_operator(self) -> None:
        assert self.operator is not None
        self.operator.kill()
        self.operator.wait()

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"http://127.0.0.1:{self.gateway_port}/v1",
            api_key=self.stack.token("infer:*"),
            max_retries=0,
            timeout=10,
        )

    def apply(self, body: dict[str, Any]) -> None:
        # KMock validates nothing: what the API server would refuse must not reach it.
        assert not checker("modeldeployments").refusals(body), body
        self.custom.create_namespaced_custom_object(
            "edgegate.io", "v1alpha1", NAMESPACE, "modeldeployments", body
        )

    def patch(self, name: str, patch: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            "edgegate.io", "v1alpha1", NAMESPACE, "modeldeployments", name, patch
        )
        self.check_schema(name)

    def check_schema(self, name: str) -> None:
        """The object as stored, spec and the status the operator wrote, against the CRD."""
        stored = self.cluster.get(MODELDEPLOYMENTS, NAMESPACE, name)
        assert stored is not None
        refusals = checker("modeldeployments").refusals(stored)
        assert not refusals, refusals

    def status(self, name: str) -> dict[str, Any]:
        return dict((self.cluster.get(MODELDEPLOYMENTS, NAMESPACE, name) or {}).get("status") or {})

    def wait_status(
        self, name: str, what: str, check: Any, timeout_s: float = 60
    ) -> dict[str, Any]:
        result: dict[str, Any] = wait_until(
            lambda: (s := self.status(name)) and check(s) and s, timeout_s=timeout_s, what=what
        )
        self.check_schema(name)
        return result

    def route(self, model: str) -> dict[str, Any] | None:
        return self._kv(subjects.KV_ROUTES, model)

    def breakers(self, model: str) -> dict[str, Any]:
        return self._kv(subjects.KV_BREAKERS, model) or {}

    def _kv(self, bucket: str, model: str) -> dict[str, Any] | None:
        async def read() -> dict[str, Any] | None:
            bus = await Bus.connect(servers=[self.stack.nats.url], name="test")
            try:
                kv = await bus.js.key_value(bucket)
                try:
                    entry = await kv.get(subjects.ident(model))
                except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
                    return None
                return dict(json.loads(entry.value or b"{}"))
            finally:
                await bus.close()

        return asyncio.run(read())

    def events(self, name: str) -> list[str]:
        return [
            e["reason"]
            for e in self.cluster.list("v1/events", NAMESPACE)
            if e.get("involvedObject", {}).get("name") == name
        ]


class RouteLog:
    """Every route document `model` gets, with the time it arrived (a KV watch in a thread)."""

    def __init__(self, nats_url: str, model: str) -> None:
        self.seen: list[tuple[float, dict[str, Any]]] = []
        self._nats_url, self._model = nats_url, model
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._watch()), daemon=True)
        self._thread.start()

    async def _watch(self) -> None:
        bus = await Bus.connect(servers=[self._nats_url], name="route-log")
        kv = await bus.js.key_value(subjects.KV_ROUTES)
        watcher = await kv.watch(subjects.ident(self._model))
        while not self._stop.is_set():
            try:
                entry = await watcher.updates(timeout=0.2)
            except nats.errors.TimeoutError:  # nothing new: look at the stop flag again
                continue
            if entry is not None and entry.value:
                self.seen.append((time.time(), json.loads(entry.value)))
        await watcher.stop()
        await bus.close()

    def weights(self, version: str) -> list[int]:
        """The canary's successive weights, repeats folded."""
        out: list[int] = []
        for _, doc in self.seen:
            weight = doc["weights"].get(version)
            if weight is not None and (not out or out[-1] != weight):
                out.append(weight)
        return out

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def start_world(folder: Path) -> Iterator[World]:
    stack = start_stack(folder, inference=False, taskstores=0)
    cluster = KMockCluster()
    kubelet = None
    world = None
    try:
        cluster.start()
        kubeconfig = cluster.write_kubeconfig(folder / "kubeconfig", namespace=NAMESPACE)
        kubelet = Kubelet(kubeconfig=kubeconfig, nats_url=stack.nats.url, folder=folder / "pods")
        kubelet.start()
        _, port = stack.start_gateway(
            "--agreement-snapshot-s", "0.5", "--shadow-min-cosine", "0.99"
        )
        source = folder / "source"
        world = World(folder, stack, cluster, kubelet, kubeconfig, port, source)
        world.start_operator()
        yield world
    finally:
        if world is not None and world.operator is not None:
            world.operator.terminate()
            world.operator.wait(timeout=15)
        if world is not None and "api" in world.__dict__:
            world.api.close()
        if kubelet is not None:
            kubelet.stop()
        stack.stop()
        cluster.stop()


def toy(seed: int = 0, vocab: int = VOCAB) -> bytes:
    return mf.toy_encoder(vocab=vocab, seed=seed)
