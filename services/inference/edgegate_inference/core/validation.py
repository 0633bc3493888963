"""Check a request's tensors against the model's declared inputs, before it queues.

Every problem is an INVALID_ARGUMENT that names the tensor and what was
expected, so a client can fix its request without reading server logs. A
request that passes cannot fail a batch for reasons of shape or type.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

from edgegate_common.errors import InvalidArgument
from edgegate_inference.core.datatypes import NUMPY
from edgegate_inference.core.spec import TensorSpec
from edgegate_inference.core.types import Array


def check_inputs(
    *,
    model: str,
    declared: Sequence[TensorSpec],
    inputs: Mapping[str, Array],
    datatypes: Mapping[str, str],
    max_batch_size: int,
    pads_variable_dims: bool = False,
) -> tuple[int, Hashable]:
    """Return the request's batch size and its shape-bucket key.

    `datatypes` holds the datatype each input was sent as. With
    `max_batch_size` > 0 the first dimension is the batch and the declared dims
    describe the rest. Requests with equal keys can share a model call; a text
    pipeline pads variable lengths itself (`pads_variable_dims`), so all its
    requests share one key, and its BYTES input must hold text (`check_texts`).
    """
    _check_names(model=model, declared=declared, inputs=inputs, max_batch_size=max_batch_size)
    batch_sizes: set[int] = set()
    key: list[tuple[str, tuple[int, ...]]] = []
    for t in declared:
        array = inputs[t.name]
        _check_datatype(model=model, declared=t, array=array, sent=datatypes.get(t.name, ""))
        size, dims = _check_shape(
            model=model, declared=t, array=array, max_batch_size=max_batch_size
        )
        if size is not None:
            batch_sizes.add(size)
        if -1 in t.dims and not pads_variable_dims:
            key.append((t.name, dims))
        if pads_variable_dims and t.datatype == "BYTES":
            check_texts(model=model, name=t.name, array=array)
    batch = _batch_size(model=model, batch_sizes=batch_sizes, max_batch_size=max_batch_size)
    return batch, tuple(key)


def _check_names(
    *, model: str, declared: Sequence[TensorSpec], inputs: Mapping[str, Array], max_batch_size: int
) -> None:
    """The request sends every declared input and nothing else."""
    expected = {t.name: t for t in declared}
    unknown = sorted(set(inputs) - set(expected))
    if unknown:
        raise InvalidArgument(
            f"model {model!r} has no input {unknown[0]!r}; its inputs are {sorted(expected)}"
        )
    missing = [t for t in declared if t.name not in inputs]
    if missing:
        t = missing[0]
        raise InvalidArgument(
            f"model {model!r}: missing input {t.name!r} ({t.datatype} {_dims(t, max_batch_size)})"
        )


def _check_datatype(*, model: str, declared: TensorSpec, array: Array, sent: str) -> None:
    """The input was sent as the declared datatype, and its data is of that type."""
    if sent != declared.datatype:
        raise InvalidArgument(
            f"model {model!r}: input {declared.name!r} has datatype {sent}, "
            f"expected {declared.datatype}"
        )
    if array.dtype != NUMPY[declared.datatype]:
        raise InvalidArgument(
            f"model {model!r}: input {declared.name!r} is not {declared.datatype} data"
        )


def _check_shape(
    *, model: str, declared: TensorSpec, array: Array, max_batch_size: int
) -> tuple[int | None, tuple[int, ...]]:
    """The input's batch size (None when the model does not batch) and its other dims,
    which must match the declared dims (-1 matches any length)."""
    shape = tuple(int(d) for d in array.shape)
    dims = shape
    batch = None
    if max_batch_size > 0:
        if not shape or shape[0] < 1:
            raise InvalidArgument(
                f"model {model!r}: input {declared.name!r} shape {list(shape)} lacks the batch "
                f"dimension; expected {_dims(declared, max_batch_size)}"
            )
        batch = shape[0]
        dims = shape[1:]
    if len(dims) != len(declared.dims) or any(
        e not in (-1, d) for e, d in zip(declared.dims, dims, strict=True)
    ):
        raise InvalidArgument(
            f"model {model!r}: input {declared.name!r} has shape {list(shape)}, "
            f"expected {_dims(declared, max_batch_size)}"
        )
    return batch, dims


def _batch_size(*, model: str, batch_sizes: set[int], max_batch_size: int) -> int:
    """The one batch size all inputs agree on (1 when the model does not batch)."""
    if len(batch_sizes) > 1:
        raise InvalidArgument(
            f"model {model!r}: inputs disagree on the batch size ({sorted(batch_sizes)})"
        )
    batch = batch_sizes.pop() if batch_sizes else 1
    if max_batch_size > 0 and batch > max_batch_size:
        raise InvalidArgument(
            f"model {model!r}: batch size {batch} exceeds max_batch_size {max_batch_size}"
        )
    return batch


def check_texts(*, model: str, name: str, array: Array) -> None:
    """Each element of a text pipeline's BYTES input is non-empty UTF-8 text without NUL.

    Anything else would be tokenised into something the client never wrote
    (replacement characters, or nothing at all) and answered as if it were
    text, so it is refused, as Triton refuses BYTES it cannot decode.
    """
    for index, element in enumerate(array.reshape(-1)):
        item: object = element
        if isinstance(item, bytes):
            try:
                item = item.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidArgument(
                    f"model {model!r}: input {name!r} element {index} is not UTF-8 text "
                    f"(invalid byte at offset {exc.start})"
                ) from None
        if not isinstance(item, str) or not item:
            raise InvalidArgument(f"model {model!r}: input {name!r} element {index} is empty")
        if "\x00" in item:
            raise InvalidArgument(
                f"model {model!r}: input {name!r} element {index} holds a NUL character; "
                "text inputs take text"
            )


def check_outputs(*, model: str, declared: Sequence[TensorSpec], requested: Sequence[str]) -> None:
    names = {t.name for t in declared}
    for name in requested:
        if name not in names:
            raise InvalidArgument(
                f"model {model!r} has no output {name!r}; its outputs are {sorted(names)}"
            )


def _dims(t: TensorSpec, max_batch_size: int) -> list[int]:
    return [-1, *t.dims] if max_batch_size > 0 else list(t.dims)
