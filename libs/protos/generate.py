"""Generate Python, gRPC and typing stubs for every .proto under protos/.

Run by `make protos`. protoc writes imports that mirror the proto packages
(`from edgegate.common.v1 import envelope_pb2`, `from inference import ...`);
we want them under one installable package, so after generation the import
lines are rewritten to `edgegate_protos.<...>`. Only import lines and module
name strings are touched: the serialized descriptors keep the proto package
names (`edgegate.common.v1`, `inference`) that the wire and reflection use.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

# Top-level proto packages and where their Python modules live.
# OIP's proto package is `inference`; its Python home is `oip`, so that
# edgegate's own `edgegate.inference.v1` can live at `edgegate_protos.inference.v1`.
PACKAGE_MAP = {"edgegate": "edgegate_protos", "inference": "edgegate_protos.oip"}

_IMPORT_RE = re.compile(r"^(from|import) (edgegate|inference)([.\s])", re.MULTILINE)
_MODULE_NAME_RE = re.compile(r"'(edgegate|inference)\.((?:\w+\.)*\w+_pb2)'")
# Not after a dot or word character: an already rewritten edgegate_protos.oip... stays.
_STUB_REF_RE = re.compile(r"(?<![\w.])(edgegate|inference)\.((?:\w+\.)*\w+_pb2(?:_grpc)?)\b")


def _python_package(proto_package: str) -> str:
    return PACKAGE_MAP[proto_package]


def rewrite(source: str, *, is_stub: bool, private_pool: bool = False) -> str:
    """Point generated imports at edgegate_protos; leave descriptors alone.

    With `private_pool`, descriptors go to `edgegate_protos.INFERENCE_POOL`
    instead of the default pool (see that package's docstring for why).
    """
    source = _IMPORT_RE.sub(lambda m: f"{m[1]} {_python_package(m[2])}{m[3]}", source)
    source = _MODULE_NAME_RE.sub(lambda m: f"'{_python_package(m[1])}.{m[2]}'", source)
    if private_pool:
        source = source.replace(
            "_descriptor_pool.Default().AddSerializedFile(",
            "_edgegate_protos.INFERENCE_POOL.AddSerializedFile(",
        ).replace(
            "from google.protobuf import descriptor_pool as _descriptor_pool\n",
            "from google.protobuf import descriptor_pool as _descriptor_pool\n"
            "import edgegate_protos as _edgegate_protos\n",
        )
    if is_stub:
        # mypy-protobuf stubs name types by module path (edgegate.common.v1.envelope_pb2.X).
        def _ref(m: re.Match[str]) -> str:
            return f"{_python_package(m[1])}.{m[2]}"

        lines = []
        for line in source.splitlines(keepends=True):
            lines.append(line if line.lstrip().startswith("#") else _STUB_REF_RE.sub(_ref, line))
        source = "".join(lines)
    return source


def generate(*, proto_root: Path, out_root: Path) -> list[Path]:
    protos = sorted(proto_root.rglob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files under {proto_root}")
    well_known = Path(protoc.__file__).parent / "_proto"
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{proto_root}",
            f"-I{well_known}",
            f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
            f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
            f"--python_out={tmp}",
            f"--grpc_python_out={tmp}",
            f"--mypy_out={tmp}",
            f"--mypy_grpc_out={tmp}",
            *(str(p.relative_to(proto_root)) for p in protos),
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        return _install(Path(tmp), out_root)


def _install(generated: Path, out_root: Path) -> list[Path]:
    # Every sub-package of edgegate_protos is generated: start clean, so a
    # deleted .proto leaves no stale module behind.
    for child in out_root.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
    written = []
    for src in sorted(generated.rglob("*.py*")):
        top, *rest = src.relative_to(generated).parts
        # edgegate/common/v1/x_pb2.py -> common/v1/x_pb2.py; inference/x_pb2.py -> oip/x_pb2.py.
        dest = out_root.joinpath(*rest) if top == "edgegate" else out_root.joinpath("oip", *rest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        source = rewrite(
            src.read_text(), is_stub=src.suffix == ".pyi", private_pool=top == "inference"
        )
        if (
            top == "inference"
            and src.suffix == ".py"
            and "INFERENCE_POOL" not in source
            and "_pb2.py" in src.name
        ):
            raise SystemExit(f"{src.name}: could not move its descriptors to INFERENCE_POOL")
        dest.write_text(source)
        written.append(dest)
    for directory in {p.parent for p in written}:
        while directory != out_root:
            (directory / "__init__.py").touch()
            directory = directory.parent
    return written


def main() -> None:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protos", type=Path, default=here.parent.parent / "protos")
    parser.add_argument("--out", type=Path, default=here / "edgegate_protos")
    args = parser.parse_args()
    written = generate(proto_root=args.protos.resolve(), out_root=args.out.resolve())
    print(f"generated {len(written)} files into {args.out}")


if __name__ == "__main__":
    main()
