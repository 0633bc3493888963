"""An identity provider's keys: its JWKS, fetched over `JwksSource`, cached, refreshed.

Our own keys live in `keys.KeyRing`; tokens an IdP signs verify against the
keys it publishes, which this module keeps fresh without letting callers make
us hammer the IdP.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from edgegate_common.errors import Unavailable
from edgegate_common.logging import get_logger
from edgegate_security.core.keys import VerificationKey, jwks_unavailable, parse_jwks

log = get_logger(__name__)


class JwksSource(Protocol):
    """Where an identity provider's JWKS comes from (`adapters.jwks_client` over HTTP)."""

    @property
    def location(self) -> str:
        """Where the document is fetched from, for log lines and error messages."""
        ...

    async def fetch_jwks(self) -> bytes:
        """The JWKS document; Unavailable (`jwks_unavailable`) when it cannot be had."""
        ...


class RemoteJwks:
    """An identity provider's keys: cached for `ttl_s`, fetched at most every `refetch_interval_s`.

    A token naming an unknown kid (the IdP rotated) triggers one refetch, but
    never more often than `refetch_interval_s`, so tokens with made-up kids
    cannot make us hammer the IdP. Concurrent callers share one fetch. When a
    refresh fails the keys already held stay in use; only when there are none
    is the error Unavailable (`jwks_unavailable`). The document is
    authoritative: keys the IdP stops publishing stop verifying.
    """

    def __init__(
        self,
        source: JwksSource,
        *,
        ttl_s: float = 300.0,
        refetch_interval_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._ttl_s = ttl_s
        self._refetch_interval_s = refetch_interval_s
        self._clock = clock
        self._keys: dict[str, VerificationKey] = {}
        self._loaded_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()

    async def get(self, kid: str) -> VerificationKey | None:
        """The key named `kid`, fetching the JWKS first when it is stale or lacks that kid."""
        await self._fetch_if(self._stale)
        if not self._keys:
            raise jwks_unavailable(f"no keys from {self._source.location} (the last fetch failed)")
        if kid not in self._keys:
            await self._fetch_if(lambda: kid not in self._keys)
        return self._keys.get(kid)

    def held(self, kid: str) -> VerificationKey | None:
        """The key named `kid` if it is held and fresh; never fetches."""
        return None if self._stale() else self._keys.get(kid)

    async def refresh(self) -> None:
        """Fetch now (at start-up, say), whatever the cache holds."""
        async with self._lock:
            await self._fetch()

    def _stale(self) -> bool:
        return self._loaded_at is None or self._clock() - self._loaded_at >= self._ttl_s

    def _may_fetch(self) -> bool:
        last = self._attempted_at
        return last is None or self._clock() - last >= self._refetch_interval_s

    async def _fetch_if(self, wanted: Callable[[], bool]) -> None:
        # A fetch in flight is waited for, then the question is asked again: so
        # concurrent callers share one fetch, and none sees the half-loaded state.
        if not (self._lock.locked() or (wanted() and self._may_fetch())):
            return
        async with self._lock:
            if wanted() and self._may_fetch():
                await self._fetch()

    async def _fetch(self) -> None:
        self._attempted_at = self._clock()
        try:
            keys = parse_jwks(await self._source.fetch_jwks(), source=self._source.location)
        except Unavailable as exc:
            if not self._keys:
                raise
            log.warning("jwks refresh failed, keeping the keys held", error=exc.message)
            return
        self._keys = keys
        self._loaded_at = self._clock()
        log.info("jwks loaded", source=self._source.location, kids=sorted(keys))
