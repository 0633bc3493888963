"""Following a NATS KV bucket of settings: every key's current value, then each change."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable

from nats.js.kv import KeyValue

# (key, value or None when deleted); a coroutine is awaited before the next change.
Apply = Callable[[str, bytes | None], Awaitable[None] | None]


async def follow(
    kv: KeyValue, apply: Apply, *, initial_timeout_s: float = 5.0
) -> asyncio.Task[None]:
    """Apply every current value, then keep applying changes in a task (cancel it to stop).

    Returns once the current values are applied (or `initial_timeout_s` passed),
    so a service that starts serving after this has its settings.
    """
    watcher = await kv.watchall()
    ready = asyncio.Event()

    async def run() -> None:
        async for entry in watcher:
            if entry is None:  # the current values are all in
                ready.set()
                continue
            deleted = entry.operation is not None  # DEL or PURGE
            applied = apply(entry.key, None if deleted else entry.value)
            if inspect.isawaitable(applied):
                await applied

    task = asyncio.get_running_loop().create_task(run())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ready.wait(), timeout=initial_timeout_s)
    return task


async def stop(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
