"""The gateway's HTTP server: aiohttp, with refusals of malformed HTTP in the API's shape.

A request aiohttp's parser cannot take (a header over 8190 bytes, a broken
request line) never reaches the app's middlewares: aiohttp answers it
itself, in plain text that quotes the first hundred bytes of the offending
line, and logs that line with a traceback. For a 9 KB bearer token that puts
the token's start in the response and in the log. `GatewayRunner` answers
these as every other refusal is answered, `{"error": {...}}`, naming the
limit and never the bytes, and logs one line without them.
"""

from __future__ import annotations

from http import HTTPStatus

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from edgegate_common.logging import get_logger
from edgegate_gateway.adapters.http_json import error_response

log = get_logger(__name__)

MAX_FIELD_BYTES = 8190  # aiohttp's limit on one header line, kept


class GatewayRunner(web.AppRunner):
    """`web.AppRunner` whose connections refuse unparsable requests quietly."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server  # the same server; only its protocol factory differs
        return server


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _Handler(self, loop=self._loop, **self._kwargs)


class _Handler(RequestHandler):
    __slots__ = ()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            return super().handle_error(request, status, exc, message)
        if isinstance(exc, LineTooLong):
            status = HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE
            text = f"a request line or header is longer than {MAX_FIELD_BYTES} bytes"
        else:
            text = "the request is not valid HTTP/1.1"
        if not isinstance(exc, BadHttpMethod):  # port scans and TLS to a plain port: noise
            log.info("malformed http request refused", status=int(status), error=type(exc).__name__)
        if request.writer.output_size > 0:
            raise ConnectionError("a response was sent already; the connection is closed")
        response = error_response(status, "invalid_request_error", text, None)
        response.headers["Connection"] = "close"
        response.force_close()
        return response
