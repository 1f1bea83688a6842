"""The port through which the domain calls upstream providers; adapters/http.py implements it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Protocol


class UpstreamFailure(Exception):
    """The upstream call failed without an HTTP status to show for it."""


class UpstreamConnectError(UpstreamFailure):
    """No connection, or it broke before the response headers: nothing was generated."""


class UpstreamTimeout(UpstreamFailure):
    """The upstream stayed silent longer than the read timeout, or the deadline passed."""


class UpstreamDisconnected(UpstreamFailure):
    """The connection broke in the middle of the response body."""


class UpstreamResponse(Protocol):
    status: int
    headers: Mapping[str, str]  # lower-case names

    async def read(self) -> bytes: ...

    def chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive."""
        ...

    def close(self) -> None:
        """Release the connection; a response not read to the end aborts it (that is how a
        cancelled request stops the upstream generation)."""
        ...


class Upstream(Protocol):
    async def post(
        self, url: str, headers: Mapping[str, str], body: bytes, *, timeout: float
    ) -> UpstreamResponse:
        """Send and wait for the response headers. `timeout` bounds the whole call (the body
        too); silence longer than the client's read timeout raises UpstreamTimeout."""
        ...
