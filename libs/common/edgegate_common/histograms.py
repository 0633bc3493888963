"""Quantiles of bucketed latency histograms, as inference replicas publish them.

A snapshot's `latency_counts` has one count per bucket of `latency_bounds_s`
and one more above the last bound. The operator judges a canary's p99 with
this, and the console draws p50/p99 with it: one reading of the same figures.
"""

from __future__ import annotations

from collections.abc import Sequence


def histogram_quantile(
    q: float, bounds_s: Sequence[float], counts: Sequence[int]
) -> tuple[float, bool] | None:
    """The q-quantile, interpolated inside its bucket as Prometheus does.

    Returns (value, above): `above` is True when the quantile lies past the
    largest bound, where the value is that bound (all that can be said).
    None when the histogram is empty.
    """
    total = sum(counts)
    if total == 0 or not bounds_s:
        return None
    rank = q * total
    below = 0
    for index, count in enumerate(counts):
        if below + count >= rank and count > 0:
            if index >= len(bounds_s):
                return bounds_s[-1], True
            upper = bounds_s[index]
            lower = 0.0 if index == 0 else bounds_s[index - 1]
            if index == 0 and upper <= 0:
                return upper, False
            return lower + (upper - lower) * (rank - below) / count, False
        below += count
    return bounds_s[-1], True
