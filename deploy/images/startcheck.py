"""Start each built image as its pod would and check that it works (`make images`, after builds).

Every container runs with the image's own user, a read-only root file system with a tmpfs
on /tmp, and the host's network; a local nats-server (JetStream) serves them all.

- First probe.py runs in the image (see there): user, file system, no build tools, every
  module of the service imports with its bytecode precompiled.
- gateway, taskstore, security: the entrypoint starts on free ports; the standard gRPC
  health check answers SERVING and /metrics answers (the gateway's HTTP port too).
- inference: the same with a model repository holding Triton's `simple` model (a tiny ONNX
  graph): the model is ready and an inference returns INPUT0 + INPUT1, so ONNX Runtime
  runs in the image; `python -m edgegate_inference.fetch`, the operator's init container,
  copies that model and checks its SHA-256.
- operator: against KMock (tests/support/kmock_cluster.py, the in-memory Kubernetes API the
  operator's tests use) through a kubeconfig: /metrics answers, a ModelDeployment applied
  there gets its Deployment, with the inference image, from the operator, and kopf's
  /healthz answers.
Then each service gets SIGTERM and must exit 0 within 30 s, as a pod's containers must.
This runs on the host with the project's venv (grpc, tritonclient, kmock, kubernetes).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import kubernetes
import numpy as np
import tritonclient.grpc as triton  # type: ignore[import-untyped]
from engines import Container, Engine, EngineError, Run
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edgegate_common.local.nats_server import LocalNatsServer
from edgegate_common.local.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))  # the test harness: KMock, the tiny ONNX models

from support import model_factory  # noqa: E402
from support.kmock_cluster import KMockCluster  # noqa: E402

IN_IMAGE = "/run/edgegate-check"  # where volumes go (see engines.Run)
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0
NAMESPACE = "edgegate"


class CheckFailed(Exception):
    """What an image did wrong; the message names its log."""


@dataclass
class Checker:
    """Starts containers of the images under check and keeps their logs."""

    engine: Engine
    nats_url: str
    folder: Path
    logs: Path
    images: Mapping[str, str] = field(default_factory=dict)

    @contextlib.contextmanager
    def container(self, run: Run, *, log_name: str) -> Iterator[tuple[Container, Path]]:
        path = self.logs / f"{log_name}.log"
        with path.open("w") as log, self.engine.start(run, log=log) as container:
            yield container, path

    def run_to_end(self, run: Run, *, log_name: str, timeout_s: float = 300) -> str:
        """Run a command in the image; its output, or CheckFailed if it exits non-zero."""
        with self.container(run, log_name=log_name) as (container, log):
            try:
                code = container.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                code = -1
        if code != 0:
            raise CheckFailed(f"{' '.join(run.argv or ['entrypoint'])} exited {code}: {_tail(log)}")
        return log.read_text()

    def probe(self, name: str, *args: str) -> dict[str, Any]:
        package = "edgegate_operator" if name == "operator" else f"edgegate_{name}"
        run = Run(
            image=self.images[name],
            argv=["python", f"{IN_IMAGE}/probe.py", package, *args],
            volumes={Path(__file__).with_name("probe.py"): f"{IN_IMAGE}/probe.py"},
        )
        output = self.run_to_end(run, log_name=f"{name}-probe")
        line = next(line for line in output.splitlines() if line.startswith("PROBE "))
        found: dict[str, Any] = json.loads(line.removeprefix("PROBE "))
        return found


def _tail(log: Path, lines: int = 30) -> str:
    return f"see {log}\n" + "\n".join(log.read_text().splitlines()[-lines:])


def _health(target: str) -> str:
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=2
            )
        except grpc.RpcError as error:
            return f"UNREACHABLE ({error.code().name})"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def _wait(what: str, ready: Callable[[], bool], container: Container, log: Path) -> float:
    """Seconds until `ready()`; CheckFailed when the container exits or time runs out."""
    started = time.monotonic()
    while not ready():
        if container.process.poll() is not None:
            raise CheckFailed(f"exited {container.process.returncode} before {what}: {_tail(log)}")
        if time.monotonic() - started > START_TIMEOUT_S:
            raise CheckFailed(f"not {what} after {START_TIMEOUT_S:.0f} s: {_tail(log)}")
        time.sleep(0.5)
    return round(time.monotonic() - started, 1)


def _http_status(url: str) -> int:
    """The HTTP status `url` answers with; 0 when nothing answers (yet)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 (our container)
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, OSError):
        return 0


def _metrics(port: int, log: Path) -> int:
    status = _http_status(f"http://127.0.0.1:{port}/metrics")
    if status != 200:
        raise CheckFailed(f"/metrics answered {status}: {_tail(log)}")
    return status


