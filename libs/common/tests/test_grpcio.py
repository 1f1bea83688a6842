"""The shared gRPC server and channel: every call of a registered method gets a SERVER span in
the caller's trace with the request id bound; health checks are not traced."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from crossmodel_common import grpcio
from crossmodel_common.context import (
    REQUEST_ID_ATTRIBUTE,
    bind_request_id,
    current_request_id,
    reset_request_id,
)
from crossmodel_common.grpcio import GrpcServer, channel
from crossmodel_common.telemetry import setup_telemetry


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    provider = setup_telemetry("unit", set_global=False)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(grpcio, "_tracer", provider.get_tracer("test"))
    return exporter


async def _unary(request: bytes, context: Any) -> bytes:
    return current_request_id().encode()


async def _fail(request: bytes, context: Any) -> bytes:
    await context.abort(grpc.StatusCode.NOT_FOUND, "nothing here")
    raise AssertionError("abort returns no answer")


async def _stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
    yield b"one"
    if request == b"hang":
        await asyncio.sleep(60)
    yield current_request_id().encode()


async def _broken(request: bytes, context: Any) -> bytes:
    raise ValueError("a bug")


@pytest.fixture
async def server() -> AsyncIterator[GrpcServer]:
    s = GrpcServer("127.0.0.1:0", ["t.Echo", "t.Reg"], grace=0.5)
    # Both ways generated code registers a servicer: generic handlers and registered methods.
    s.server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "t.Echo",
                {
                    "Unary": grpc.unary_unary_rpc_method_handler(_unary),
                    "Fail": grpc.unary_unary_rpc_method_handler(_fail),
                    "Broken": grpc.unary_unary_rpc_method_handler(_broken),
                },
            ),
        )
    )
    s.server.add_registered_method_handlers(
        "t.Reg", {"Stream": grpc.unary_stream_rpc_method_handler(_stream)}
    )
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


def _by(spans: InMemorySpanExporter, name: str, kind: SpanKind) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if s.name == name and s.kind is kind]


async def _ended(spans: InMemorySpanExporter, *names: str) -> None:
    """A server span ends when its handler has returned, which can be just after the client has
    the call's status (abort() sends it first): wait for them as a trace backend would."""
    for _ in range(500):
        if all(_by(spans, name, SpanKind.SERVER) for name in names):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"no SERVER span for some of {names}")


async def test_server_spans_continue_the_callers_trace_with_the_request_id(
    server: GrpcServer, spans: InMemorySpanExporter
) -> None:
    ch = channel(f"127.0.0.1:{server.port}")
    token = bind_request_id("req_grpcio")
    try:
        assert await ch.unary_unary("/t.Echo/Unary")(b"x") == b"req_grpcio"
        assert [m async for m in ch.unary_stream("/t.Reg/Stream")(b"x")] == [b"one", b"req_grpcio"]
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await ch.unary_unary("/t.Echo/Fail")(b"x")
    finally:
        reset_request_id(token)
        await ch.close()
    assert failed.value.code() is grpc.StatusCode.NOT_FOUND

    await _ended(spans, "t.Echo/Unary", "t.Reg/Stream", "t.Echo/Fail")
    for method in ("t.Echo/Unary", "t.Reg/Stream", "t.Echo/Fail"):
        [client] = _by(spans, method, SpanKind.CLIENT)
        [served] = _by(spans, method, SpanKind.SERVER)
        assert served.parent is not None
        assert served.parent.span_id == client.context.span_id
        assert served.context.trace_id == client.context.trace_id
        assert (served.attributes or {})[REQUEST_ID_ATTRIBUTE] == "req_grpcio"
        service, _, name = method.partition("/")
        assert (served.attributes or {})["rpc.service"] == service
        assert (served.attributes or {})["rpc.method"] == name
    [ok] = _by(spans, "t.Echo/Unary", SpanKind.SERVER)
    assert (ok.attributes or {})["rpc.grpc.status_code"] == grpc.StatusCode.OK.value[0]
    assert ok.status.status_code is not StatusCode.ERROR
    [bad] = _by(spans, "t.Echo/Fail", SpanKind.SERVER)
    assert (bad.attributes or {})["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert bad.status.status_code is StatusCode.ERROR
    assert current_request_id() == ""


async def test_an_unknown_method_is_unimplemented_and_not_traced(
    server: GrpcServer, spans: InMemorySpanExporter
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        for name in ("Nope", "Nope", "Other"):
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await ch.unary_unary(f"/t.Echo/{name}")(b"x")
            assert missing.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert not [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]


async def test_health_checks_are_served_and_not_traced(
    server: GrpcServer, spans: InMemorySpanExporter
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        answer = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="t.Echo"))
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    assert not [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]


async def test_a_failing_handler_and_a_cancelled_stream_end_their_spans_with_their_status(
    server: GrpcServer, spans: InMemorySpanExporter
) -> None:
    ch = channel(f"127.0.0.1:{server.port}")
    try:
        with pytest.raises(grpc.aio.AioRpcError) as broken:
            await ch.unary_unary("/t.Echo/Broken")(b"x")
        call = ch.unary_stream("/t.Reg/Stream")(b"hang")
        assert await call.read() == b"one"
        call.cancel()
        await _ended(spans, "t.Echo/Broken", "t.Reg/Stream")
    finally:
        await ch.close()
    assert broken.value.code() is grpc.StatusCode.UNKNOWN
    [failed] = _by(spans, "t.Echo/Broken", SpanKind.SERVER)
    assert (failed.attributes or {})["rpc.grpc.status_code"] == grpc.StatusCode.UNKNOWN.value[0]
    assert failed.status.status_code is StatusCode.ERROR
    assert [e.name for e in failed.events] == ["exception"], "recorded once"
    [cancelled] = _by(spans, "t.Reg/Stream", SpanKind.SERVER)
    assert (cancelled.attributes or {})["rpc.grpc.status_code"] == grpc.StatusCode.CANCELLED.value[0]
    assert cancelled.status.status_code is StatusCode.ERROR
    assert not cancelled.events, "a cancellation is not an exception"
