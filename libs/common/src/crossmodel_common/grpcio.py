"""gRPC plumbing shared by every service: tracing and request-id interceptors, a server with
health checking, reflection and graceful shutdown, and client channels with default deadlines.

The interceptors are ours rather than opentelemetry-instrumentation-grpc's because every span
must carry the request id, which has to be bound from metadata inside the server span, and the
grpc.aio instrumentation offers no hook there; they also cost less on the hot path.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, cast

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from crossmodel_common.context import (
    REQUEST_ID_HEADER,
    bind_request_id,
    current_request_id,
    reset_request_id,
)
from crossmodel_common.logging import get_logger

log = get_logger(__name__)
_tracer = trace.get_tracer("crossmodel.grpc")

Metadata = Sequence[tuple[str, str | bytes]]


def _split(method: str) -> tuple[str, str]:
    service, _, name = method.lstrip("/").rpartition("/")
    return service, name


def _span_attributes(method: str) -> dict[str, str]:
    service, name = _split(method)
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


class _ServerInterceptor(grpc.aio.ServerInterceptor):
    """Continue the caller's trace, bind x-request-id, and record one SERVER span per call."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler: Any = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.startswith(("/grpc.health", "/grpc.reflection")):
            return None if handler is None else cast("grpc.RpcMethodHandler[Any, Any]", handler)
        carrier = {k: v for k, v in handler_call_details.invocation_metadata or () if isinstance(v, str)}

        def start() -> tuple[Any, Any, Any]:
            ctx = propagate.extract(carrier)
            token = bind_request_id(carrier.get(REQUEST_ID_HEADER, ""))
            span = _tracer.start_span(
                method.lstrip("/"),
                context=ctx,
                kind=SpanKind.SERVER,
                attributes=_span_attributes(method),
            )
            return token, span, trace.use_span(span, end_on_exit=False)

        def finish(span: Any, exc: BaseException | None, context: Any) -> None:
            code = context.code() if hasattr(context, "code") else None
            if exc is not None and not isinstance(exc, asyncio.CancelledError):
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            elif code not in (None, grpc.StatusCode.OK):
                span.set_status(Status(StatusCode.ERROR, str(code)))
            if code is not None:
                span.set_attribute("rpc.grpc.status_code", code.value[0])
            span.end()

        if handler.unary_unary is not None:
            inner_uu = handler.unary_unary

            async def unary_unary(request: Any, context: Any) -> Any:
                token, span, use = start()
                exc: BaseException | None = None
                try:
                    with use:
                        return await inner_uu(request, context)
                except BaseException as e:
                    exc = e
                    raise
                finally:
                    finish(span, exc, context)
                    reset_request_id(token)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            inner_us = handler.unary_stream

            async def unary_stream(request: Any, context: Any) -> AsyncIterator[Any]:
                token, span, use = start()
                exc: BaseException | None = None
                try:
                    with use:
                        async for item in inner_us(request, context):
                            yield item
                except BaseException as e:
                    exc = e
                    raise
                finally:
                    finish(span, exc, context)
                    reset_request_id(token)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return cast("grpc.RpcMethodHandler[Any, Any]", handler)


def outgoing_metadata(extra: Iterable[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    """Trace context + x-request-id of the current task, as gRPC metadata."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    md = list(carrier.items())
    rid = current_request_id()
    if rid:
        md.append((REQUEST_ID_HEADER, rid))
    md.extend(extra)
    return md


def _client_details(details: Any, timeout: float) -> tuple[grpc.aio.ClientCallDetails, Any]:
    raw = details.method
    method = raw.decode() if isinstance(raw, bytes) else str(raw)
    span = _tracer.start_span(method.lstrip("/"), kind=SpanKind.CLIENT, attributes=_span_attributes(method))
    with trace.use_span(span, end_on_exit=False):
        md = outgoing_metadata((str(k), str(v)) for k, v in (details.metadata or ()))
    new = grpc.aio.ClientCallDetails(
        method=details.method,
        timeout=details.timeout if details.timeout is not None else timeout,
        metadata=grpc.aio.Metadata(*md),
        credentials=details.credentials,
        wait_for_ready=details.wait_for_ready,
    )
    return new, span


_span_enders: set[asyncio.Task[None]] = set()


def _end_client_span(span: Any, call: Any) -> None:
    async def end() -> None:
        try:
            # grpc.aio's code() is a coroutine; on a finished call it returns at once.
            code = grpc.StatusCode.CANCELLED if call.cancelled() else await call.code()
        except Exception:  # noqa: BLE001 - a call torn down mid-flight has no code to read
            code = grpc.StatusCode.UNKNOWN
        if code != grpc.StatusCode.OK:
            span.set_status(Status(StatusCode.ERROR, str(code)))
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        span.end()

    def done(_: Any) -> None:
        task = asyncio.ensure_future(end())
        _span_enders.add(task)
        task.add_done_callback(_span_enders.discard)

    call.add_done_callback(done)


class _UnaryUnaryClient(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, timeout: float) -> None:
        self._timeout = timeout

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        details, span = _client_details(client_call_details, self._timeout)
        call = await continuation(details, request)
        _end_client_span(span, call)
        return call


class _UnaryStreamClient(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, timeout: float) -> None:
        self._timeout = timeout

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        details, span = _client_details(client_call_details, self._timeout)
        call = await continuation(details, request)
        _end_client_span(span, call)
        return call


def channel(target: str, *, timeout: float = 10.0) -> grpc.aio.Channel:
    """A client channel whose calls carry trace context and x-request-id, with a default
    deadline of `timeout` seconds for calls that set none."""
    return grpc.aio.insecure_channel(
        target,
        interceptors=[_UnaryUnaryClient(timeout), _UnaryStreamClient(timeout)],
        options=[
            # Behind a headless Kubernetes Service the name resolves to every pod; round_robin
            # spreads calls over them instead of pinning one connection to one pod.
            ("grpc.lb_policy_name", "round_robin"),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ],
    )


class GrpcServer:
    """A grpc.aio server with health checking and reflection that shuts down gracefully:
    health NOT_SERVING first, then drain in-flight calls, then stop."""

    def __init__(self, address: str, service_names: Sequence[str], *, grace: float = 10.0) -> None:
        self.server = grpc.aio.server(
            interceptors=[_ServerInterceptor()],
            options=[
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
                ("grpc.so_reuseport", 0),
            ],
        )
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.service_names = list(service_names)
        reflection.enable_server_reflection(
            [*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server
        )
        self.port = self.server.add_insecure_port(address)
        self.grace = grace

    async def start(self) -> None:
        await self.server.start()
        for name in ("", *self.service_names):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self) -> None:
        for name in ("", *self.service_names):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(self.grace)


async def wait_for_shutdown_signal() -> None:
    """Return on SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
