"""Put one model version into a pod's model repository: `python -m edgegate_inference.fetch`.

The operator runs this as the `model-fetch` init container of every
inference pod. `--uri` names a version's ONNX file laid out as in a Triton
repository (`<model>/<version>/model.onnx`); the fetch copies that version's
folder (the file, a tokenizer beside it) into `--dest`, and the model's
`config.yaml` or `config.pbtxt` one level up, then checks the file's SHA-256.
`--runtime` (JSON, the ModelDeployment's `spec.runtime`) overrides the
batching, instances and execution providers of a `config.yaml`.

Sources: `file://` (a mounted volume) and `http(s)://`. Anything else, a
missing file or a digest that does not match ends with exit status 1 and
one line saying what went wrong: the pod stays in Init and the operator
reports the Deployment's failure on the ModelDeployment.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

MODEL_FILE = "model.onnx"
CONFIGS = ("config.yaml", "config.pbtxt")
_TIMEOUT_S = 60


class FetchError(Exception):
    """Why the version could not be put in place; printed as the pod's one-line failure."""


def fetch(uri: str, dest: Path, *, sha256: str | None = None, runtime: dict[str, Any]) -> Path:
    """Copy the version into `dest` (a `<repo>/<model>/<version>` folder); returns the file."""
    parsed = urllib.parse.urlparse(uri)
    if not parsed.path.endswith("/" + MODEL_FILE):
        raise FetchError(f"{uri}: the uri must name a <model>/<version>/{MODEL_FILE} file")
    dest.mkdir(parents=True, exist_ok=True)
    if parsed.scheme == "file":
        _copy_local(Path(urllib.parse.unquote(parsed.path)), dest)
    elif parsed.scheme in ("http", "https"):
        _download(uri, dest)
    else:
        raise FetchError(
            f"{uri}: {parsed.scheme}:// is not fetched here; serve it over https:// or mount "
            "it and use file://"
        )
    model = dest / MODEL_FILE
    if sha256 is not None:
        actual = _sha256(model)
        if actual != sha256:
            raise FetchError(f"{uri}: the file's sha256 is {actual}, the resource says {sha256}")
    _apply_runtime(dest.parent, runtime)
    return model


def _copy_local(source: Path, dest: Path) -> None:
    if not source.is_file():
        raise FetchError(f"file://{source}: no such file")
    for item in source.parent.iterdir():
        if item.is_file():
            shutil.copy2(item, dest / item.name)
    for name in CONFIGS:
        config = source.parent.parent / name
        if config.is_file():
            shutil.copy2(config, dest.parent / name)


def _download(uri: str, dest: Path) -> None:
    _get(uri, dest / MODEL_FILE, required=True)
    model_dir = uri.rsplit("/", 2)[0]
    for name in CONFIGS:
        _get(f"{model_dir}/{name}", dest.parent / name, required=False)


def _get(url: str, target: Path, *, required: bool) -> None:
    try:
        # S310: only http(s) URLs reach here (fetch checks the scheme).
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response, target.open("wb") as out:  # noqa: S310
            shutil.copyfileobj(response, out)
    except urllib.error.HTTPError as exc:
        if required or exc.code != 404:
            raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise FetchError(f"{url}: {exc}") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _apply_runtime(model_dir: Path, runtime: dict[str, Any]) -> None:
    """Write the resource's runtime settings over the model's `config.yaml`."""
    if not runtime:
        return
    if (model_dir / "config.pbtxt").is_file():
        raise FetchError(
            "spec.runtime cannot be applied to a config.pbtxt model: set it in the pbtxt, "
            "or give the model a config.yaml"
        )
    path = model_dir / "config.yaml"
    config = (yaml.safe_load(path.read_text()) if path.is_file() else None) or {}
    if "maxBatchSize" in runtime:
        config["max_batch_size"] = runtime["maxBatchSize"]
    if "maxQueueDelayMicroseconds" in runtime:
        batching = config.get("dynamic_batching") or {}
        config["dynamic_batching"] = {
            **batching,
            "max_queue_delay_us": runtime["maxQueueDelayMicroseconds"],
        }
    if "instances" in runtime:
        config["instances"] = {**(config.get("instances") or {}), "count": runtime["instances"]}
    if "executionProviders" in runtime:
        config["execution_providers"] = [{"name": p} for p in runtime["executionProviders"]]
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgegate_inference.fetch")
    parser.add_argument(
        "--uri", required=True, help="file:// or http(s):// .../<model>/<v>/model.onnx"
    )
    parser.add_argument("--dest", required=True, type=Path, help="<repository>/<model>/<version>")
    parser.add_argument("--sha256", default=None, help="the file's SHA-256, lower-case hex")
    parser.add_argument("--runtime", default="{}", help="spec.runtime of the ModelDeployment, JSON")
    args = parser.parse_args(argv)
    try:
        runtime = json.loads(args.runtime)
        if not isinstance(runtime, dict):
            raise FetchError("--runtime must be a JSON object")
        model = fetch(args.uri, args.dest, sha256=args.sha256, runtime=runtime)
    except (FetchError, json.JSONDecodeError) as exc:
        print(f"model-fetch: {exc}", file=sys.stderr)
        return 1
    print(f"model-fetch: {args.uri} -> {model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
