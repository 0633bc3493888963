"""Do two versions' answers to one message agree?

Shadow traffic (`shadow.py`) sends a copy of a message to a canary version
and compares its answer with the one the caller got. Float tensors agree
when every row (the first dimension: one input of the batch) points the
same way, cosine similarity at or over `min_cosine`: a retrained or
quantised model never reproduces the bits, and an answer that is right
differs from the old one by little. Everything else (integer and BYTES
tensors, text, JSON, binaries) must match exactly. Output names are not
compared: a canary may rename its output and still answer the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgegate_protos.common.v1 import envelope_pb2 as env

FLOAT_TYPES = {"FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}


def agree(primary: Sequence[env.Part], shadow: Sequence[env.Part], *, min_cosine: float) -> bool:
    """Whether `shadow`'s parts answer as `primary`'s did, part by part."""
    if len(primary) != len(shadow):
        return False
    return all(_part_agrees(a, b, min_cosine) for a, b in zip(primary, shadow, strict=True))


def _part_agrees(a: env.Part, b: env.Part, min_cosine: float) -> bool:
    kind = a.WhichOneof("content")
    if kind != b.WhichOneof("content"):
        return False
    if kind != "tensor":
        return a == b
    x, y = a.tensor, b.tensor
    if x.datatype != y.datatype or list(x.shape) != list(y.shape):
        return False
    if x.datatype not in FLOAT_TYPES:
        return x.raw_data == y.raw_data
    cosines = row_cosines(x, y)
    return cosines is not None and bool(np.all(cosines >= min_cosine))


def row_cosines(x: env.Tensor, y: env.Tensor) -> np.ndarray | None:
    """The cosine similarity of each row of two float tensors of one shape; None when
    their bytes do not fit that shape. Two zero rows agree (1); a zero row and any
    other row do not (0); a row holding NaN or infinity agrees with nothing (NaN)."""
    dtype = np.dtype(FLOAT_TYPES[x.datatype])
    if any(d < 0 for d in x.shape):
        return None
    count = int(np.prod(x.shape)) if x.shape else 1
    if len(x.raw_data) != count * dtype.itemsize or len(y.raw_data) != count * dtype.itemsize:
        return None
    rows = x.shape[0] if x.shape else 1
    if rows == 0 or count == 0:
        return np.ones(rows)
    a = np.frombuffer(x.raw_data, dtype).astype(np.float64).reshape(rows, -1)
    b = np.frombuffer(y.raw_data, dtype).astype(np.float64).reshape(rows, -1)
    with np.errstate(all="ignore"):
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        dots = np.einsum("ij,ij->i", a, b)
        both_zero = ~np.any(a, axis=1) & ~np.any(b, axis=1)
        cosines = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)
    cosines[both_zero] = 1.0
    cosines[~(np.isfinite(a).all(axis=1) & np.isfinite(b).all(axis=1))] = np.nan
    return cosines
