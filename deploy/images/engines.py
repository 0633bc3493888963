"""The container tools `make images` drives: docker or podman when one works, else buildah.

Each engine builds an image from a Dockerfile, tells its size, and starts a container
the way a pod runs it: the image's own user, a read-only root file system with a tmpfs
on /tmp, the host's network, and the given environment and read-only volumes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

STOP_TIMEOUT_S = 30.0
# The files buildah run binds over in the container's root (it makes them when missing).
BUILDAH_MOUNT_POINTS = ("etc/hosts", "etc/hostname", "etc/resolv.conf")


class EngineError(Exception):
    """A container tool failed; the message says which command and where its log is."""


@dataclass(frozen=True, kw_only=True)
class Build:
    dockerfile: Path
    context: Path
    tag: str
    build_args: Mapping[str, str] = field(default_factory=dict)
    # Set on the image at commit: a LABEL from a build argument in the Dockerfile would be
    # reused from buildah's layer cache with the value of the first build.
    labels: Mapping[str, str] = field(default_factory=dict)
    # Mounted as the `pip-ca` build secret (the CA bundle of a TLS-intercepting proxy).
    pip_ca: Path | None = None


@dataclass(frozen=True, kw_only=True)
class Run:
    image: str
    # None: the image's entrypoint; else the whole command line instead of it.
    argv: Sequence[str] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    # Host folder -> container path, mounted read-only. The container paths lie under
    # /run: with buildah the root is read-only and /run is where mount points can be made.
    volumes: Mapping[Path, str] = field(default_factory=dict)


class Engine(Protocol):
    name: str
    # Before edgegate/<name>:<tag>: buildah keeps unqualified names under localhost/.
    prefix: str

    def build(self, build: Build, *, log: IO[str]) -> None: ...
    def has_image(self, tag: str) -> bool: ...
    def size_bytes(self, tag: str) -> int: ...
    def start(self, run: Run, *, log: IO[str]) -> Container: ...


def _run(
    argv: Sequence[str], *, log: IO[str] | None = None, env: Mapping[str, str] | None = None
) -> str:
    """Run a tool to completion; its output goes to `log` (or is returned); fail loudly."""
    if log is not None:
        log.write(f"$ {shlex.join(argv)}\n")
        log.flush()
    result = subprocess.run(
        argv,
        stdout=log if log is not None else subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=None if env is None else {**os.environ, **env},
        check=False,
    )
    if result.returncode != 0:
        where = f"see {log.name}" if log is not None else result.stdout.strip()[-2000:]
        raise EngineError(f"{shlex.join(argv[:3])} ... exited with {result.returncode}: {where}")
    return result.stdout or ""


def tool(name: str) -> str:
    """The full path of a command on PATH."""
    path = shutil.which(name)
    if path is None:
        raise EngineError(f"{name} is not installed (not on PATH)")
    return path


class Container:
    """One started container: its process, and how to stop it as Kubernetes would (SIGTERM)."""

    def __init__(self, process: subprocess.Popen[str], *, remove: Sequence[str]) -> None:
        self.process = process
        self._remove = remove

    def exited(self) -> int | None:
        return self.process.poll()

    def main_pid(self) -> int:
        """The pid SIGTERM goes to: the engine's client forwards it (docker, podman)."""
        return self.process.pid

    def stop(self, *, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, then the exit status; an error if it is still running after `timeout_s`."""
        if self.process.poll() is None:
            os.kill(self.main_pid(), signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise EngineError(f"still running {timeout_s:.0f} s after SIGTERM") from None

    def close(self) -> None:
        """Kill whatever still runs and remove the container."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        subprocess.run(self._remove, capture_output=True, check=False)

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class DockerLike:
    """docker (with BuildKit) or podman: the same command line for what we use."""

    prefix = ""

    def __init__(self, binary: str) -> None:
        self.name = Path(binary).name
        self._binary = binary

    @staticmethod
    def works(binary: str) -> bool:
        try:
            probe = subprocess.run([binary, "info"], capture_output=True, check=False, timeout=60)
        except subprocess.TimeoutExpired:
            return False
        return probe.returncode == 0

    def build(self, build: Build, *, log: IO[str]) -> None:
        argv = [self._binary, "build", "-f", str(build.dockerfile), "-t", build.tag]
        argv += _build_options(build)
        if build.pip_ca is not None:
            argv += ["--secret", f"id=pip-ca,src={build.pip_ca}"]
        _run([*argv, str(build.context)], log=log, env={"DOCKER_BUILDKIT": "1"})

    def has_image(self, tag: str) -> bool:
        found = subprocess.run(
            [self._binary, "image", "inspect", tag], capture_output=True, check=False
        )
        return found.returncode == 0

    def size_bytes(self, tag: str) -> int:
        return int(_run([self._binary, "image", "inspect", "--format", "{{.Size}}", tag]))

    def start(self, run: Run, *, log: IO[str]) -> Container:
        name = f"edgegate-check-{os.getpid()}-{time.monotonic_ns()}"
        argv = [self._binary, "run", "--rm", "--name", name, "--network", "host"]
        argv += ["--read-only", "--tmpfs", "/tmp"]  # noqa: S108 (the container's own /tmp)
        if self.name == "podman":  # else its --read-only adds writable /run, /tmp, /var/tmp
            argv.append("--read-only-tmpfs=false")
        for key, value in run.env.items():
            argv += ["--env", f"{key}={value}"]
        for source, target in run.volumes.items():
            argv += ["--volume", f"{source}:{target}:ro"]
        if run.argv is None:
            argv.append(run.image)
        else:
            argv += ["--entrypoint", run.argv[0], run.image, *run.argv[1:]]
        log.write(f"$ {shlex.join(argv)}\n")
        log.flush()
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        return Container(process, remove=[self._binary, "rm", "--force", name])


class Buildah:
    """buildah with chroot isolation: no daemon, no registry; it runs as root, in a VM or not."""

    name = "buildah"
    prefix = "localhost/"

    def __init__(self, *, root: Path | None, storage_driver: str) -> None:
        self._global = [tool("buildah"), "--storage-driver", storage_driver]
        if root is not None:
            self._global += ["--root", str(root), "--runroot", str(root / "run")]

    def build(self, build: Build, *, log: IO[str]) -> None:
        argv = [*self._global, "bud", "--isolation", "chroot", "--layers"]
        argv += ["-f", str(build.dockerfile), "-t", build.tag]
        argv += _build_options(build)
        if build.pip_ca is not None:
            argv += ["--secret", f"id=pip-ca,src={build.pip_ca}"]
        _run([*argv, str(build.context)], log=log)

    def has_image(self, tag: str) -> bool:
        found = subprocess.run(
            [*self._global, "inspect", "--type", "image", tag], capture_output=True, check=False
        )
        return found.returncode == 0

    def _inspect(self, tag: str) -> dict[str, Any]:
        inspected: dict[str, Any] = json.loads(
            _run([*self._global, "inspect", "--type", "image", tag])
        )
        return inspected

    def size_bytes(self, tag: str) -> int:
        """The sum of the image's layers, uncompressed (what `buildah images` rounds)."""
        manifest = json.loads(self._inspect(tag)["Manifest"])
        return sum(int(layer["size"]) for layer in manifest["layers"])

    def start(self, run: Run, *, log: IO[str]) -> Container:
        config = self._inspect(run.image)["OCIv1"]["config"]
        command = list(run.argv or [*config.get("Entrypoint", []), *config.get("Cmd", [])])
        container = _run([*self._global, "from", "--pull=never", "-q", run.image]).strip()
        remove = [*self._global, "rm", container]
        try:
            script = self._run_script(container, run, command)
            log.write(f"$ {script}\n")
            log.flush()
            process = subprocess.Popen(
                [tool("unshare"), "--mount", "--propagation", "private", "sh", "-c", script],
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
        except Exception:
            subprocess.run(remove, capture_output=True, check=False)
            raise
        return BuildahContainer(process, command=command, remove=remove)

    def _run_script(self, container: str, run: Run, command: Sequence[str]) -> str:
        """`buildah run`, after the mounts that make the container's root read-only."""
        root = _run([*self._global, "mount", container]).strip()
        for name in BUILDAH_MOUNT_POINTS:  # made before the root turns read-only
            (Path(root) / name).touch(exist_ok=True)
        argv = [*self._global, "run", "--isolation", "chroot", "--network", "host"]
        argv += ["--mount", "type=tmpfs,destination=/tmp"]
        for key, value in run.env.items():
            argv += ["--env", f"{key}={value}"]
        for source, target in run.volumes.items():
            argv += ["--volume", f"{source}:{target}:ro"]
        return f"{_read_only_root(root)} && exec {shlex.join([*argv, container, '--', *command])}"


def _build_options(build: Build) -> list[str]:
    options = []
    for key, value in build.build_args.items():
        options += ["--build-arg", f"{key}={value}"]
    for key, value in build.labels.items():
        options += ["--label", f"{key}={value}"]
    return options


def _read_only_root(root: str) -> str:
    """Shell commands, for a private mount namespace, that make a container's root read-only.

    buildah run has no --read-only: the container's root folder is bound onto itself
    read-only. /run stays writable, because buildah makes its mount points there
    (/run/.containerenv, the volumes); it belongs to root, so UID 10001 cannot write there.
    """
    top, run = shlex.quote(root), shlex.quote(f"{root}/run")
    return (
        f"mount --rbind {top} {top} && mount -o remount,bind,ro {top}"
        f" && mount --bind {run} {run} && mount -o remount,bind,rw {run}"
    )


class BuildahContainer(Container):
    """buildah run kills its child on SIGTERM, so SIGTERM goes to the service's own process."""

    def __init__(
        self, process: subprocess.Popen[str], *, command: Sequence[str], remove: Sequence[str]
    ) -> None:
        super().__init__(process, remove=remove)
        self._command = list(command)

    def main_pid(self) -> int:
        """The process running the command (buildah resolves its program on PATH)."""
        program, *args = self._command
        for pid in _descendants(self.process.pid):
            found = _cmdline(pid)
            if found and Path(found[0]).name == Path(program).name and found[1:] == args:
                return pid
        raise EngineError(f"no process runs {shlex.join(self._command)}")


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    parents = [pid]
    while parents:
        for children in Path(f"/proc/{parents.pop()}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                pids = [int(child) for child in children.read_text().split()]
                found += pids
                parents += pids
    return found


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")[:-1]


DEFAULT_STORAGE_ROOT = Path("/var/lib/containers/storage")


def storage_driver(wanted: str, *, root: Path | None) -> str:
    """buildah's storage driver; "auto": the one the storage root holds, else overlay if the
    kernel mounts it here (it shares layers: builds take a third of vfs's time), else vfs.
    """
    if wanted != "auto":
        return wanted
    for driver in ("overlay", "vfs"):
        if (root or DEFAULT_STORAGE_ROOT).joinpath(f"{driver}-images").is_dir():
            return driver
    return "overlay" if _overlay_mounts() else "vfs"


def _overlay_mounts() -> bool:
    """Whether an overlay file system can be mounted here (as root, on this file system)."""
    if os.geteuid() != 0:
        return False
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        lower, upper, work, merged = (Path(tmp) / name for name in ("l", "u", "w", "m"))
        for folder in (lower, upper, work, merged):
            folder.mkdir()
        options = f"lowerdir={lower},upperdir={upper},workdir={work}"
        mounted = subprocess.run(
            [tool("mount"), "-t", "overlay", "overlay", "-o", options, str(merged)],
            capture_output=True,
            check=False,
        )
        if mounted.returncode != 0:
            return False
        subprocess.run([tool("umount"), str(merged)], capture_output=True, check=False)
        return True


def docker_like(wanted: str) -> DockerLike | None:
    """docker, else podman, whose `info` works ("auto"); or the one `wanted`; None: neither."""
    for binary in ("docker", "podman") if wanted == "auto" else (wanted,):
        path = shutil.which(binary)
        if path is not None and DockerLike.works(path):
            return DockerLike(path)
    if wanted != "auto":
        raise EngineError(f"{wanted} is not installed, or `{wanted} info` fails")
    return None
