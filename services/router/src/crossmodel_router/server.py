"""RouterService over gRPC: translates the wire to domain calls and domain frames to the wire."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
from opentelemetry import trace

from crossmodel.router.v1 import router_pb2, router_pb2_grpc
from crossmodel_common.logging import get_logger
from crossmodel_protocols.canonical import ErrorKind, Protocol
from crossmodel_router.domain.catalog import ModelEntry
from crossmodel_router.domain.route import Failure, Frame, Head, RouteCall, Router, UsageReport

log = get_logger(__name__)

PROTOCOLS: dict[int, Protocol] = {
    router_pb2.PROTOCOL_OPENAI_CHAT: Protocol.OPENAI_CHAT,
    router_pb2.PROTOCOL_OPENAI_RESPONSES: Protocol.OPENAI_RESPONSES,
    router_pb2.PROTOCOL_ANTHROPIC_MESSAGES: Protocol.ANTHROPIC_MESSAGES,
}
ERROR_KINDS: dict[ErrorKind, router_pb2.ErrorKind.ValueType] = {
    k: router_pb2.ErrorKind.Value("ERROR_KIND_" + k.value) for k in ErrorKind
}

_CLIENT_ERRORS = frozenset(
    {ErrorKind.INVALID_REQUEST, ErrorKind.MODEL_NOT_FOUND, ErrorKind.REQUEST_TOO_LARGE}
)


def price_pb(entry: ModelEntry) -> router_pb2.Price:
    p = entry.prices
    return router_pb2.Price(
        input_per_mtok_micros=p.input_per_mtok_micros,
        output_per_mtok_micros=p.output_per_mtok_micros,
        cached_input_per_mtok_micros=p.cached_input_per_mtok_micros,
        cache_write_per_mtok_micros=p.cache_write_per_mtok_micros,
        reasoning_per_mtok_micros=p.reasoning_per_mtok_micros,
    )


def model_pb(entry: ModelEntry) -> router_pb2.Model:
    return router_pb2.Model(
        id=entry.id,
        vendor=entry.vendor,
        display_name=entry.display_name,
        context_window=entry.context_window,
        max_output_tokens=entry.max_output_tokens,
        capabilities=list(entry.capabilities),
        price=price_pb(entry),
        created_unix=entry.created_unix,
    )


def usage_pb(r: UsageReport) -> router_pb2.Usage:
    u, p = r.usage, r.prices
    return router_pb2.Usage(
        model=r.model,
        provider=r.provider,
        deployment=r.deployment,
        upstream_model=r.upstream_model,
        input_tokens=u.input_tokens,
        output_tokens=u.output_tokens,
        cached_input_tokens=u.cached_input_tokens,
        cache_write_tokens=u.cache_write_tokens,
        reasoning_tokens=u.reasoning_tokens,
        price=router_pb2.Price(
            input_per_mtok_micros=p.input_per_mtok_micros,
            output_per_mtok_micros=p.output_per_mtok_micros,
            cached_input_per_mtok_micros=p.cached_input_per_mtok_micros,
            cache_write_per_mtok_micros=p.cache_write_per_mtok_micros,
            reasoning_per_mtok_micros=p.reasoning_per_mtok_micros,
        ),
        cost_micros=r.cost_micros,
        upstream_latency_ms=r.upstream_latency_ms,
        ttft_ms=r.ttft_ms,
        finish_reason=r.finish_reason,
        end_user=r.end_user,
        usage_estimated=r.estimated,
        upstream_request_id=r.upstream_request_id,
    )


def error_pb(f: Failure) -> router_pb2.RouteError:
    return router_pb2.RouteError(
        kind=ERROR_KINDS[f.kind],
        message=f.message,
        param=f.param,
        code=f.code,
        upstream_status=f.upstream_status,
        retry_after_ms=f.retry_after_ms,
    )


def head_pb(h: Head) -> router_pb2.Head:
    return router_pb2.Head(status_code=h.status, content_type=h.content_type, headers=h.headers)


@dataclass(slots=True)
class _Packed:
    """One chunk with the head before it and the usage after it (RouteRequest.coalesce_frames)."""

    chunk: bytes
    head: Head | None = None
    usage: UsageReport | None = None


async def _coalesced(frames: AsyncIterator[Frame]) -> AsyncIterator[Frame | _Packed]:
    """A head rides with the chunk after it. The chunk of a complete (non-SSE) answer waits for
    the frame after it, which the router yields at once, so usage rides along too. SSE chunks
    never wait: each goes out as it comes."""
    head: Head | None = None
    held: _Packed | None = None
    async for frame in frames:
        if held is not None:
            if isinstance(frame, UsageReport):
                held.usage = frame
                yield held
                held = None
                continue
            yield held
            held = None
        if type(frame) is bytes:
            packed = _Packed(frame, head)
            complete = head is not None and not head.content_type.startswith("text/event-stream")
            head = None
            if complete:
                held = packed
            else:
                yield packed
        elif isinstance(frame, Head):
            if head is not None:
                yield head
            head = frame
        else:
            if head is not None:
                yield head
                head = None
            yield frame
    if held is not None:
        yield held
    if head is not None:
        yield head


class RouterServicer(router_pb2_grpc.RouterServiceServicer):
    def __init__(self, router: Router) -> None:
        self._router = router

    async def Route(
        self, request: router_pb2.RouteRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> AsyncIterator[router_pb2.RouteResponse]:
        protocol = PROTOCOLS.get(request.protocol)
        if protocol is None:
            failure = Failure(ErrorKind.INVALID_REQUEST, "The request names no known protocol.")
            yield router_pb2.RouteResponse(error=error_pb(failure))
            return
        call = RouteCall(
            request_id=request.request_id,
            protocol=protocol,
            body=request.body,
            headers=dict(request.headers),
            time_remaining=context.time_remaining(),
        )
        usage: UsageReport | None = None
        Response = router_pb2.RouteResponse
        routed = self._router.route(call)
        frames: AsyncIterator[Frame | _Packed] = _coalesced(routed) if request.coalesce_frames else routed
        async for frame in frames:
            if type(frame) is bytes:
                yield Response(chunk=frame)
            elif isinstance(frame, _Packed):
                usage = frame.usage or usage
                yield Response(
                    chunk=frame.chunk,
                    lead_head=head_pb(frame.head) if frame.head is not None else None,
                    trailing_usage=usage_pb(frame.usage) if frame.usage is not None else None,
                )
            elif isinstance(frame, UsageReport):
                usage = frame
                yield Response(usage=usage_pb(frame))
            elif isinstance(frame, Head):
                yield Response(head=head_pb(frame))
            elif isinstance(frame, Failure):
                # The client's own mistakes are routine; upstream failures are worth a look.
                emit = log.info if frame.kind in _CLIENT_ERRORS else log.warning
                emit(
                    "route failed",
                    kind=frame.kind.value,
                    message=frame.message,
                    param=frame.param,
                    upstream_status=frame.upstream_status,
                    deployment=usage.deployment if usage else "",
                )
                yield Response(error=error_pb(frame))
        if usage is not None:
            span = trace.get_current_span()
            span.set_attribute("gen_ai.request.model", usage.model)
            span.set_attribute("gen_ai.provider.name", usage.provider)
            span.set_attribute("gen_ai.response.model", usage.upstream_model)
            span.set_attribute("gen_ai.usage.input_tokens", usage.usage.input_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", usage.usage.output_tokens)
            span.set_attribute("crossmodel.deployment", usage.deployment)
            if usage.finish_reason:
                span.set_attribute("gen_ai.response.finish_reasons", [usage.finish_reason])

    async def ListModels(
        self, request: router_pb2.ListModelsRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> router_pb2.ListModelsResponse:
        return router_pb2.ListModelsResponse(models=[model_pb(m) for m in self._router.list_models()])

    async def CountTokens(
        self, request: router_pb2.CountTokensRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> router_pb2.CountTokensResponse:
        protocol = PROTOCOLS.get(request.protocol)
        if protocol is None:
            failure = Failure(ErrorKind.INVALID_REQUEST, "The request names no known protocol.")
            return router_pb2.CountTokensResponse(error=error_pb(failure))
        counted = self._router.count_tokens(protocol, request.body)
        if isinstance(counted, Failure):
            return router_pb2.CountTokensResponse(error=error_pb(counted))
        return router_pb2.CountTokensResponse(input_tokens=counted)
