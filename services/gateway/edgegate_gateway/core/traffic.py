"""Per-tenant counts of what the rate limiter admitted and refused, since this process began.

The rate limiter counts; `adapters/traffic.py` publishes the counts for the
console, which adds up every replica's. Cumulative counters (never reset)
make a lost or repeated snapshot harmless: readers take differences.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass


@dataclass(slots=True)
class TenantCounts:
    admitted: int = 0
    throttled: int = 0


class TrafficCounts:
    """Admitted and throttled requests per tenant (plain counters, no I/O)."""

    def __init__(self) -> None:
        self._tenants: defaultdict[str, TenantCounts] = defaultdict(TenantCounts)

    def admitted(self, tenant: str) -> None:
        self._tenants[tenant].admitted += 1

    def throttled(self, tenant: str) -> None:
        self._tenants[tenant].throttled += 1

    def snapshot(self) -> dict[str, TenantCounts]:
        return {t: TenantCounts(c.admitted, c.throttled) for t, c in self._tenants.items()}
