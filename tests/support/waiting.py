"""Waiting on a condition with a deadline, instead of sleeping for a guessed time.

A fixed sleep is too short on a loaded machine and too long everywhere else; these
poll what the test is actually waiting for and fail with `what` when it never comes.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[T | None] | T | None],
    *,
    timeout_s: float = 20.0,
    interval_s: float = 0.05,
    what: str = "",
) -> T:
    """Poll `check` (plain or async) until it returns something truthy; return that.

    A check can hand back what it found (a record, a list of lines) or None for "not yet".
    """
    give_up_at = time.monotonic() + timeout_s
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        if time.monotonic() > give_up_at:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what or check}")
        await asyncio.sleep(interval_s)


def wait_until(
    check: Callable[[], Any], *, timeout_s: float, what: str, interval_s: float = 0.1
) -> Any:
    """Poll `check()` from synchronous code until it returns something truthy; return that."""
    give_up_at = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > give_up_at:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(interval_s)
