"""JSON merge patches (RFC 7386): the smallest patch that turns one document into another."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any


def merge_patch(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    *,
    same: Callable[[Any, Any], bool] = operator.eq,
) -> dict[str, Any]:
    """The merge patch from `old` to `new`: changed keys, None for removed ones, {} if equal.

    `same` compares leaves (lists included, which a merge patch replaces whole); a
    caller can make `"1000m"` the same as `"1"`.
    """
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            inner = merge_patch(before, value, same=same)
            if inner:
                patch[key] = inner
        elif value is None:
            if before is not None:
                patch[key] = None
        elif key not in old or not same(before, value):
            patch[key] = value
    return patch
