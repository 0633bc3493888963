"""Weighted version routing: which version of a model gets a request.

The operator writes one document per model into the NATS KV bucket
`edgegate-routes` while it rolls out a canary:

    {"weights": {"1": 90, "2": 10}, "shadow": {"version": "2", "percent": 10}}

A request that names no version goes to one of the weighted versions that
some replica serves now, in proportion to the weights. A version with weight
0 gets nothing. When no weighted version is served, or there is no document,
the request goes to the highest version served.

The optional `shadow` asks for a copy of `percent`% of the weighted requests
that went to another version to be sent to `version` as well, so that its
answers can be compared with the ones the callers got (see `shadow.py`).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypeGuard

from edgegate_common.errors import InvalidArgument
from edgegate_gateway.core import json_input


@dataclass(frozen=True, slots=True)
class Shadow:
    version: str
    percent: float  # of the weighted requests that went to another version, 0-100

    @classmethod
    def from_doc(cls, doc: object) -> Shadow:
        """The `shadow` of a route document; ValueError says what is wrong with it."""
        if not isinstance(doc, dict) or set(doc) - {"version", "percent"}:
            raise ValueError('a route\'s "shadow" must be {"version": "<v>", "percent": <0-100>}')
        version, percent = doc.get("version"), doc.get("percent")
        if not isinstance(version, str) or not version:
            raise ValueError('the shadow\'s "version" must be a non-empty string')
        if not _number(percent) or not 0 <= percent <= 100:
            raise ValueError('the shadow\'s "percent" must be a number from 0 to 100')
        return cls(version=version, percent=float(percent))

    def sampled(self, *, rng: random.Random | None = None) -> bool:
        """Whether this request is one of the `percent`% copied."""
        return (rng or random).random() * 100 < self.percent


@dataclass(frozen=True, slots=True)
class Weights:
    by_version: Mapping[str, float]
    shadow: Shadow | None = None

    @classmethod
    def from_json(cls, raw: bytes) -> Weights:
        """Parse a route document; ValueError says what is wrong with it."""
        try:
            doc = json_input.decode_object(raw, what="a route")
        except InvalidArgument as exc:
            raise ValueError(exc.message) from None
        weights = doc.get("weights")
        if not isinstance(weights, dict) or not weights:
            raise ValueError('a route needs "weights": {"<version>": <weight>, ...}')
        for version, weight in weights.items():
            if not _number(weight) or weight < 0:
                raise ValueError(f"the weight of version {version!r} must be a number >= 0")
        shadow = doc.get("shadow")
        return cls(
            by_version={str(v): float(w) for v, w in weights.items()},
            shadow=None if shadow is None else Shadow.from_doc(shadow),
        )

    def choose(self, served: Iterable[str], *, rng: random.Random | None = None) -> str | None:
        """A served version by weight, or None when no weighted version is served."""
        candidates = [(v, w) for v, w in self.by_version.items() if w > 0 and v in set(served)]
        if not candidates:
            return None
        total = sum(w for _, w in candidates)
        point = (rng or random).uniform(0, total)
        for version, weight in candidates:
            point -= weight
            if point <= 0:
                return version
        return candidates[-1][0]


def _number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)
