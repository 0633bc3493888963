"""Sending to a chat platform's API: one POST, retried only when the platform asks to wait.

Telegram, Slack and WhatsApp answer a message through their own send API.
None of them takes an idempotency key, so a request that may have gone
through is never sent again. The one retry is after a 429, at the time the
platform asks for (capped at `MAX_RETRY_AFTER_S`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from edgegate_common.errors import FailedPrecondition, InvalidArgument, Unavailable
from edgegate_common.logging import get_logger
from edgegate_gateway.core import json_input

log = get_logger(__name__)

MAX_RETRY_AFTER_S = 30.0
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30)

Doc = dict[str, Any]


def retry_after_s(asked: object) -> float:
    """The wait a platform asks for (seconds, as a number or header), capped; 1 s if unreadable."""
    try:
        return min(MAX_RETRY_AFTER_S, max(0.0, float(asked or 1)))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 1.0


def _json_object(raw: bytes) -> Doc:
    """The body as a JSON object; {} for anything else (an HTML error page, say)."""
    try:
        return json_input.decode_object(raw, what="the platform's answer")
    except InvalidArgument:
        return {}


class PlatformApi:
    def __init__(self, name: str, *, attempts: int = 3) -> None:
        self._name = name  # for errors and logs: "Telegram sendMessage"
        self._attempts = attempts
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def post(
        self,
        url: str,
        body: Mapping[str, Any],
        *,
        headers: Mapping[str, str] | None = None,
        accepted: Callable[[int, Doc], bool] = lambda status, _: status == 200,
        wait_hint: Callable[[Doc], object] = lambda _: None,
        error: Callable[[Doc], object] = lambda _: "",
        method: str = "POST",
    ) -> None:
        """POST `body`; `accepted` says it went through, `wait_hint` reads a 429's wait from the
        body (else Retry-After), `error` the reason a refusal gives. A refusal (a 4xx other
        than 429, or a 2xx that says no) is FAILED_PRECONDITION: it would be refused again. A
        5xx or no answer is UNAVAILABLE."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        for attempt in range(1, self._attempts + 1):
            try:
                async with self._session.request(
                    method, url, json=body, headers=headers, timeout=REQUEST_TIMEOUT
                ) as answer:
                    status = answer.status
                    retry_after = answer.headers.get("Retry-After")
                    raw = await answer.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise Unavailable(f"{self._name} could not be reached: {exc!r}") from exc
            doc = _json_object(raw)
            if accepted(status, doc):
                return
            refused = f"{self._name} answered {status}: {error(doc)}"
            if status < 500 and status != 429:
                # A 4xx, or a 2xx that says no (Slack's ok:false): it would be refused again.
                raise FailedPrecondition(refused)
            if status != 429 or attempt == self._attempts:
                raise Unavailable(refused)
            wait_s = retry_after_s(wait_hint(doc) or retry_after)
            log.info("platform asks to wait", api=self._name, retry_after_s=wait_s)
            await asyncio.sleep(wait_s)
