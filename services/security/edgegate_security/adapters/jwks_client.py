"""Fetching an identity provider's JWKS over HTTP(S), with the standard library.

The caching, the refetch rate limit and the parsing are `core.jwks.RemoteJwks`;
this module only moves bytes. `urllib.request` runs in a worker thread, so the
event loop never blocks on the IdP. Only `https://` URLs are fetched unless
`allow_http` says otherwise (in-cluster IdPs, tests): a JWKS read over plain
HTTP lets anyone on the path mint tokens. Redirects are not followed, for the
same reason, and the body is capped so a misbehaving IdP cannot exhaust memory.
"""

from __future__ import annotations

import asyncio
import http.client
import ssl
import urllib.error
import urllib.parse
import urllib.request

from edgegate_common.errors import InvalidArgument
from edgegate_security.core.keys import jwks_unavailable

DEFAULT_MAX_JWKS_BYTES = 1024 * 1024


class HttpJwksClient:
    """A `core.jwks.JwksSource` that GETs one URL."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        max_bytes: int = DEFAULT_MAX_JWKS_BYTES,
        allow_http: bool = False,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        schemes = {"https", "http"} if allow_http else {"https"}
        if parts.scheme not in schemes or not parts.hostname:
            raise InvalidArgument(
                f"the JWKS URL must be {' or '.join(sorted(schemes))}://host/...: {url!r}",
                details={"field": "jwks_url"},
            )
        self._url = url
        self._timeout_s = timeout_s
        self._max_bytes = max_bytes
        # Only HTTP(S), no redirects: not urllib's default opener, which also
        # speaks file:// and ftp:// and follows redirects to them.
        self._opener = urllib.request.OpenerDirector()
        for handler in (
            urllib.request.ProxyHandler(),
            urllib.request.HTTPHandler(),
            urllib.request.HTTPSHandler(context=ssl.create_default_context()),
            urllib.request.HTTPDefaultErrorHandler(),
            urllib.request.HTTPErrorProcessor(),
        ):
            self._opener.add_handler(handler)

    @property
    def location(self) -> str:
        return self._url

    async def fetch_jwks(self) -> bytes:
        """The document's bytes; Unavailable (`jwks_unavailable`) on any failure."""
        return await asyncio.to_thread(self._fetch)

    def _fetch(self) -> bytes:
        request = urllib.request.Request(  # noqa: S310 - the scheme was checked in __init__
            self._url, headers={"Accept": "application/jwk-set+json, application/json"}
        )
        try:
            with self._opener.open(request, timeout=self._timeout_s) as response:
                body: bytes = response.read(self._max_bytes + 1)
        except (OSError, http.client.HTTPException) as exc:  # URLError and HTTPError are OSErrors
            if isinstance(exc, urllib.error.HTTPError):
                exc.close()  # it holds the response, and with it the connection
            raise jwks_unavailable(f"the JWKS at {self._url} cannot be fetched: {exc}") from exc
        if len(body) > self._max_bytes:
            limit = self._max_bytes
            raise jwks_unavailable(f"the JWKS at {self._url} is larger than {limit} bytes")
        return body
