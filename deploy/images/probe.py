"""Run inside an edgegate image by `make images`: is the image what its pod needs?

    python /run/edgegate-check/probe.py PACKAGE [--skip MODULE] [--absent MODULE]
        [--provider NAME]

It checks what the Dockerfile promises: the process runs as 10001:10001 with HOME and the
working folder /tmp; the root file system refuses writes and /tmp takes them; the build
tools stayed in the builder stage (and so did whatever `--absent` names); every module of
PACKAGE imports (but those under `--skip`); every module loaded from the venv has its
bytecode compiled at build time; `--provider` is one of ONNX Runtime's. It prints one JSON
line of what it saw, and exits 1 if anything differs. The image's own interpreter runs it,
so it uses the standard library only.
"""

# ruff: noqa: S108 - /tmp and /var/tmp of the image are what this probes

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import pkgutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

USER = (10001, 10001)
WRITABLE = "/tmp"
READ_ONLY = ("/", "/etc", "/opt/venv", "/opt/venv/lib", "/var/tmp")
# Build tools: they stay in the builder stage. (setuptools is in an image only where a
# distribution requires it at run time: spaCy and thinc, in security's.)
BUILD_TOOLS = ("pip", "grpc_tools", "mypy_protobuf")


def _identity(found: dict[str, Any]) -> list[str]:
    found["user"] = [os.getuid(), os.getgid()]
    found["home"], found["cwd"] = os.environ.get("HOME"), os.getcwd()
    problems = [] if (os.getuid(), os.getgid()) == USER else [f"runs as {found['user']}"]
    if found["home"] != WRITABLE or found["cwd"] != WRITABLE:
        problems.append(f"HOME {found['home']}, working folder {found['cwd']}: not {WRITABLE}")
    return problems


def _file_system(found: dict[str, Any]) -> list[str]:
    problems, refused = [], {}
    for folder in READ_ONLY:
        try:
            with tempfile.NamedTemporaryFile(dir=folder):
                problems.append(f"{folder} is writable")
        except OSError as error:
            refused[folder] = os.strerror(error.errno or 0)
    found["writes_refused"] = refused
    try:
        with tempfile.NamedTemporaryFile(dir=WRITABLE) as scratch:
            scratch.write(b"x")
    except OSError as error:
        problems.append(f"{WRITABLE} is not writable: {error}")
    return problems


def _absent(modules: list[str], found: dict[str, Any]) -> list[str]:
    found["absent"] = modules
    present = [name for name in modules if importlib.util.find_spec(name) is not None]
    return [f"{name} is in the image" for name in present]


def _modules(package: str, skip: tuple[str, ...]) -> Iterator[str]:
    """PACKAGE and all its submodules, without importing those under `skip`."""
    yield package
    root = importlib.import_module(package)
    for info in pkgutil.iter_modules(root.__path__, package + "."):
        if info.name.startswith(skip):
            continue
        if info.ispkg:
            yield from _modules(info.name, skip)
        else:
            yield info.name


def _imports(package: str, skip: tuple[str, ...], found: dict[str, Any]) -> list[str]:
    problems, count = [], 0
    for name in _modules(package, skip):
        try:
            importlib.import_module(name)
            count += 1
        except Exception as error:  # anything an import raises is the finding
            problems.append(f"import {name}: {type(error).__name__}: {error}")
    found["imported"] = count
    return problems


def _bytecode(found: dict[str, Any]) -> list[str]:
    """Every module loaded from the venv has its .pyc: nothing is compiled at start."""
    files = [getattr(module, "__file__", None) for module in list(sys.modules.values())]
    sources = [f for f in files if f and f.startswith(sys.prefix + "/") and f.endswith(".py")]
    missing = [s for s in sources if not Path(importlib.util.cache_from_source(s)).is_file()]
    found["bytecode"] = {"modules": len(sources), "missing": len(missing)}
    return [f"no bytecode for {source}" for source in missing[:10]]


def _provider(name: str | None, found: dict[str, Any]) -> list[str]:
    if name is None:
        return []
    import onnxruntime  # type: ignore[import-untyped]  # the inference image's only

    found["providers"] = onnxruntime.get_available_providers()
    return [] if name in found["providers"] else [f"ONNX Runtime has no {name}"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("package")
    parser.add_argument("--skip", action="append", default=[])
    parser.add_argument("--absent", action="append", default=[])
    parser.add_argument("--provider")
    args = parser.parse_args()
    found: dict[str, Any] = {"package": args.package}
    problems = _identity(found) + _file_system(found)
    problems += _absent([*BUILD_TOOLS, *args.absent], found)
    problems += _imports(args.package, tuple(args.skip), found)
    problems += _bytecode(found) + _provider(args.provider, found)
    found["problems"] = problems
    print("PROBE " + json.dumps(found), flush=True)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