def _stop(container: Container, log: Path) -> dict[str, Any]:
    started = time.monotonic()
    code = container.stop(timeout_s=STOP_TIMEOUT_S)
    if code != 0:
        raise CheckFailed(f"exited {code} on SIGTERM: {_tail(log)}")
    return {"exit_code": code, "after_s": round(time.monotonic() - started, 1)}


def _service(
    checker: Checker,
    name: str,
    *,
    env: Mapping[str, str],
    volumes: Mapping[Path, str] | None = None,
    also: Callable[[int], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Start the entrypoint, wait for SERVING, read /metrics, run `also`, SIGTERM it."""
    prefix = f"EDGEGATE_{name.upper()}_"
    grpc_port, metrics_port = free_port(), free_port()
    env = {
        f"{prefix}NATS_URL": checker.nats_url,
        f"{prefix}GRPC_PORT": str(grpc_port),
        f"{prefix}METRICS_PORT": str(metrics_port),
        **env,
    }
    run = Run(image=checker.images[name], env=env, volumes=volumes or {})
    with checker.container(run, log_name=f"{name}-run") as (container, log):
        target = f"127.0.0.1:{grpc_port}"
        serving_s = _wait("SERVING", lambda: _health(target) == "SERVING", container, log)
        found: dict[str, Any] = {"serving_after_s": serving_s}
        found["metrics_status"] = _metrics(metrics_port, log)
        found |= also(grpc_port) if also is not None else {}
        found["sigterm"] = _stop(container, log)
    return found


def check_gateway(checker: Checker) -> dict[str, Any]:
    http_port = free_port()

    def http(_: int) -> dict[str, Any]:
        # No token: the OpenAI API refuses (401), which shows that it answers.
        return {"http_models_status": _http_status(f"http://127.0.0.1:{http_port}/v1/models")}

    env = {"EDGEGATE_GATEWAY_HTTP_PORT": str(http_port)}
    return _service(checker, "gateway", env=env, also=http)


def check_taskstore(checker: Checker) -> dict[str, Any]:
    return _service(checker, "taskstore", env={})


def check_security(checker: Checker) -> dict[str, Any]:
    # Signing keys are made at the first start, into a writable folder (a Secret in a pod).
    env = {"EDGEGATE_SECURITY_KEYS_DIR": "/tmp/keys"}  # noqa: S108 (the container's tmpfs)
    return _service(checker, "security", env=env)


def check_inference(checker: Checker) -> dict[str, Any]:
    repository = checker.folder / "models"
    model_factory.write_model(repository, "simple", onnx_bytes=model_factory.add_sub(width=4))
    model = repository / "simple" / "1" / "model.onnx"
    fetch = Run(
        image=checker.images["inference"],
        argv=[
            "python", "-m", "edgegate_inference.fetch",
            "--uri", f"file://{IN_IMAGE}/models/simple/1/model.onnx",
            "--dest", "/tmp/repository/simple/1",  # noqa: S108 (the container's tmpfs)
            "--sha256", hashlib.sha256(model.read_bytes()).hexdigest(),
            "--runtime", json.dumps({"maxBatchSize": 4}),
        ],
        volumes={repository: f"{IN_IMAGE}/models"},
    )  # fmt: skip
    checker.run_to_end(fetch, log_name="inference-fetch")
    env = {"EDGEGATE_INFERENCE_MODEL_REPOSITORY": f"{IN_IMAGE}/models"}
    found = _service(
        checker, "inference", env=env, volumes={repository: f"{IN_IMAGE}/models"}, also=_infer
    )
    return {"fetch_exit_code": 0, **found}


def _infer(grpc_port: int) -> dict[str, Any]:
    """Triton's `simple` through the Open Inference Protocol: OUTPUT0 = INPUT0 + INPUT1."""
    client = triton.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    if not client.is_model_ready("simple"):
        raise CheckFailed("the model `simple` is not ready")
    a, b = np.arange(4, dtype=np.float32)[None], np.full((1, 4), 2, dtype=np.float32)
    inputs = [triton.InferInput(n, [1, 4], "FP32") for n in ("INPUT0", "INPUT1")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(b)
    result = client.infer("simple", inputs).as_numpy("OUTPUT0")
    if result is None or not np.array_equal(result, a + b):
        raise CheckFailed(f"simple answered {result}, not {a + b}")
    client.close()
    return {"model_ready": True, "inference": result.tolist()}


def check_operator(checker: Checker) -> dict[str, Any]:
    cluster = KMockCluster().start()
    try:
        kube = checker.folder / "kube"
        kube.mkdir(exist_ok=True)
        cluster.write_kubeconfig(kube / "config", namespace=NAMESPACE)
        return _operator(checker, cluster, kube)
    finally:
        cluster.stop()


def _operator(checker: Checker, cluster: KMockCluster, kube: Path) -> dict[str, Any]:
    # The inference image of the same build, whether or not it was built this time: the
    # operator only names it in the Deployments it makes.
    image = checker.images["operator"].replace("/operator:", "/inference:")
    metrics_port, health_port = free_port(), free_port()
    env = {
        "EDGEGATE_OPERATOR_NATS_URL": checker.nats_url,
        "EDGEGATE_OPERATOR_METRICS_PORT": str(metrics_port),
        "EDGEGATE_OPERATOR_HEALTH_PORT": str(health_port),
        "EDGEGATE_OPERATOR_KUBECONFIG": f"{IN_IMAGE}/kube/config",
        "EDGEGATE_OPERATOR_INFERENCE_IMAGE": image,
    }
    run = Run(image=checker.images["operator"], env=env, volumes={kube: f"{IN_IMAGE}/kube"})
    with checker.container(run, log_name="operator-run") as (container, log):

        def metrics() -> bool:
            return _http_status(f"http://127.0.0.1:{metrics_port}/metrics") == 200

        def deployed() -> bool:
            return bool(_deployments(cluster, image))

        found: dict[str, Any] = {
            "metrics_after_s": _wait("serving /metrics", metrics, container, log)
        }
        _apply_model_deployment(kube / "config")
        found["deployment_after_s"] = _wait("deploying inference", deployed, container, log)
        found["deployments"] = _deployments(cluster, image)
        found["healthz_status"] = _http_status(f"http://127.0.0.1:{health_port}/healthz")
        if found["healthz_status"] != 200:
            raise CheckFailed(f"kopf's /healthz answered {found['healthz_status']}: {_tail(log)}")
        found["sigterm"] = _stop(container, log)
    return found


def _apply_model_deployment(kubeconfig: Path) -> None:
    """A one-step rollout of a model version: the operator's first act is its Deployment."""
    body = {
        "apiVersion": "edgegate.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "simple", "namespace": NAMESPACE},
        "spec": {
            "model": {
                "name": "simple",
                "version": "1",
                "uri": "file:///models/simple/1/model.onnx",
            },
            "replicas": 1,
            "canary": {"steps": [{"setWeight": 100}]},
        },
    }
    config = str(kubeconfig)
    with kubernetes.config.new_client_from_config(config_file=config) as api:  # type: ignore[no-untyped-call]
        kubernetes.client.CustomObjectsApi(api).create_namespaced_custom_object(
            "edgegate.io", "v1alpha1", NAMESPACE, "modeldeployments", body
        )


def _deployments(cluster: KMockCluster, image: str) -> list[str]:
    """The Deployments whose pods run `image`."""
    return [
        deployment["metadata"]["name"]
        for deployment in cluster.list("apps/v1/deployments", NAMESPACE)
        if image in {c.get("image") for c in _containers(deployment)}
    ]


def _containers(deployment: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    spec = deployment.get("spec", {}).get("template", {}).get("spec", {})
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


CHECKS: Mapping[str, Callable[[Checker], dict[str, Any]]] = {
    "gateway": check_gateway,
    "inference": check_inference,
    "taskstore": check_taskstore,
    "security": check_security,
    "operator": check_operator,
}
PROBE_ARGS: Mapping[str, tuple[str, ...]] = {
    # The model tools run offline: neither they nor their packages are in the image.
    "inference": (
        "--skip", "edgegate_inference.tools",
        "--absent", "onnx", "--absent", "safetensors",
        "--provider", "CPUExecutionProvider",
    ),
}  # fmt: skip


def check_all(engine: Engine, images: Mapping[str, str], *, logs: Path) -> dict[str, Any]:
    """Probe and start each image; {name: what was verified} or {name: {"error": why}}."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="edgegate-images-") as tmp:
        nats = LocalNatsServer(store_dir=Path(tmp) / "nats")
        with nats:
            checker = Checker(engine, nats.url, Path(tmp), logs, images)
            for name in images:
                print(f"checking {name}", flush=True)
                try:
                    found = {"probe": checker.probe(name, *PROBE_ARGS.get(name, ()))}
                    results[name] = found | CHECKS[name](checker)
                except (CheckFailed, EngineError) as error:
                    results[name] = {"error": str(error)}
                except Exception as error:  # a fault of the check itself: report, go on
                    results[name] = {"error": f"{type(error).__name__}: {error}"}
                print(f"  {name}: {_summary(results[name])}", flush=True)
    return results


def _summary(found: Mapping[str, Any]) -> str:
    if "error" in found:
        return f"FAILED: {found['error']}"
    return "ok " + json.dumps({k: v for k, v in found.items() if k != "probe"})
