"""Upstream HTTP over one pooled aiohttp session per process (aiohttp over httpx: measured,
see docs/protocols.md). Maps transport failures to the domain's UpstreamConnectError /
UpstreamTimeout / UpstreamDisconnected and records one CLIENT span per upstream call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDictProxy
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from crossmodel_router.domain.upstream import (
    UpstreamConnectError,
    UpstreamDisconnected,
    UpstreamTimeout,
)

_tracer = trace.get_tracer("crossmodel.router.upstream")


class _Headers(Mapping[str, str]):
    """aiohttp's case-insensitive headers behind the domain's Mapping (names lower-case)."""

    __slots__ = ("_h",)

    def __init__(self, h: CIMultiDictProxy[str]) -> None:
        self._h = h

    def __getitem__(self, key: str) -> str:
        return self._h[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._h.get(key, default)

    def __iter__(self) -> Any:
        return (k.lower() for k in self._h)

    def __len__(self) -> int:
        return len(self._h)


class HttpResponse:
    __slots__ = ("_resp", "_span", "headers", "status")

    def __init__(self, resp: aiohttp.ClientResponse, span: Any) -> None:
        self._resp = resp
        self._span = span
        self.status = resp.status
        self.headers: Mapping[str, str] = _Headers(resp.headers)

    async def read(self) -> bytes:
        try:
            return await self._resp.read()
        except (TimeoutError, aiohttp.ServerTimeoutError) as e:
            raise UpstreamTimeout(str(e) or "read timeout") from None
        except aiohttp.ClientError as e:
            raise UpstreamDisconnected(str(e) or type(e).__name__) from None

    async def chunks(self) -> AsyncIterator[bytes]:
        content = self._resp.content
        try:
            while True:
                data = await content.readany()
                if not data:
                    return
                yield data
        except (TimeoutError, aiohttp.ServerTimeoutError) as e:
            raise UpstreamTimeout(str(e) or "read timeout") from None
        except aiohttp.ClientError as e:
            # aiohttp raises the break before handing out bytes that arrived ahead of it; they
            # were sent to us (and generated, and billed), so deliver them first.
            rest = _buffered(content)
            if rest:
                yield rest
            raise UpstreamDisconnected(str(e) or type(e).__name__) from None

    def close(self) -> None:
        resp = self._resp
        if resp.content.at_eof():
            resp.release()
        else:
            # Unread body: drop the connection, which is what stops the upstream generating.
            resp.close()
        if self._span is not None:
            self._span.end()
            self._span = None


class HttpUpstream:
    """The one upstream client of the process."""

    def __init__(self, *, max_connections: int, connect_timeout: float, read_timeout: float) -> None:
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            limit_per_host=0,
            ttl_dns_cache=300,
            keepalive_timeout=60,
            enable_cleanup_closed=True,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            # Bodies are already JSON bytes; no cookies across tenants' requests.
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
            headers={"user-agent": "crossmodel-router"},
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(
        self, url: str, headers: Mapping[str, str], body: bytes, *, timeout: float
    ) -> HttpResponse:
        session = self._session
        if session is None:
            raise RuntimeError("HttpUpstream.start() was not called")
        parts = urlsplit(url)
        span = _tracer.start_span(
            "POST",
            kind=SpanKind.CLIENT,
            attributes={
                "http.request.method": "POST",
                "server.address": parts.hostname or "",
                "url.path": parts.path,
            },
        )
        client_timeout = aiohttp.ClientTimeout(
            total=timeout, sock_connect=self._connect_timeout, sock_read=self._read_timeout
        )
        try:
            resp = await session.request(
                "POST", url, data=body, headers=dict(headers), timeout=client_timeout, allow_redirects=False
            )
        except (TimeoutError, aiohttp.ServerTimeoutError) as e:
            _fail(span, "timeout")
            if isinstance(e, aiohttp.ConnectionTimeoutError):
                raise UpstreamConnectError(f"connect timeout to {parts.hostname}") from None
            raise UpstreamTimeout(str(e) or "timeout") from None
        except aiohttp.ClientConnectorError as e:
            _fail(span, "connect")
            raise UpstreamConnectError(f"{parts.hostname}:{parts.port}: {e.os_error}") from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError) as e:
            # Nothing of the response arrived: as good as never connected, so retryable.
            _fail(span, "disconnected")
            raise UpstreamConnectError(str(e) or type(e).__name__) from None
        except asyncio.CancelledError:
            _fail(span, "cancelled")
            raise
        span.set_attribute("http.response.status_code", resp.status)
        if resp.status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        return HttpResponse(resp, span)


def _buffered(content: aiohttp.StreamReader) -> bytes:
    try:
        return content._read_nowait(-1)
    except Exception:  # noqa: BLE001 - a private helper; without it only the tail is lost
        return b""


def _fail(span: Any, reason: str) -> None:
    span.set_status(Status(StatusCode.ERROR, reason))
    span.end()
