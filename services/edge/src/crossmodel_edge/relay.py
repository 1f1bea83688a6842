"""The inference hot path, the same for every protocol: read the body once, one Authorize,
one Route, relay the router's chunks as they come, then (off the response) one usage event
and a Settle.

Per request the edge does no more than: read the body (bytes, kept as they are), one orjson
parse for model/stream/max tokens, a dictionary lookup in the cached catalog, the two calls,
and a write per chunk. It never re-parses a chunk.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import cast

import grpc
from opentelemetry import trace
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from crossmodel.auth.v1 import auth_pb2
from crossmodel.router.v1 import router_pb2
from crossmodel_common.logging import get_logger
from crossmodel_edge.adapters.backends import Backends, rpc_failure
from crossmodel_edge.adapters.catalog import CatalogCache
from crossmodel_edge.adapters.events import Background, UsagePublisher
from crossmodel_edge.domain import idempotency, ratelimit
from crossmodel_edge.domain.admission import admission_for
from crossmodel_edge.domain.exchange import Exchange, usage_event
from crossmodel_edge.domain.failures import INVALID_KEY, MISSING_KEY, model_not_found, refusal, route_failure
from crossmodel_edge.domain.request import BodyError, read_facts
from crossmodel_edge.domain.streams import stream_failure
from crossmodel_edge.middleware import RequestInfo, request_info
from crossmodel_protocols.canonical import Protocol
from crossmodel_protocols.errors import ApiError, ErrorType, render_http, status_for

log = get_logger(__name__)

ROUTER_PROTOCOL = {
    Protocol.OPENAI_CHAT: router_pb2.PROTOCOL_OPENAI_CHAT,
    Protocol.OPENAI_RESPONSES: router_pb2.PROTOCOL_OPENAI_RESPONSES,
    Protocol.ANTHROPIC_MESSAGES: router_pb2.PROTOCOL_ANTHROPIC_MESSAGES,
}
# Client headers the protocols define and the router needs (Anthropic's version and betas).
_FORWARDED = frozenset({b"anthropic-version", b"anthropic-beta"})
# Never copied from a Head frame: framing is the edge's business.
_HOP_BY_HOP = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive", "content-type"})
# nginx's "client closed request", recorded for requests the client abandoned.
CLIENT_CLOSED_STATUS = 499
_SSE_HEADERS = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


class RouteFailed(Exception):
    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


def credentials(scope: Scope) -> tuple[str | None, dict[str, str]]:
    """The presented API key (`x-api-key` wins over `Authorization: Bearer`), and the protocol
    headers to forward to the router."""
    bearer: str | None = None
    api_key: str | None = None
    forwarded: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                bearer = token.strip()
        elif name == b"x-api-key":
            api_key = value.decode("latin-1").strip()
        elif name in _FORWARDED:
            forwarded[name.decode()] = value.decode("latin-1")
    return (api_key or bearer or None), forwarded


def plausible_key(key: str) -> bool:
    """Keys are `cm-` + random characters; anything else is refused without asking auth."""
    return key.startswith("cm-") and 16 <= len(key) <= 256


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    for name, value in scope["headers"]:
        if name == b"content-length":
            if value.isdigit() and int(value) > limit:
                raise BodyTooLarge
            break
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if len(chunks) == 1:
        return chunks[0]
    return b"".join(chunks)


class RawResponse(Response):
    """A complete response whose headers are given as a list (repeats allowed), with a hook
    run once it was sent (or the client left): the usage event goes out after the answer."""

    def __init__(
        self,
        body: bytes,
        status: int,
        headers: Iterable[tuple[str, str]],
        on_done: Callable[[], None] | None = None,
    ) -> None:
        self.body = body
        self.status_code = status
        self.background = None
        self._on_done = on_done
        self.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        self.raw_headers.append((b"content-length", str(len(body)).encode()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            await send({"type": "http.response.body", "body": self.body})
        finally:
            if self._on_done is not None:
                self._on_done()


def error_response(
    error: ApiError,
    protocol: Protocol,
    info: RequestInfo,
    extra: Iterable[tuple[str, str]] = (),
    on_done: Callable[[], None] | None = None,
) -> RawResponse:
    info.error_type = error.type.value
    # The middleware adds x-request-id (and request-id on Anthropic paths) to every response.
    r = render_http(error, protocol)
    return RawResponse(r.body, r.status, [*r.headers, *extra], on_done)


class DisconnectWatch:
    """Cancels the Route call as soon as the client goes away, also while nothing is being
    written (an upstream still thinking), which a failed write alone would not notice."""

    __slots__ = ("_task",)

    def __init__(self, receive: Receive, call: grpc.aio.Call, x: Exchange, *, enabled: bool = True) -> None:
        # Disabled for non-streamed requests with an Idempotency-Key: they run to the end and
        # store their result, which the client's retry then gets (docs/money.md).
        self._task = asyncio.create_task(self._run(receive, call, x)) if enabled else None

    @staticmethod
    async def _run(receive: Receive, call: grpc.aio.Call, x: Exchange) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                x.client_gone = True
                call.cancel()
                return

    def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()


class Relay:
    def __init__(
        self,
        *,
        backends: Backends,
        catalog: CatalogCache,
        publisher: UsagePublisher,
        background: Background,
        max_body_bytes: int,
        auth_timeout: float,
        route_timeout: float,
    ) -> None:
        self.backends = backends
        self.catalog = catalog
        self.publisher = publisher
        self.background = background
        self.max_body_bytes = max_body_bytes
        self.auth_timeout = auth_timeout
        self.route_timeout = route_timeout
        # Admitted requests whose usage event is not published yet (shutdown waits for them).
        self.active = 0
        self.idle = asyncio.Event()
        self.idle.set()
        # Calls whose answer was complete before their status arrived: held until they end,
        # since grpc.aio cancels a call that is garbage-collected unfinished.
        self._finishing: set[grpc.aio.Call] = set()

    # -- before admission -----------------------------------------------------------------

    async def check_key(self, api_key: str) -> auth_pb2.IntrospectKeyResponse | ApiError:
        """Key check without admission side effects (used off the hot path and for requests
        that fail before admission, so a bad key is reported before a bad body)."""
        if not plausible_key(api_key):
            return INVALID_KEY
        try:
            resp = await self.backends.auth.IntrospectKey(
                auth_pb2.IntrospectKeyRequest(api_key=api_key), timeout=self.auth_timeout
            )
        except grpc.aio.AioRpcError as exc:
            return rpc_failure(exc, "auth")
        if resp.decision != auth_pb2.DECISION_ALLOWED:
            return refusal(resp.decision, resp.message)
        return resp

    async def _refuse_after_key_check(
        self, api_key: str, error: ApiError, protocol: Protocol, info: RequestInfo
    ) -> Response:
        checked = await self.check_key(api_key)
        if isinstance(checked, ApiError):
            return error_response(checked, protocol, info)
        info.key_id = checked.key.id
        info.account_id = checked.key.account_id
        return error_response(error, protocol, info)

    async def handle(self, request: Request, protocol: Protocol) -> Response:
        scope = request.scope
        info = request_info(scope)
        api_key, forwarded = credentials(scope)
        if not api_key:
            return error_response(MISSING_KEY, protocol, info)
        try:
            body = await read_body(scope, request.receive, self.max_body_bytes)
        except BodyTooLarge:
            err = ApiError(
                ErrorType.REQUEST_TOO_LARGE,
                f"The request body exceeds the limit of {self.max_body_bytes} bytes.",
            )
            return error_response(err, protocol, info, [("connection", "close")])
        except ClientGone:
            return RawResponse(b"", CLIENT_CLOSED_STATUS, [])
        if not plausible_key(api_key):
            return error_response(INVALID_KEY, protocol, info)
        try:
            facts = read_facts(body, protocol)
            idem = idempotency.idempotency_of(scope["headers"], protocol, body)
        except BodyError as exc:
            invalid = ApiError(ErrorType.INVALID_REQUEST, exc.message, exc.param, exc.code)
            return await self._refuse_after_key_check(api_key, invalid, protocol, info)
        info.model = facts.model
        info.stream = facts.stream
        model = await self.catalog.lookup(facts.model)
        if model is None:
            if not self.catalog.loaded:
                unavailable = ApiError(
                    ErrorType.UNAVAILABLE,
                    "The model catalog is not available yet. Please retry.",
                    retry_after_ms=1000,
                )
                return error_response(unavailable, protocol, info)
            return await self._refuse_after_key_check(api_key, model_not_found(facts.model), protocol, info)

        admission = admission_for(body, facts.max_output_tokens, model, facts.choices)
        span = trace.get_current_span()
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.request.model", model.id)
        span.set_attribute("gen_ai.request.max_tokens", admission.max_output_tokens)
        span.set_attribute("crossmodel.stream", facts.stream)
        started_unix_ms = time.time_ns() // 1_000_000
        started_mono_ms = time.perf_counter() * 1000
        try:
            auth = await self.backends.auth.Authorize(
                auth_pb2.AuthorizeRequest(
                    request_id=info.request_id,
                    api_key=api_key,
                    model=model.id,
                    estimated_input_tokens=admission.estimated_input_tokens,
                    max_output_tokens=admission.max_output_tokens,
                    reserve_micros=admission.reserve_micros,
                    idempotency_key=idem.key if idem is not None else "",
                    body_sha256=idem.body_sha256 if idem is not None else b"",
                ),
                timeout=self.auth_timeout,
            )
        except grpc.aio.AioRpcError as exc:
            return error_response(rpc_failure(exc, "auth"), protocol, info)
        limits = self._ratelimit_headers(auth.rate_limit, protocol) if auth.HasField("rate_limit") else []
        if auth.account_id:
            info.account_id = auth.account_id
            info.key_id = auth.key_id
        if auth.decision != auth_pb2.DECISION_ALLOWED:
            if idem is not None and auth.decision in idempotency.DECISIONS:
                answer = idempotency.answer(auth)
                if isinstance(answer, idempotency.Replay):
                    return RawResponse(answer.body, answer.status, answer.headers)
                return error_response(answer[0], protocol, info, answer[1])
            return error_response(
                refusal(auth.decision, auth.message, auth.retry_after_ms), protocol, info, limits
            )
        span.set_attribute("crossmodel.account_id", auth.account_id)
        span.set_attribute("crossmodel.key_id", auth.key_id)

        x = Exchange(
            request_id=info.request_id,
            protocol=protocol,
            model=model,
            stream=facts.stream,
            body_size=len(body),
            admission=admission,
            account_id=auth.account_id,
            key_id=auth.key_id,
            key_name=auth.key_name,
            reserved_micros=auth.reserved_micros,
            reserved_tokens=auth.reserved_tokens,
            started_unix_ms=started_unix_ms,
            started_mono_ms=started_mono_ms,
            idempotency_key=idem.key if idem is not None else "",
        )
        self.active += 1
        self.idle.clear()
        try:
            call = self.backends.router.Route(
                router_pb2.RouteRequest(
                    request_id=info.request_id,
                    protocol=ROUTER_PROTOCOL[protocol],
                    body=body,
                    account_id=auth.account_id,
                    key_id=auth.key_id,
                    headers=forwarded,
                    coalesce_frames=True,
                ),
                timeout=self.route_timeout,
            )
        except BaseException:
            self.finish(x, info)
            raise
        watch = DisconnectWatch(request.receive, call, x, enabled=idem is None or facts.stream)
        try:
            return await self._respond(call, x, watch, info, limits)
        except BaseException as exc:
            watch.stop()
            call.cancel()
            if x.error is None and not x.client_gone:
                x.error = ApiError(
                    ErrorType.INTERNAL, f"The edge failed while relaying ({type(exc).__name__})."
                )
            self.finish(x, info)
            raise

    # -- after admission ------------------------------------------------------------------

    async def _respond(
        self,
        call: grpc.aio.UnaryStreamCall[router_pb2.RouteRequest, router_pb2.RouteResponse],
        x: Exchange,
        watch: DisconnectWatch,
        info: RequestInfo,
        limits: list[tuple[str, str]],
    ) -> Response:
        def done() -> None:
            self.finish(x, info)

        head: router_pb2.Head | None = None
        first: bytes | None = None
        try:
            head, first, complete = await self._until_first_chunk(call, x)
            parts = [first] if first is not None else []
            stream = first is not None and _is_sse(head, x.stream)
            if complete and not stream:
                # A complete answer with its usage in one frame (RouteRequest.coalesce_frames):
                # nothing follows but the call's OK status. The client need not wait for it.
                self._finishing.add(call)
                call.add_done_callback(self._finishing.discard)
            elif first is not None and not stream:
                # A complete JSON answer: take the rest (normally only the usage frame) so the
                # client gets a Content-Length and a failure can still change the status.
                while (frame := await self.next_frame(call, x)) is not None:
                    kind = frame.WhichOneof("frame")
                    if kind == "chunk":
                        parts.append(frame.chunk)
                        if frame.HasField("trailing_usage"):
                            x.usage = frame.trailing_usage
                    elif kind == "usage":
                        x.usage = frame.usage
                    elif kind == "error":
                        await self._drain_usage(call, x)
                        raise RouteFailed(route_failure(frame.error))
        except RouteFailed as failed:
            return self._failed(failed.error, x, watch, info, limits, done)
        except grpc.aio.AioRpcError as exc:
            return self._failed(rpc_failure(exc, "router"), x, watch, info, limits, done)
        if x.client_gone:
            watch.stop()
            x.http_status = CLIENT_CLOSED_STATUS
            return RawResponse(b"", CLIENT_CLOSED_STATUS, [], done)
        if first is None:
            failure = ApiError(ErrorType.UPSTREAM_ERROR, "The router ended the call without a response.")
            return self._failed(failure, x, watch, info, limits, done)
        status = head.status_code if head is not None and head.status_code else 200
        headers = [*limits, *_head_headers(head)]
        x.http_status = status
        if stream:
            x.first_byte_mono_ms = time.perf_counter() * 1000
            ctype = head.content_type if head is not None and head.content_type else "text/event-stream"
            return RelayStream(self, call, x, watch, info, status, [("content-type", ctype), *headers], first)
        watch.stop()
        ctype = head.content_type if head is not None and head.content_type else "application/json"
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        x.first_byte_mono_ms = time.perf_counter() * 1000
        if x.idempotency_key:
            x.stored_result = (status, ctype, body)
        return RawResponse(body, status, [("content-type", ctype), *headers], done)

    def _failed(
        self,
        error: ApiError,
        x: Exchange,
        watch: DisconnectWatch,
        info: RequestInfo,
        limits: list[tuple[str, str]],
        done: Callable[[], None],
    ) -> Response:
        watch.stop()
        x.error = error
        x.http_status = CLIENT_CLOSED_STATUS if x.client_gone else status_for(error, x.protocol)
        return error_response(error, x.protocol, info, limits, done)

    async def next_frame(
        self, call: grpc.aio.UnaryStreamCall[router_pb2.RouteRequest, router_pb2.RouteResponse], x: Exchange
    ) -> router_pb2.RouteResponse | None:
        """The next frame; None at the end of the stream or once the client has gone (the
        watch cancelled the call: that cancellation is not this task's)."""
        try:
            frame = await call.read()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if x.client_gone and task is not None and not task.cancelling():
                return None
            raise
        if frame is grpc.aio.EOF:
            return None
        return cast(router_pb2.RouteResponse, frame)

    async def _until_first_chunk(
        self, call: grpc.aio.UnaryStreamCall[router_pb2.RouteRequest, router_pb2.RouteResponse], x: Exchange
    ) -> tuple[router_pb2.Head | None, bytes | None, bool]:
        """The head and the first chunk, and whether that chunk came with the usage (then it is
        the whole answer)."""
        head: router_pb2.Head | None = None
        while (frame := await self.next_frame(call, x)) is not None:
            kind = frame.WhichOneof("frame")
            if kind == "chunk":
                # Coalesced frames (RouteRequest.coalesce_frames): the head and, for a complete
                # answer, the usage arrive with the chunk.
                if frame.HasField("lead_head"):
                    head = frame.lead_head
                complete = frame.HasField("trailing_usage")
                if complete:
                    x.usage = frame.trailing_usage
                return head, frame.chunk, complete
            if kind == "head":
                head = frame.head
            elif kind == "usage":
                x.usage = frame.usage
            elif kind == "error":
                await self._drain_usage(call, x)
                raise RouteFailed(route_failure(frame.error))
        return head, None, False

    async def _drain_usage(
        self, call: grpc.aio.UnaryStreamCall[router_pb2.RouteRequest, router_pb2.RouteResponse], x: Exchange
    ) -> None:
        """After an error frame only a usage frame may follow; it tells what the failed
        attempt consumed."""
        try:
            while (frame := await self.next_frame(call, x)) is not None:
                if frame.WhichOneof("frame") == "usage":
                    x.usage = frame.usage
        except grpc.aio.AioRpcError:
            return

    @staticmethod
    def _ratelimit_headers(state: auth_pb2.RateLimitState, protocol: Protocol) -> list[tuple[str, str]]:
        if protocol is Protocol.ANTHROPIC_MESSAGES:
            return ratelimit.anthropic_headers(state, datetime.now(UTC))
        return ratelimit.openai_headers(state)

    def finish(self, x: Exchange, info: RequestInfo) -> None:
        """Once per admitted request, after its response: the usage event (billing settles or
        releases the reservation with it) and the TPM correction."""
        if x.finished:
            return
        x.finished = True
        self.active -= 1
        if self.active == 0:
            self.idle.set()
        if x.error is not None:
            info.error_type = x.error.type.value
        if x.idempotency_key:
            complete = self.backends.auth.CompleteIdempotency(
                idempotency.completion(x), timeout=self.auth_timeout
            )
            self.background.spawn(complete, "auth.CompleteIdempotency")
        try:
            event = usage_event(x, time.time_ns() // 1_000_000, time.perf_counter() * 1000)
            span = trace.get_current_span()
            span.set_attribute("gen_ai.usage.input_tokens", event.input_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", event.output_tokens)
            if event.provider:
                span.set_attribute("gen_ai.provider.name", event.provider)
            if event.upstream_model:
                span.set_attribute("gen_ai.response.model", event.upstream_model)
            if event.finish_reason:
                span.set_attribute("gen_ai.response.finish_reasons", [event.finish_reason])
            self.publisher.publish(event)
        except Exception:
            log.exception("usage event not published")
            return
        if x.reserved_tokens > 0:
            # Only keys with a TPM limit counted tokens at admission; nothing to correct otherwise.
            settle = auth_pb2.SettleRequest(
                request_id=x.request_id,
                key_id=x.key_id,
                reserved_tokens=x.reserved_tokens,
                actual_tokens=event.input_tokens + event.output_tokens,
            )
            self.background.spawn(self.backends.auth.Settle(settle, timeout=self.auth_timeout), "auth.Settle")


def _is_sse(head: router_pb2.Head | None, requested: bool) -> bool:
    if head is not None and head.content_type:
        return head.content_type.startswith("text/event-stream")
    return requested


def _head_headers(head: router_pb2.Head | None) -> list[tuple[str, str]]:
    if head is None:
        return []
    items: Mapping[str, str] = head.headers
    return [(k, v) for k, v in items.items() if k.lower() not in _HOP_BY_HOP]


class RelayStream(Response):
    """Server-sent events straight from the router's chunks. After the first byte a failure
    can only be told inside the stream, in the protocol's own error event."""

    def __init__(
        self,
        relay: Relay,
        call: grpc.aio.UnaryStreamCall[router_pb2.RouteRequest, router_pb2.RouteResponse],
        x: Exchange,
        watch: DisconnectWatch,
        info: RequestInfo,
        status: int,
        headers: list[tuple[str, str]],
        first: bytes,
    ) -> None:
        self.relay = relay
        self.call = call
        self.x = x
        self.watch = watch
        self.info = info
        self.status_code = status
        self.background = None
        self.first = first
        self.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        names = {k for k, _ in self.raw_headers}
        self.raw_headers += [h for h in _SSE_HEADERS if h[0] not in names]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        x, call = self.x, self.call
        last = self.first
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            await send({"type": "http.response.body", "body": self.first, "more_body": True})
            x.chunks = 1
            while True:
                try:
                    frame = await self.relay.next_frame(call, x)
                except grpc.aio.AioRpcError as exc:
                    await self._fail(send, rpc_failure(exc, "router"), last)
                    break
                if frame is None:
                    break
                kind = frame.WhichOneof("frame")
                if kind == "chunk":
                    if x.error is None:
                        last = frame.chunk
                        await send({"type": "http.response.body", "body": last, "more_body": True})
                        x.chunks += 1
                    if frame.HasField("trailing_usage"):
                        x.usage = frame.trailing_usage
                elif kind == "usage":
                    x.usage = frame.usage
                elif kind == "error" and x.error is None:
                    await self._fail(send, route_failure(frame.error), last)
            self.watch.stop()
            if not x.client_gone:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except BaseException as exc:
            # Cut off by the server (shutdown past its grace period) or a bug: not a success.
            if x.error is None and not x.client_gone:
                x.error = ApiError(ErrorType.INTERNAL, f"The stream was interrupted ({type(exc).__name__}).")
            raise
        finally:
            self.watch.stop()
            if not call.done():
                call.cancel()
            if x.client_gone:
                x.http_status = CLIENT_CLOSED_STATUS
            self.relay.finish(x, self.info)

    async def _fail(self, send: Send, error: ApiError, last: bytes) -> None:
        self.x.error = error
        if not self.x.client_gone:
            body = stream_failure(error, self.x.protocol, self.first, last)
            await send({"type": "http.response.body", "body": body, "more_body": True})
