"""Build every edgegate image, then start each one and check it: `make images`.

    python deploy/images/build.py [--only NAME]... [--engine auto|docker|podman|buildah]
        [--tag TAG] [--build-arg KEY=VALUE]... [--no-check]

The engine is docker or podman when one is installed and `info` works; otherwise buildah,
which needs no daemon (installed with apt-get when missing, on Debian as root) and builds
on a Debian base made here from Debian's archive (base.py), no registry needed, unless
`--build-arg BASE_IMAGE=...` names another. pip inside a build reaches only the package
index; the CA bundle pip trusts on this machine (PIP_CERT, else the system's) goes in as
the `pip-ca` build secret, for a TLS-intercepting proxy, and lands in no layer.

Then startcheck.py starts each image as its pod would. Sizes, build times and what each
check verified go to bench/results/images.json; logs to .edgegate/images/logs/.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import base
from engines import Build, Buildah, Engine, EngineError, docker_like, storage_driver

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / ".edgegate" / "images"  # git-ignored: logs, the base's root file system
REPORT = ROOT / "bench" / "results" / "images.json"
SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")
DOCKERFILES = {
    "gateway": "services/gateway/Dockerfile",
    "inference": "services/inference/Dockerfile",
    "taskstore": "services/taskstore/Dockerfile",
    "security": "services/security/Dockerfile",
    "operator": "operator/Dockerfile",
}


def _options(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=DOCKERFILES, help="default: all")
    parser.add_argument("--engine", choices=("auto", "docker", "podman", "buildah"), default="auto")
    parser.add_argument("--tag", default="latest", help="images are edgegate/<name>:TAG")
    parser.add_argument(
        "--build-arg", action="append", default=[], metavar="KEY=VALUE",
        help="e.g. BASE_IMAGE=... (buildah: instead of the Debian base made here)",
    )  # fmt: skip
    parser.add_argument("--storage-root", type=Path, help="buildah's; default: its own")
    parser.add_argument(
        "--storage-driver", default="auto", help="buildah's: overlay or vfs; default: auto"
    )
    parser.add_argument("--refresh-base", action="store_true", help="remake the Debian base")
    parser.add_argument("--no-check", action="store_true", help="build only, start nothing")
    parser.add_argument("--report", type=Path, default=REPORT)
    return parser.parse_args(argv)


def _pip_ca() -> Path | None:
    """The CA bundle pip trusts on this machine: PIP_CERT, else the system's."""
    for candidate in (os.environ.get("PIP_CERT"), str(SYSTEM_CA)):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def _revision() -> str:
    """The commit the images are built from; `-dirty` when the work tree differs from it."""
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True)
    if commit.returncode != 0:
        return "unknown"
    changes = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True)
    return commit.stdout.strip() + ("-dirty" if changes.stdout.strip() else "")


def _labels(pyproject: Path) -> dict[str, str]:
    """The OCI labels that change between builds: the distribution's version, the commit.

    No `created` label: the image's configuration holds its creation time already, and a
    label that differs on every build would make every build commit new layers.
    """
    version = tomllib.loads(pyproject.read_text())["project"]["version"]
    return {
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.revision": _revision(),
    }


def _engine(
    args: argparse.Namespace, build_args: dict[str, str], *, log: IO[str]
) -> tuple[Engine, dict[str, Any]]:
    """docker or podman if one works, else buildah; with buildah, the Debian base too."""
    engine = None if args.engine == "buildah" else docker_like(args.engine)
    if engine is not None:
        return engine, {"image": build_args.get("BASE_IMAGE", "the Dockerfiles' default")}
    base.install_tools(log=log)
    driver = storage_driver(args.storage_driver, root=args.storage_root)
    buildah = Buildah(root=args.storage_root, storage_driver=driver)
    if "BASE_IMAGE" in build_args:
        return buildah, {"image": build_args["BASE_IMAGE"], "storage_driver": driver}
    started = time.monotonic()
    made = base.ensure(buildah, cache_dir=STATE / "base", refresh=args.refresh_base, log=log)
    seconds = round(time.monotonic() - started, 1)
    if made:
        print(f"base image {base.TAG} made in {seconds:.0f} s", flush=True)
    build_args["BASE_IMAGE"] = base.TAG
    return buildah, {
        "image": base.TAG,
        "storage_driver": driver,
        "made_now": made,
        "seconds": seconds,
    }


def _build(engine: Engine, name: str, *, tag: str, build_args: Mapping[str, str]) -> dict[str, Any]:
    """Build one image; its tag, build time and size, or the error."""
    print(f"building {tag}", flush=True)
    log_path = STATE / "logs" / f"{name}-build.log"
    dockerfile = ROOT / DOCKERFILES[name]
    build = Build(
        dockerfile=dockerfile,
        context=ROOT,
        tag=tag,
        build_args=build_args,
        labels=_labels(dockerfile.parent / "pyproject.toml"),
        pip_ca=_pip_ca(),
    )
    started = time.monotonic()
    try:
        with log_path.open("w") as log:
            engine.build(build, log=log)
    except EngineError as error:
        print(_tail(log_path), file=sys.stderr)
        return {"tag": tag, "error": str(error)}
    seconds = round(time.monotonic() - started, 1)
    size = engine.size_bytes(tag)
    print(f"  {tag}: {size / 1e6:.0f} MB in {seconds:.0f} s", flush=True)
    return {"tag": tag, "build_s": seconds, "size_bytes": size, "size_mb": round(size / 1e6, 1)}


def _tag(engine: Engine, name: str, tag: str) -> str:
    return f"{engine.prefix}edgegate/{name}:{tag}"


def _tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text().splitlines()[-lines:])


def _check(engine: Engine, images: dict[str, dict[str, Any]]) -> None:
    """Start each image that was built; what was verified goes into its entry."""
    import startcheck  # the checks need the project's venv (grpc, kmock, tritonclient)

    built = {name: entry["tag"] for name, entry in images.items() if "error" not in entry}
    for name, found in startcheck.check_all(engine, built, logs=STATE / "logs").items():
        images[name]["check"] = found


def _failures(images: Mapping[str, Mapping[str, Any]]) -> list[str]:
    failed = []
    for name, entry in images.items():
        if "error" in entry or "error" in entry.get("check", {}):
            failed.append(name)
    return failed


def main(argv: Sequence[str] | None = None) -> None:
    args = _options(argv)
    started = time.monotonic()
    (STATE / "logs").mkdir(parents=True, exist_ok=True)
    build_args = dict(arg.split("=", 1) for arg in args.build_arg)
    with (STATE / "logs" / "tools.log").open("a") as log:
        engine, base_image = _engine(args, build_args, log=log)
    images = {
        name: _build(
            engine, name, tag=f"{engine.prefix}edgegate/{name}:{args.tag}", build_args=build_args
        )
        for name in args.only or DOCKERFILES
    }
    builds_s = round(time.monotonic() - started, 1)
    if not args.no_check:
        _check(engine, images)
    report = {
        "engine": engine.name,
        "base": base_image,
        "build_args": build_args,
        "images": images,
        "builds_s": builds_s,
        "total_s": round(time.monotonic() - started, 1),
    }
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{len(images)} images in {report['total_s']:.0f} s; report: {args.report}")
    if failed := _failures(images):
        sys.exit(f"failed: {', '.join(failed)} (logs in {STATE / 'logs'})")


if __name__ == "__main__":
    main()
