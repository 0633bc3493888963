"""The base image buildah builds on where no registry can be reached: Debian bookworm, made here.

The Dockerfiles' default base is the official python:3.11-slim-bookworm. Where it cannot
be pulled, mmdebstrap makes the same Debian release (whose python3 is 3.11) from the
Debian archive: a minimal root file system with python3, python3-venv and the CA
certificates, imported as a one-layer image (`FROM scratch` + `ADD`, base.Containerfile).
The tarball is kept, and nothing is rebuilt while the image exists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import IO

from engines import Build, Buildah, EngineError

TAG = "localhost/edgegate/base:bookworm"
SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "ca-certificates")
ARCHIVE = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
# An image holds no manuals, documents or translations (the copyright files stay).
DPKG_EXCLUDES = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
)
# Merged /usr made by a hook, not by the usrmerge package (which brings Perl along).
MERGED_USR_HOOKS = Path("/usr/share/mmdebstrap/hooks/merged-usr")
TOOLS = ("buildah", "mmdebstrap")
HERE = Path(__file__).resolve().parent


def install_tools(*, log: IO[str]) -> None:
    """apt-get install buildah and mmdebstrap where either is missing (root on Debian only)."""
    missing = [name for name in TOOLS if shutil.which(name) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise EngineError(
            f"{', '.join(missing)} missing: install them (Debian: apt-get install -y buildah "
            "mmdebstrap), or run docker or podman"
        )
    print(f"installing {', '.join(TOOLS)} with apt-get", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", *TOOLS]):
        log.write(f"$ {' '.join(argv)}\n")
        log.flush()
        subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env, check=True)


def ensure(buildah: Buildah, *, cache_dir: Path, refresh: bool, log: IO[str]) -> bool:
    """The base image in buildah's storage; True when it had to be built now."""
    if buildah.has_image(TAG) and not refresh:
        return False
    tarball = cache_dir / "rootfs.tar"
    if refresh or not tarball.exists():
        _bootstrap(tarball, log=log)
    buildah.build(
        Build(dockerfile=HERE / "base.Containerfile", context=cache_dir, tag=TAG), log=log
    )
    return True


def _bootstrap(tarball: Path, *, log: IO[str]) -> None:
    tarball.parent.mkdir(parents=True, exist_ok=True)
    partial = tarball.with_suffix(".partial.tar")
    argv = [
        "mmdebstrap",
        # As root, mmdebstrap works in a chroot of its own; else in a user namespace.
        "--mode=root" if os.geteuid() == 0 else "--mode=unshare",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        *(f"--dpkgopt={option}" for option in DPKG_EXCLUDES),
    ]
    if MERGED_USR_HOOKS.is_dir():
        argv.append(f"--hook-dir={MERGED_USR_HOOKS}")
    argv += [SUITE, str(partial), *ARCHIVE]
    print(f"making the base image's root file system ({SUITE}) with mmdebstrap", flush=True)
    log.write(f"$ {' '.join(argv)}\n")
    log.flush()
    subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, check=True)
    partial.replace(tarball)
