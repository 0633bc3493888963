"""Which config file a model folder holds, read into one `ModelSpec`.

A model folder holds `config.yaml` (the `spec` schema) or Triton's
`config.pbtxt` (read by `triton_config`), or neither (the defaults). This
module sits above both readers so that `spec` never needs `triton_config`:
the pbtxt reader builds on the schema, not the other way round.
"""

from __future__ import annotations

from pathlib import Path

from edgegate_inference.core.spec import ModelSpec, parse_yaml
from edgegate_inference.core.triton_config import parse_pbtxt

YAML_CONFIG_FILES = ("config.yaml", "config.yml")
PBTXT_CONFIG_FILE = "config.pbtxt"
CONFIG_FILES = (*YAML_CONFIG_FILES, PBTXT_CONFIG_FILE)


def load(model_dir: Path) -> ModelSpec:
    """The spec of the model in `model_dir`: config.yaml, else config.pbtxt, else defaults."""
    for filename in YAML_CONFIG_FILES:
        path = model_dir / filename
        if path.is_file():
            return parse_yaml(path.read_text(), source=str(path), name=model_dir.name)
    pbtxt = model_dir / PBTXT_CONFIG_FILE
    if pbtxt.is_file():
        return parse_pbtxt(pbtxt.read_text(), source=str(pbtxt), name=model_dir.name)
    return ModelSpec(name=model_dir.name)
