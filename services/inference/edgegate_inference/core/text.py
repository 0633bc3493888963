"""The text pipeline: strings in, token tensors to the model, pooled vectors out.

Texts of different lengths batch together: the tokenizer pads every text in
a batch to the longest one and the attention mask marks the padding, which
mean pooling leaves out. So a batch of texts is one model call whatever the
lengths, and each text's vector is the same as if it had run alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from edgegate_common.errors import InvalidArgument
from edgegate_inference.core.spec import TextPipeline

FloatArray = npt.NDArray[np.float32]

# The input names BERT-style encoders use; the model takes those it declares.
INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
TOKEN_TYPE_IDS = "token_type_ids"  # noqa: S105 - an input name, not a secret


class TextEncoder:
    """Tokenises texts into the model's inputs and pools its token outputs."""

    def __init__(
        self, pipeline: TextPipeline, *, tokenizer_path: Path, model_inputs: Sequence[str]
    ) -> None:
        if not tokenizer_path.is_file():
            raise InvalidArgument(f"text pipeline: tokenizer {tokenizer_path} not found")
        missing = {INPUT_IDS, ATTENTION_MASK} - set(model_inputs)
        if missing:
            raise InvalidArgument(
                f"text pipeline: the model lacks inputs {sorted(missing)} "
                f"(has {list(model_inputs)})"
            )
        self.pipeline = pipeline
        self._wants_type_ids = TOKEN_TYPE_IDS in model_inputs
        try:
            self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        except Exception as exc:  # the tokenizers library raises plain Exception
            raise InvalidArgument(f"text pipeline: tokenizer {tokenizer_path}: {exc}") from None
        # A tokenizer.json may carry its own padding and truncation (all-MiniLM-L6-v2's
        # pads every text to 128): replace both, keeping the file's pad token.
        self._tokenizer.enable_truncation(max_length=pipeline.max_length)
        padding = self._tokenizer.padding or {}
        self._tokenizer.enable_padding(  # to the longest text in the batch
            pad_id=padding.get("pad_id", 0), pad_token=padding.get("pad_token", "[PAD]")
        )

    def tokenize(self, texts: Sequence[bytes | str]) -> dict[str, npt.NDArray[np.int64]]:
        decoded = [t if isinstance(t, str) else t.decode("utf-8", errors="replace") for t in texts]
        encodings = self._tokenizer.encode_batch(decoded)
        feeds = {
            INPUT_IDS: np.array([e.ids for e in encodings], dtype=np.int64),
            ATTENTION_MASK: np.array([e.attention_mask for e in encodings], dtype=np.int64),
        }
        if self._wants_type_ids:
            feeds[TOKEN_TYPE_IDS] = np.array([e.type_ids for e in encodings], dtype=np.int64)
        return feeds

    def pool(self, token_states: FloatArray, attention_mask: npt.NDArray[np.int64]) -> FloatArray:
        """[batch, tokens, hidden] -> [batch, hidden] by the configured pooling."""
        p = self.pipeline
        if p.pooling == "cls":
            pooled = token_states[:, 0, :]
        elif p.pooling == "mean":
            mask = attention_mask[:, :, None].astype(np.float32)
            summed = (token_states * mask).sum(axis=1)
            pooled = summed / np.clip(mask.sum(axis=1), 1e-9, None)
        else:
            pooled = token_states
        pooled = pooled.astype(np.float32, copy=False)
        if p.normalize:
            norms = np.linalg.norm(pooled, axis=-1, keepdims=True)
            pooled = pooled / np.clip(norms, 1e-12, None)
        return pooled

    def outputs(
        self,
        model_outputs: Mapping[str, npt.NDArray[np.generic]],
        feeds: Mapping[str, npt.NDArray[np.int64]],
    ) -> dict[str, FloatArray]:
        """The pipeline's single output from the model's token-level output."""
        name = self.pipeline.token_output or next(iter(model_outputs))
        states = model_outputs[name].astype(np.float32, copy=False)
        return {self.pipeline.output: self.pool(states, feeds[ATTENTION_MASK])}
