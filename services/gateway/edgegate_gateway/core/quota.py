"""Tenant quotas and the token-bucket arithmetic behind them.

A quota (written by the operator from a `TenantQuota`, as JSON in the NATS KV
bucket `edgegate-quotas` under the tenant's name) gives a request rate and a
burst for the whole tenant, and optionally the same per API key:

    {"rate_per_s": 50, "burst": 100, "key_rate_per_s": 5, "key_burst": 10}

A bucket holds up to `burst` tokens and gains `rate_per_s` tokens a second;
each request takes one. The state is a token count at a time, so any replica
can bring it up to date from the time it was written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgegate_common.errors import InvalidArgument
from edgegate_gateway.core import json_input


@dataclass(frozen=True, slots=True)
class Limit:
    rate_per_s: float
    burst: float


@dataclass(frozen=True, slots=True)
class Quota:
    tenant: Limit
    per_key: Limit | None = None

    @classmethod
    def from_json(cls, raw: bytes) -> Quota:
        """Parse a quota document; ValueError says what is wrong with it."""
        try:
            doc = json_input.decode_object(raw, what="a quota")
        except InvalidArgument as exc:
            raise ValueError(exc.message) from None
        tenant = _limit(doc, "rate_per_s", "burst")
        if tenant is None:
            raise ValueError("a quota needs rate_per_s")
        return cls(tenant=tenant, per_key=_limit(doc, "key_rate_per_s", "key_burst"))


def _limit(doc: dict[str, object], rate_name: str, burst_name: str) -> Limit | None:
    rate = doc.get(rate_name)
    if rate is None:
        return None
    if not isinstance(rate, int | float) or isinstance(rate, bool) or not rate > 0:
        raise ValueError(f"{rate_name} must be a positive number")
    burst = doc.get(burst_name, max(1.0, rate))
    if not isinstance(burst, int | float) or isinstance(burst, bool) or burst < 1:
        raise ValueError(f"{burst_name} must be a number of at least 1")
    return Limit(rate_per_s=float(rate), burst=float(burst))


@dataclass(frozen=True, slots=True)
class Bucket:
    tokens: float
    at_s: float

    @classmethod
    def full(cls, limit: Limit, now_s: float) -> Bucket:
        return cls(tokens=limit.burst, at_s=now_s)

    def refilled(self, limit: Limit, now_s: float) -> Bucket:
        elapsed = max(0.0, now_s - self.at_s)
        return Bucket(tokens=min(limit.burst, self.tokens + elapsed * limit.rate_per_s), at_s=now_s)

    def take(self, limit: Limit, now_s: float, *, up_to: int) -> tuple[int, Bucket]:
        """Take up to `up_to` whole tokens: how many were granted, and the bucket after."""
        current = self.refilled(limit, now_s)
        granted = min(up_to, math.floor(current.tokens))
        return granted, Bucket(tokens=current.tokens - granted, at_s=now_s)

    def wait_s(self, limit: Limit, now_s: float) -> float:
        """How long until one whole token is there."""
        missing = 1.0 - self.refilled(limit, now_s).tokens
        return max(0.0, missing / limit.rate_per_s)
