"""Shared by the security tests: a clock the test moves, and the token policy's names."""

from __future__ import annotations

NOW_S = 1_800_000_000.0
ISSUER = "https://edgegate.test"
AUDIENCE = "edgegate"


class FakeClock:
    """Epoch seconds that stand still until a test sets `now_s`."""

    def __init__(self, now_s: float = NOW_S) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s
