"""The outermost layer of every HTTP request: a fresh x-request-id (bound for logs, spans and
gRPC metadata, and sent on every response), the SERVER span, one access-log line, and a
protocol-shaped 500 for anything unhandled.

A plain ASGI middleware rather than Starlette's BaseHTTPMiddleware or the FastAPI
instrumentation: it costs one closure per message and does not buffer streams.

The inference endpoints (`direct`: POST routes whose handlers take only the request and
raise nothing FastAPI would translate) are called from here, past the exception middleware,
the exit stack and the routers, which cost more per request than the handlers' own work.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crossmodel_common.context import REQUEST_ID_HEADER, bind_request_id, reset_request_id
from crossmodel_common.ids import new_request_id
from crossmodel_common.logging import get_logger
from crossmodel_protocols.canonical import Protocol
from crossmodel_protocols.errors import ApiError, ErrorType, render_http

log = get_logger("crossmodel_edge.access")
_tracer = trace.get_tracer("crossmodel.edge")
_RID = REQUEST_ID_HEADER.encode()


def protocol_for_path(path: str) -> Protocol:
    """The error dialect of an endpoint."""
    if path.startswith("/v1/messages"):
        return Protocol.ANTHROPIC_MESSAGES
    if path.startswith("/v1/responses"):
        return Protocol.OPENAI_RESPONSES
    return Protocol.OPENAI_CHAT


@dataclass(slots=True)
class RequestInfo:
    """What handlers learn that the access log and the span report."""

    request_id: str
    model: str = ""
    key_id: str = ""
    account_id: str = ""
    stream: bool | None = None
    error_type: str = ""


def request_info(scope: Scope) -> RequestInfo:
    info: RequestInfo = scope["state"]["crossmodel"]
    return info


class DirectRoute:
    """A POST route the middleware calls itself; `route` is what the span and logs name."""

    __slots__ = ("endpoint", "route")

    def __init__(self, endpoint: Callable[[Request], Awaitable[Response]], route: Any) -> None:
        self.endpoint = endpoint
        self.route = route


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, direct: Mapping[str, DirectRoute] | None = None) -> None:
        self.app = app
        self.direct: Mapping[str, DirectRoute] = direct if direct is not None else {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = new_request_id()
        token = bind_request_id(rid)
        info = RequestInfo(rid)
        scope.setdefault("state", {})["crossmodel"] = info
        method: str = scope["method"]
        path: str = scope["path"]
        parent = None
        for name, value in scope["headers"]:
            if name == b"traceparent":
                parent = propagate.extract({"traceparent": value.decode("latin-1")})
                break
        span = _tracer.start_span(
            method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": path},
        )
        rid_header = (_RID, rid.encode())
        # Anthropic's SDKs read the request id from `request-id`.
        extra = (
            [rid_header, (b"request-id", rid_header[1])] if path.startswith("/v1/messages") else [rid_header]
        )
        status = 0
        sent = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *extra]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            with trace.use_span(span, end_on_exit=False):
                try:
                    direct = (
                        self.direct.get(path) if method == "POST" and not scope.get("root_path") else None
                    )
                    if direct is None:
                        await self.app(scope, receive, send_with_id)
                    else:
                        scope["route"] = direct.route
                        response = await direct.endpoint(Request(scope, receive))
                        await response(scope, receive, send_with_id)
                except Exception as exc:
                    span.record_exception(exc)
                    log.exception("unhandled error", path=path)
                    if status == 0:
                        status = 500
                        err = render_http(
                            ApiError(ErrorType.INTERNAL, "The server had an error processing your request."),
                            protocol_for_path(path),
                        )
                        headers = [(k.encode(), v.encode()) for k, v in err.headers]
                        await send(
                            {"type": "http.response.start", "status": 500, "headers": [*headers, *extra]}
                        )
                        await send({"type": "http.response.body", "body": err.body})
                finally:
                    # Inside the span, so the access line carries its trace id.
                    self._finish(scope, span, info, method, path, status, sent, started)
        finally:
            reset_request_id(token)

    @staticmethod
    def _finish(
        scope: Scope,
        span: Any,
        info: RequestInfo,
        method: str,
        path: str,
        status: int,
        sent: int,
        started: float,
    ) -> None:
        latency_ms = (time.perf_counter() - started) * 1000
        route = scope.get("route")
        template = getattr(route, "path", None)
        if template:
            span.update_name(f"{method} {template}")
            span.set_attribute("http.route", template)
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        log.info(
            "request",
            method=method,
            path=path,
            status=status,
            latency_ms=round(latency_ms, 2),
            bytes=sent,
            model=info.model or None,
            key_id=info.key_id or None,
            account_id=info.account_id or None,
            stream=info.stream,
            error_type=info.error_type or None,
        )
        span.end()
