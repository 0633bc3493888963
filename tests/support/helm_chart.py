"""The Helm chart as tests see it: rendered by the real `helm` binary, parsed into objects."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "edgegate"
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))
NAMESPACE = "edgegate"
RELEASE = "eg"

Obj = dict[str, Any]

# What each example is for: the defaults (no file) and every file in examples/.
VALUE_SETS: dict[str, Sequence[Path]] = {"defaults": ()} | {p.stem: (p,) for p in EXAMPLES}


def helm() -> str:
    """The helm binary `make setup` put next to the venv's python (or on PATH)."""
    beside = Path(sys.executable).parent / "helm"
    found = str(beside) if beside.exists() else shutil.which("helm")
    if found is None:
        raise RuntimeError("no helm: run `make setup`")
    return found


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm(), *args], capture_output=True, text=True, check=False, timeout=120)


def template(
    files: Sequence[Path] = (), sets: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """`helm template` of the chart with these values files and --set pairs."""
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for file in files:
        args += ["--values", str(file)]
    for pair in sets:
        args += ["--set", pair]
    return run_helm(*args)


@functools.cache
def render(files: tuple[Path, ...] = (), sets: tuple[str, ...] = ()) -> tuple[Obj, ...]:
    """Every object `helm template` makes (cached: rendering is the slow part)."""
    result = template(files, sets)
    if result.returncode != 0:
        raise AssertionError(f"helm template failed: {result.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render_set(name: str) -> tuple[Obj, ...]:
    return render(tuple(VALUE_SETS[name]))


def find(objects: Sequence[Obj], kind: str, name: str) -> Obj:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def workloads(objects: Sequence[Obj]) -> Iterator[tuple[Obj, Obj]]:
    """(object, pod spec) for everything that runs pods: Deployments, StatefulSets, Pods."""
    for obj in objects:
        if obj["kind"] in ("Deployment", "StatefulSet"):
            yield obj, obj["spec"]["template"]["spec"]
        elif obj["kind"] == "Pod":
            yield obj, obj["spec"]


def pod_labels(obj: Obj) -> dict[str, str]:
    meta = obj["metadata"] if obj["kind"] == "Pod" else obj["spec"]["template"]["metadata"]
    labels: dict[str, str] = meta.get("labels", {})
    return labels


def component(obj: Obj) -> str:
    value: str = obj["metadata"]["labels"]["app.kubernetes.io/component"]
    return value


def containers(pod: Obj) -> list[Obj]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def env(container: Obj) -> dict[str, Any]:
    """The container's environment, name -> value (or the valueFrom object)."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}
