"""Tensor datatypes: OIP names, Triton config names, numpy dtypes, ONNX type strings.

The Open Inference Protocol names datatypes `FP32`, `INT64`, `BYTES`...;
Triton's model config spells the same types `TYPE_FP32`, `TYPE_STRING`...;
ONNX Runtime reports `tensor(float)`. This module is the one table between
them, plus the BYTES wire format: each element is a 4-byte little-endian
length followed by that many bytes.
"""

from __future__ import annotations

import struct
from typing import cast

import numpy as np
import numpy.typing as npt

from edgegate_common.errors import InvalidArgument

# OIP name -> numpy dtype (BYTES is handled as numpy object arrays of `bytes`).
NUMPY: dict[str, np.dtype[np.generic]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
}

DATATYPES = frozenset(NUMPY)
FROM_NUMPY: dict[np.dtype[np.generic], str] = {dtype: name for name, dtype in NUMPY.items()}

_ONNX = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


def from_onnx(onnx_type: str) -> str:
    """`tensor(float)` -> `FP32`."""
    try:
        return _ONNX[onnx_type]
    except KeyError:
        raise InvalidArgument(
            f"ONNX type {onnx_type} has no Open Inference Protocol datatype"
        ) from None


def from_config(type_name: str) -> str:
    """Triton config `TYPE_FP32` (or plain `FP32`) -> `FP32`; `TYPE_STRING` -> `BYTES`."""
    name = type_name.removeprefix("TYPE_").upper()
    name = "BYTES" if name == "STRING" else name
    if name not in DATATYPES:
        raise InvalidArgument(
            f"unknown datatype {type_name!r}; expected one of {sorted(DATATYPES)}"
        )
    return name


def to_config(datatype: str) -> str:
    """`FP32` -> `TYPE_FP32`; `BYTES` -> `TYPE_STRING`."""
    return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"


def element_size(datatype: str) -> int:
    """Bytes per element of a fixed-size datatype."""
    return NUMPY[datatype].itemsize


def decode_bytes(raw: bytes, *, count: int, name: str) -> npt.NDArray[np.object_]:
    """Split OIP-serialised BYTES (length-prefixed elements) into `count` items."""
    items: list[bytes] = []
    offset = 0
    view = memoryview(raw)
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidArgument(
                f"input {name!r}: BYTES element {len(items)} has a cut-off length"
            )
        (length,) = struct.unpack_from("<I", view, offset)
        offset += 4
        if offset + length > len(raw):
            raise InvalidArgument(
                f"input {name!r}: BYTES element {len(items)} claims {length} bytes but only "
                f"{len(raw) - offset} remain"
            )
        items.append(bytes(view[offset : offset + length]))
        offset += length
    if len(items) != count:
        raise InvalidArgument(
            f"input {name!r}: shape holds {count} BYTES elements but the data holds {len(items)}"
        )
    out = np.empty(count, dtype=np.object_)
    out[:] = items
    return out


def encode_bytes(array: npt.NDArray[np.generic]) -> bytes:
    """OIP-serialise a BYTES tensor (elements may be `bytes` or `str`)."""
    parts: list[bytes] = []
    for item in array.reshape(-1):
        data = item.encode() if isinstance(item, str) else bytes(cast(bytes, item))
        parts.append(struct.pack("<I", len(data)))
        parts.append(data)
    return b"".join(parts)


def texts_array(texts: list[str] | list[bytes]) -> npt.NDArray[np.object_]:
    """Texts as a BYTES batch of shape [n, 1] (what a text pipeline input takes)."""
    out = np.empty((len(texts), 1), dtype=np.object_)
    out[:, 0] = [t.encode() if isinstance(t, str) else t for t in texts]
    return out
