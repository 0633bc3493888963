"""The one module in edgegate that imports PyTorch: a Hugging Face encoder to ONNX.

The optional path of `edgegate model build-default --exporter torch` (the
`torch-export` extra); the default path writes the graph without PyTorch
(`bert_onnx`). Imported only by `build_default`, inside the function that
needs it, so that nothing else loads PyTorch, and the service never does.

The graph takes `input_ids`, `attention_mask` and `token_type_ids` (INT64,
[batch, seq], both dynamic) and returns the token states `last_hidden_state`
(FP32, [batch, seq, hidden]). Pooling and normalisation stay out of the
graph: the service's text pipeline does them, so one exported encoder serves
mean, CLS or token-level outputs alike.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from transformers import AutoModel, PreTrainedModel
from transformers.utils import logging as hf_logging

from edgegate_inference.tools.bert_onnx import INPUT_NAMES, OUTPUT_NAME

Feeds = Mapping[str, npt.NDArray[np.int64]]


class TokenStates(torch.nn.Module):
    """The encoder with positional inputs and one tensor out, as the exporter wants it."""

    def __init__(self, encoder: PreTrainedModel) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        out = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        )
        states: torch.Tensor = out.last_hidden_state
        return states


def export_token_states(
    *, source_dir: Path, onnx_path: Path, opset: int, probes: Sequence[Feeds]
) -> list[npt.NDArray[np.float32]]:
    """Export the encoder in `source_dir` to `onnx_path`; return its outputs for `probes`.

    The probe outputs are PyTorch's own answers, for the caller to compare with
    ONNX Runtime's: an export that traced a shape into a constant shows up there.
    """
    model = _load(source_dir)
    example = tuple(torch.zeros(2, 16, dtype=torch.int64) for _ in INPUT_NAMES)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
    with _quiet():
        torch.onnx.export(
            model,
            example,
            str(onnx_path),
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_shapes={name: {0: batch, 1: seq} for name in INPUT_NAMES},
            opset_version=opset,
            dynamo=True,
            external_data=False,  # one self-contained file: the model is 90 MB
            verbose=False,
        )
        with torch.inference_mode():
            return [
                model(*(torch.from_numpy(feeds[name]) for name in INPUT_NAMES)).numpy()
                for feeds in probes
            ]


def _load(source_dir: Path) -> TokenStates:
    # The weights come from a local folder; never let a missing file turn into a download.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    encoder = AutoModel.from_pretrained(str(source_dir), local_files_only=True)
    return TokenStates(encoder).eval()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's warnings and log lines: the caller checks the result itself."""
    logger = logging.getLogger("torch")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
