"""Where a model's files are, for whatever path a user names.

People name a `model.onnx`, a version folder (`<repo>/<model>/1`) or a model
folder (`<repo>/<model>`); each tool takes the forms that make sense to it.
The tokenizer is looked up as the service looks it up: in the version folder,
else in the model folder, under the name the model's config gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgegate_common.errors import InvalidArgument, NotFound
from edgegate_inference.core import config_files
from edgegate_inference.core.config_files import CONFIG_FILES
from edgegate_inference.core.spec import MODEL_FILE, ModelSpec


@dataclass(frozen=True)
class OnnxModel:
    """One ONNX file and what the service would serve it with."""

    onnx: Path
    version_dir: Path | None  # set when the user named the folder, not the file
    spec: ModelSpec | None  # the model folder's config, where there is one
    tokenizer: Path | None

    @property
    def tokenizer_name(self) -> str:
        text = self.spec.text if self.spec else None
        return text.tokenizer if text else "tokenizer.json"


def is_model_dir(path: Path) -> bool:
    """A model folder holds a config or numbered version folders, not a model.onnx."""
    if not path.is_dir() or (path / MODEL_FILE).is_file():
        return False
    has_config = any((path / name).is_file() for name in CONFIG_FILES)
    return has_config or bool(versions(path))


def versions(model_dir: Path) -> list[int]:
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def load_spec(model_dir: Path) -> ModelSpec | None:
    """The config in `model_dir`, or None where it has none (a loose model file's folder)."""
    if not any((model_dir / name).is_file() for name in CONFIG_FILES):
        return None
    return config_files.load(model_dir)


def locate(path: Path) -> OnnxModel:
    """The ONNX model that `path` (a model.onnx or a version folder) names."""
    if not path.exists():
        raise NotFound(f"{path}: no such file or folder")
    if path.is_dir():
        if is_model_dir(path):
            found = versions(path)
            example = path / str(found[-1] if found else 1)
            raise InvalidArgument(
                f"{path} is a model folder; name one of its versions (such as {example}) "
                f"or a {MODEL_FILE}"
            )
        onnx_path, version_dir = path / MODEL_FILE, path
        if not onnx_path.is_file():
            raise NotFound(f"{path}: no {MODEL_FILE} in this folder")
    else:
        onnx_path, version_dir = path, None
    folder = onnx_path.parent
    # Only a numbered folder is a version folder: its parent's config is this model's.
    in_repo = folder.name.isdigit()
    spec = load_spec(folder.parent) if in_repo else None
    model = OnnxModel(onnx=onnx_path, version_dir=version_dir, spec=spec, tokenizer=None)
    places = (folder, folder.parent) if in_repo else (folder,)
    for place in places:
        if (place / model.tokenizer_name).is_file():
            return OnnxModel(onnx_path, version_dir, spec, place / model.tokenizer_name)
    return model
