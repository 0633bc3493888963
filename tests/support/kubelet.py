"""Plays the Deployment controller and the kubelet for edgegate's inference Deployments.

KMock runs no controllers: a Deployment the operator creates would never
get pods or ready replicas. `Kubelet` watches the operator's Deployments
(label app.kubernetes.io/managed-by=edgegate-operator) and for each
replica runs the pod as the manifest describes it: the `model-fetch` init
container's command (its /models rewritten to a folder of the pod's own),
then the inference container's command with its environment, as a real
process on the test's nats-server. A replica is ready when its gRPC health
says SERVING. The Deployment's status (replicas, readyReplicas, and a
ReplicaFailure condition when the init container fails) is written through
/status, as the controller would. A changed pod template replaces the
pods; fewer replicas stop the newest; a deleted Deployment stops them all.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes

from edgegate_common.local import ServiceProcess, free_port
from edgegate_common.rpc.probe import health_status

MANAGED = "app.kubernetes.io/managed-by=edgegate-operator"
REPOSITORY = "/models"


@dataclass
class Pod:
    name: str
    template: str  # the hash of the template it runs
    process: ServiceProcess | None = None
    ready: bool = False
    failure: str = ""


@dataclass
class Kubelet:
    kubeconfig: Path
    nats_url: str
    folder: Path
    poll_s: float = 0.2
    pods: dict[tuple[str, str], list[Pod]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _serial: int = 0

    def start(self) -> Kubelet:
        self._client = kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig))
        self._apps = kubernetes.client.AppsV1Api(self._client)
        self._thread = threading.Thread(target=self._run, name="kubelet", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        for pods in self.pods.values():
            for pod in pods:
                _stop(pod)
        self._client.close()

    def processes(self, deployment: str) -> list[ServiceProcess]:
        return [
            p.process
            for (_, name), pods in list(self.pods.items())
            if name == deployment
            for p in pods
            if p.process is not None
        ]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._sync()
            except Exception as exc:  # keep playing the kubelet; the test sees the effects
                print(f"kubelet: {exc!r}", file=sys.stderr)
            self._stop.wait(self.poll_s)

    def _sync(self) -> None:
        listing = self._apps.list_deployment_for_all_namespaces(
            label_selector=MANAGED, _preload_content=False
        )
        deployments = [
            d
            for d in json.loads(listing.data)["items"]
            if d["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by")
            == "edgegate-operator"
        ]
        seen = set()
        for deployment in deployments:
            key = (deployment["metadata"]["namespace"], deployment["metadata"]["name"])
            seen.add(key)
            self._reconcile(key, deployment)
        for key in set(self.pods) - seen:
            for pod in self.pods.pop(key):
                _stop(pod)

    def _reconcile(self, key: tuple[str, str], deployment: dict[str, Any]) -> None:
        template = deployment["spec"]["template"]
        digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:12]
        pods = self.pods.setdefault(key, [])
        for pod in [p for p in pods if p.template != digest or _crashed(p)]:
            pods.remove(pod)
            _stop(pod)
        wanted = int(deployment["spec"].get("replicas", 1))
        while len(pods) > wanted:
            _stop(pods.pop())
        while len(pods) < wanted:
            pods.append(self._start_pod(key[1], template, digest))
        for pod in pods:
            if pod.process is not None and not pod.ready:
                status = asyncio.run(health_status(pod.process.target, timeout_s=0.3))
                pod.ready = status == "SERVING"
        self._write_status(key, deployment, pods)

    def _start_pod(self, deployment: str, template: dict[str, Any], digest: str) -> Pod:
        self._serial += 1
        pod = Pod(name=f"{deployment}-{self._serial}", template=digest)
        root = self.folder / pod.name
        spec = template["spec"]
        for init in spec.get("initContainers", []):
            command = [*init.get("command", []), *init.get("args", [])]
            command = [_local(arg, root) for arg in command]
            command[0] = sys.executable if command[0] == "python" else command[0]
            done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
            if done.returncode != 0:
                lines = (done.stderr or done.stdout).strip().splitlines() or ["exit code"]
                pod.failure = f"init container {init['name']} failed: {lines[-1]}"
                return pod
        (container,) = spec["containers"]
        env = {e["name"]: _local(e["value"], root) for e in container.get("env", [])}
        env["EDGEGATE_INFERENCE_NATS_URL"] = self.nats_url
        env.pop("EDGEGATE_INFERENCE_GRPC_PORT", None)
        env.pop("EDGEGATE_INFERENCE_METRICS_PORT", None)
        pod.process = ServiceProcess(
            "inference",
            nats_url=self.nats_url,
            grpc_port=free_port(),
            metrics_port=0,
            log_file=self.folder / f"{pod.name}.log",
            env=env,
        )
        pod.process.start()
        return pod

    def _write_status(
        self, key: tuple[str, str], deployment: dict[str, Any], pods: list[Pod]
    ) -> None:
        failures = [p.failure for p in pods if p.failure]
        conditions = []
        if failures:
            conditions.append(
                {
                    "type": "ReplicaFailure",
                    "status": "True",
                    "reason": "FailedCreate",
                    "message": failures[0],
                }
            )
        status = {
            "observedGeneration": deployment["metadata"].get("generation", 1),
            "replicas": len(pods),
            "updatedReplicas": len(pods),
            "readyReplicas": sum(p.ready for p in pods),
            "availableReplicas": sum(p.ready for p in pods),
            "conditions": conditions,
        }
        current = deployment.get("status") or {}
        if all(current.get(k) == v for k, v in status.items()):
            return
        self._apps.patch_namespaced_deployment_status(
            key[1], key[0], {"status": status}, _content_type="application/merge-patch+json"
        )


def _local(value: str, root: Path) -> str:
    """The pod's /models as a folder of its own on this machine."""
    if value == REPOSITORY or value.startswith(REPOSITORY + "/"):
        return str(root / "models") + value[len(REPOSITORY) :]
    return value


def _crashed(pod: Pod) -> bool:
    return pod.process is not None and pod.process.returncode is not None


def _stop(pod: Pod) -> None:
    if pod.process is not None:
        pod.process.stop(timeout_s=5)
