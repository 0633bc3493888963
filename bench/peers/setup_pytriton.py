"""Create the virtualenv that the PyTriton peer server runs in.

nvidia-pytriton pins numpy 1.x and protobuf 6, so it cannot live in the
repository's .venv (numpy 2); the benchmark starts pytriton_server.py with this
venv's interpreter instead. Everything comes from PyPI as pinned in
requirements-pytriton.txt next to this file: the wheel ships tritonserver and
its Python backend stubs, so nothing else is downloaded.

Idempotent: a stamp file inside the venv records the requirements and the
interpreter it was built from; a second run with the same ones does nothing.

    python3 bench/peers/setup_pytriton.py [VENV] [--python python3.11] [--force]

VENV defaults to .venv-pytriton at the repository root. Standard library only,
so that any python3 can run it before any venv exists.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
REQUIREMENTS = HERE / "requirements-pytriton.txt"
DEFAULT_VENV = REPO / ".venv-pytriton"
STAMP_NAME = ".edgegate-pytriton-stamp"
# Imports that prove the venv can run pytriton_server.py.
SMOKE_IMPORTS = "import numpy, onnxruntime, tokenizers, pytriton.triton, pytriton.decorators"
SHARED_LIBPYTHON = "import sysconfig; print(sysconfig.get_config_var('Py_ENABLE_SHARED'))"


def main() -> int:
    args = parse_args()
    venv: Path = args.venv.resolve()
    started_s = time.monotonic()
    expected = stamp_text(python=args.python)
    stamp = venv / STAMP_NAME
    if not args.force and stamp.is_file() and stamp.read_text() == expected:
        print(f"{venv}: up to date, nothing to do")
        return 0
    require_shared_libpython(args.python)
    if venv.exists():
        if not (venv / "pyvenv.cfg").is_file():
            sys.exit(f"{venv} exists and is not a virtualenv; refusing to replace it")
        shutil.rmtree(venv)
    run(args.python, "-m", "venv", str(venv))
    # A venv inside the work tree must not show up in `git status`; Python 3.13
    # writes this file itself, 3.11 does not.
    (venv / ".gitignore").write_text("*\n")
    python = str(venv / "bin" / "python")
    pip = (python, "-m", "pip", "--disable-pip-version-check")
    run(*pip, "install", "--quiet", "--requirement", str(REQUIREMENTS))
    run(python, "-c", SMOKE_IMPORTS)
    stamp.write_text(expected)
    elapsed_s = time.monotonic() - started_s
    print(f"{venv}: ready in {elapsed_s:.0f} s, {size_mib(venv):.0f} MiB")
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("venv", nargs="?", type=Path, default=DEFAULT_VENV)
    parser.add_argument(
        "--python",
        default="python3.11",
        help="interpreter to build the venv from (default: %(default)s)",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    return parser.parse_args()


def stamp_text(*, python: str) -> str:
    """What the venv was built from: a change to either means a rebuild."""
    version = subprocess.run(
        [python, "-c", "import sys; print(sys.version)"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    requirements = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    return f"python {version}\nrequirements sha256 {requirements}\n"


def require_shared_libpython(python: str) -> None:
    """Triton's Python backend stub links libpython3.x.so, so the interpreter needs one.

    Without it the stub loads some other build's (here Debian's 3.11.2 under
    pyenv's 3.11.7, which fails with "'_thread.RLock' object has no attribute
    '_recursion_count'"). pytriton_server.py points LD_LIBRARY_PATH at this one.
    """
    answer = subprocess.run(
        [python, "-c", SHARED_LIBPYTHON], check=True, capture_output=True, text=True
    ).stdout.strip()
    if answer != "1":
        sys.exit(
            f"{python} has no shared libpython, which Triton's Python backend stub needs: "
            "pass --python an interpreter built with --enable-shared"
        )


def run(*command: str) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def size_mib(folder: Path) -> float:
    total = sum(p.lstat().st_size for p in folder.rglob("*") if not p.is_symlink())
    return total / 2**20


if __name__ == "__main__":
    sys.exit(main())
