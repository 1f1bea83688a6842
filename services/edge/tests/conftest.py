"""The edge served by a real uvicorn on a free port, against in-process gRPC servicers that
implement the real generated auth/router/billing/usage interfaces, and a real Tansu broker for
the usage events."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from crossmodel.auth.v1 import auth_pb2, auth_pb2_grpc
from crossmodel.billing.v1 import billing_pb2, billing_pb2_grpc
from crossmodel.events.v1 import usage_event_pb2
from crossmodel.router.v1 import router_pb2, router_pb2_grpc
from crossmodel.usage.v1 import usage_pb2, usage_pb2_grpc
from crossmodel_common.context import current_request_id
from crossmodel_common.grpcio import GrpcServer
from crossmodel_common.money import Prices, cost_micros
from crossmodel_common.telemetry import RequestIdSpanProcessor, setup_telemetry
from crossmodel_devstack.broker import TansuBroker, free_port
from crossmodel_edge.__main__ import server_config
from crossmodel_edge.app import create_app
from crossmodel_edge.config import Settings

GOOD_KEY = "cm-" + "a" * 45
TPM_KEY = "cm-" + "t" * 45
SCOPED_KEY = "cm-" + "o" * 45  # may use openai/* only
RATE_LIMITED_KEY = "cm-" + "r" * 45
BROKE_KEY = "cm-" + "b" * 45
REVOKED_KEY = "cm-" + "v" * 45
UNKNOWN_KEY = "cm-" + "x" * 45

MINI = "openai/gpt-4o-mini"
SONNET = "anthropic/claude-sonnet-4.6"
MINI_PRICE = router_pb2.Price(
    input_per_mtok_micros=150_000, output_per_mtok_micros=600_000, cached_input_per_mtok_micros=75_000
)
SONNET_PRICE = router_pb2.Price(
    input_per_mtok_micros=3_000_000, output_per_mtok_micros=15_000_000, cache_write_per_mtok_micros=3_750_000
)
MODELS = [
    router_pb2.Model(
        id=MINI,
        vendor="openai",
        display_name="GPT-4o mini",
        context_window=128_000,
        max_output_tokens=16_384,
        capabilities=["tools", "vision", "streaming"],
        price=MINI_PRICE,
        created_unix=1_721_172_741,
    ),
    router_pb2.Model(
        id=SONNET,
        vendor="anthropic",
        display_name="Claude Sonnet 4.6",
        context_window=200_000,
        max_output_tokens=64_000,
        capabilities=["tools", "vision", "reasoning", "streaming"],
        price=SONNET_PRICE,
        created_unix=1_750_000_000,
    ),
]


@dataclass
class KeyRow:
    account_id: str
    key: auth_pb2.ApiKey
    decision: int = auth_pb2.DECISION_ALLOWED
    message: str = ""
    retry_after_ms: int = 0


def _key(key_id: str, name: str, **limits: Any) -> auth_pb2.ApiKey:
    return auth_pb2.ApiKey(
        id=key_id,
        account_id="acct_1",
        name=name,
        redacted="cm-…" + key_id[-4:],
        status=auth_pb2.KEY_STATUS_ACTIVE,
        limits=auth_pb2.KeyLimits(**limits),
        created_at_unix_ms=1_700_000_000_000,
    )


class FakeAuth(auth_pb2_grpc.AuthServiceServicer):
    """Admission as auth answers it: one row per presented key."""

    def __init__(self) -> None:
        self.keys: dict[str, KeyRow] = {
            GOOD_KEY: KeyRow("acct_1", _key("key_good", "default", rpm=60)),
            TPM_KEY: KeyRow("acct_1", _key("key_tpm0", "tpm", rpm=60, tpm=100_000)),
            SCOPED_KEY: KeyRow("acct_1", _key("key_scop", "scoped", allowed_models=["openai/*"])),
            RATE_LIMITED_KEY: KeyRow(
                "acct_1", _key("key_rate", "busy", rpm=1), auth_pb2.DECISION_RATE_LIMITED_REQUESTS, "", 1_500
            ),
            BROKE_KEY: KeyRow("acct_2", _key("key_brok", "broke"), auth_pb2.DECISION_INSUFFICIENT_BALANCE),
            REVOKED_KEY: KeyRow("acct_1", _key("key_revk", "old"), auth_pb2.DECISION_KEY_REVOKED),
        }
        self.authorize: list[tuple[auth_pb2.AuthorizeRequest, str]] = []
        self.introspect: list[auth_pb2.IntrospectKeyRequest] = []
        self.settle: list[auth_pb2.SettleRequest] = []

    async def Authorize(self, request: auth_pb2.AuthorizeRequest, context: Any) -> auth_pb2.AuthorizeResponse:
        self.authorize.append((request, current_request_id()))
        row = self.keys.get(request.api_key)
        if row is None:
            return auth_pb2.AuthorizeResponse(decision=auth_pb2.DECISION_INVALID_KEY)
        lim = row.key.limits
        state = auth_pb2.RateLimitState(
            limit_requests=lim.rpm,
            remaining_requests=max(lim.rpm - 1, 0),
            reset_requests_ms=1_000,
            limit_tokens=lim.tpm,
            remaining_tokens=max(lim.tpm - 100, 0),
            reset_tokens_ms=61_500,
        )
        allowed_models = list(lim.allowed_models)
        decision = row.decision
        in_scope = not allowed_models or any(request.model.startswith(p.rstrip("*")) for p in allowed_models)
        if decision == auth_pb2.DECISION_ALLOWED and not in_scope:
            decision = auth_pb2.DECISION_MODEL_NOT_ALLOWED
        if decision != auth_pb2.DECISION_ALLOWED:
            return auth_pb2.AuthorizeResponse(
                decision=decision,
                message=row.message,
                account_id=row.account_id,
                key_id=row.key.id,
                rate_limit=state,
                retry_after_ms=row.retry_after_ms,
            )
        return auth_pb2.AuthorizeResponse(
            decision=decision,
            account_id=row.account_id,
            key_id=row.key.id,
            key_name=row.key.name,
            rate_limit=state,
            reserved_micros=request.reserve_micros,
            reserved_tokens=(request.estimated_input_tokens + request.max_output_tokens) if lim.tpm else 0,
        )

    async def Settle(self, request: auth_pb2.SettleRequest, context: Any) -> auth_pb2.SettleResponse:
        self.settle.append(request)
        return auth_pb2.SettleResponse()

    async def IntrospectKey(
        self, request: auth_pb2.IntrospectKeyRequest, context: Any
    ) -> auth_pb2.IntrospectKeyResponse:
        self.introspect.append(request)
        row = self.keys.get(request.api_key)
        if row is None:
            return auth_pb2.IntrospectKeyResponse(decision=auth_pb2.DECISION_INVALID_KEY)
        decision = (
            row.decision if row.decision == auth_pb2.DECISION_KEY_REVOKED else auth_pb2.DECISION_ALLOWED
        )
        return auth_pb2.IntrospectKeyResponse(decision=decision, key=row.key)


def _chat_chunk(content: str | None, *, finish: str | None = None, role: bool = False) -> bytes:
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = "assistant"
    if content is not None:
        delta["content"] = content
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    payload = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini"}
    return b"data: " + orjson.dumps({**payload, "choices": [choice]}) + b"\n\n"


STREAM_CHUNKS = [
    _chat_chunk("", role=True),
    _chat_chunk("Hello"),
    _chat_chunk(" world"),
    _chat_chunk(None, finish="stop"),
    b"data: [DONE]\n\n",
]
COMPLETION = orjson.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Hello world"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14},
    }
)
IN_TOKENS, OUT_TOKENS = 12, 2


def usage_frame(model: str = MINI, price: router_pb2.Price = MINI_PRICE) -> router_pb2.RouteResponse:
    prices = Prices(
        price.input_per_mtok_micros, price.output_per_mtok_micros, price.cached_input_per_mtok_micros
    )
    return router_pb2.RouteResponse(
        usage=router_pb2.Usage(
            model=model,
            provider="openai",
            deployment="openai-primary",
            upstream_model="gpt-4o-mini",
            input_tokens=IN_TOKENS,
            output_tokens=OUT_TOKENS,
            cached_input_tokens=0,
            price=price,
            cost_micros=cost_micros(prices, input_tokens=IN_TOKENS, output_tokens=OUT_TOKENS),
            upstream_latency_ms=42,
            ttft_ms=7,
            finish_reason="stop",
            end_user="user-77",
            upstream_request_id="up_1",
        )
    )


def _head(stream: bool) -> router_pb2.RouteResponse:
    return router_pb2.RouteResponse(
        head=router_pb2.Head(
            status_code=200,
            content_type="text/event-stream" if stream else "application/json",
            headers={"x-upstream-request-id": "up_1", "content-length": "999"},
        )
    )


def _error(kind: int, message: str, retry_after_ms: int = 0) -> router_pb2.RouteResponse:
    return router_pb2.RouteResponse(
        error=router_pb2.RouteError(kind=kind, message=message, retry_after_ms=retry_after_ms)  # type: ignore[arg-type]
    )


class FakeRouter(router_pb2_grpc.RouterServiceServicer):
    """Answers like the router: frames scripted by a marker in the last user message."""

    def __init__(self) -> None:
        self.models = list(MODELS)
        self.routes: list[tuple[router_pb2.RouteRequest, str]] = []
        self.list_calls = 0
        self.cancelled: list[str] = []
        self.slow_started = asyncio.Event()
        # "hold-after-answer": the call stays open after its complete answer until this is set.
        self.release = asyncio.Event()
        self.finished: list[str] = []

    async def ListModels(
        self, request: router_pb2.ListModelsRequest, context: Any
    ) -> router_pb2.ListModelsResponse:
        self.list_calls += 1
        return router_pb2.ListModelsResponse(models=self.models)

    async def CountTokens(
        self, request: router_pb2.CountTokensRequest, context: Any
    ) -> router_pb2.CountTokensResponse:
        return router_pb2.CountTokensResponse(input_tokens=1)

    async def Route(
        self, request: router_pb2.RouteRequest, context: Any
    ) -> AsyncIterator[router_pb2.RouteResponse]:
        self.routes.append((request, current_request_id()))
        body = orjson.loads(request.body)
        stream = bool(body.get("stream"))
        marker = str(body["messages"][-1]["content"]) if body.get("messages") else ""
        try:
            if marker == "fail-before":
                yield _error(router_pb2.ERROR_KIND_UPSTREAM_ERROR, "upstream answered 500")
                yield usage_frame()
                return
            if marker == "upstream-429":
                yield _error(router_pb2.ERROR_KIND_UPSTREAM_RATE_LIMITED, "upstream busy", 2_500)
                return
            if marker == "upstream-timeout":
                yield _error(router_pb2.ERROR_KIND_UPSTREAM_TIMEOUT, "upstream timed out")
                return
            if marker == "no-messages":
                yield _error(router_pb2.ERROR_KIND_INVALID_REQUEST, "messages is required")
                return
            if marker == "slow" and not stream:
                self.slow_started.set()
                await asyncio.sleep(60)
            # Like the router: with coalesce_frames the head rides with the first chunk, and the
            # usage with a complete answer's chunk; "separate-frames" answers like a router
            # that does not coalesce.
            packed = request.coalesce_frames and marker != "separate-frames"
            head = _head(stream)
            if not packed:
                yield head
            first = router_pb2.RouteResponse(
                chunk=COMPLETION if not stream else STREAM_CHUNKS[0], lead_head=head.head if packed else None
            )
            if not stream:
                if packed:
                    first.trailing_usage.CopyFrom(usage_frame().usage)
                    yield first
                    if marker == "hold-after-answer":
                        await self.release.wait()
                        self.finished.append(request.request_id)
                    return
                yield first
                yield usage_frame()
                return
            if marker == "fail-after":
                yield first
                yield router_pb2.RouteResponse(chunk=STREAM_CHUNKS[1])
                yield _error(router_pb2.ERROR_KIND_UPSTREAM_ERROR, "upstream connection dropped")
                yield usage_frame()
                return
            if marker == "abort-after":
                yield first
                await context.abort(grpc.StatusCode.INTERNAL, "router crashed")
            if marker == "slow":
                yield first
                self.slow_started.set()
                await asyncio.sleep(60)
            yield first
            for chunk in STREAM_CHUNKS[1:]:
                yield router_pb2.RouteResponse(chunk=chunk)
            yield usage_frame()
        except asyncio.CancelledError:
            self.cancelled.append(request.request_id)
            raise


class FakeBilling(billing_pb2_grpc.BillingServiceServicer):
    async def GetBalance(
        self, request: billing_pb2.GetBalanceRequest, context: Any
    ) -> billing_pb2.GetBalanceResponse:
        return billing_pb2.GetBalanceResponse(
            account_id=request.account_id,
            balance_micros=4_250_000,
            total_charged_micros=750_000,
            total_credited_micros=5_000_000,
            currency="USD",
        )


class FakeUsage(usage_pb2_grpc.UsageServiceServicer):
    async def GetTotals(
        self, request: usage_pb2.GetTotalsRequest, context: Any
    ) -> usage_pb2.GetTotalsResponse:
        return usage_pb2.GetTotalsResponse(
            totals=usage_pb2.Totals(requests=3, input_tokens=36, output_tokens=6, cost_micros=9, errors=1)
        )


@dataclass
class Backends:
    auth: FakeAuth
    router: FakeRouter
    servers: list[GrpcServer] = field(default_factory=list)

    def target(self, i: int) -> str:
        return f"127.0.0.1:{self.servers[i].port}"


@pytest.fixture(scope="session")
def spans() -> InMemorySpanExporter:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        # The tests read spans from memory rather than an OTLP exporter: record them anyway.
        os.environ.setdefault("OTEL_TRACES_SAMPLER", "parentbased_always_on")
        provider = setup_telemetry("edge")
    else:
        provider.add_span_processor(RequestIdSpanProcessor())
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture(scope="session")
async def backends(spans: InMemorySpanExporter) -> AsyncIterator[Backends]:
    auth, router = FakeAuth(), FakeRouter()
    out = Backends(auth, router)
    adders: list[tuple[str, Callable[[GrpcServer], None]]] = [
        (
            "crossmodel.auth.v1.AuthService",
            lambda s: auth_pb2_grpc.add_AuthServiceServicer_to_server(auth, s.server),
        ),
        (
            "crossmodel.router.v1.RouterService",
            lambda s: router_pb2_grpc.add_RouterServiceServicer_to_server(router, s.server),
        ),
        (
            "crossmodel.billing.v1.BillingService",
            lambda s: billing_pb2_grpc.add_BillingServiceServicer_to_server(FakeBilling(), s.server),
        ),
        (
            "crossmodel.usage.v1.UsageService",
            lambda s: usage_pb2_grpc.add_UsageServiceServicer_to_server(FakeUsage(), s.server),
        ),
    ]
    for name, add in adders:
        server = GrpcServer("127.0.0.1:0", [name], grace=0.5)
        add(server)
        await server.start()
        out.servers.append(server)
    yield out
    for server in out.servers:
        await server.stop()


@pytest.fixture(scope="session")
def broker() -> Iterator[TansuBroker]:
    with TansuBroker() as b:
        yield b


async def create_topic(bootstrap: str, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()


def edge_settings(backends: Backends, bootstrap: str, spool: Path, topic: str, **extra: Any) -> Settings:
    return Settings(
        auth_target=backends.target(0),
        router_target=backends.target(1),
        billing_target=backends.target(2),
        usage_target=backends.target(3),
        kafka_bootstrap=bootstrap,
        usage_topic=topic,
        spool_dir=spool,
        port=free_port(),
        **extra,
    )


@dataclass
class RunningEdge:
    url: str
    server: uvicorn.Server
    app: Any

    @property
    def edge(self) -> Any:
        return self.app.state.edge


@contextlib.asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[RunningEdge]:
    app = create_app(settings)
    server = uvicorn.Server(server_config(settings, app))
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started or task.done())
    if task.done():
        task.result()
    try:
        yield RunningEdge(f"http://127.0.0.1:{settings.port}", server, app)
    finally:
        server.should_exit = True
        await task


class EventReader:
    """Every usage event on the topic, with its Kafka headers."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        self.events: list[tuple[usage_event_pb2.UsageEvent, dict[str, bytes], bytes]] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for record in self.consumer:
            event = usage_event_pb2.UsageEvent.FromString(record.value)
            self.events.append((event, dict(record.headers or ()), record.key))

    def for_request(
        self, request_id: str
    ) -> list[tuple[usage_event_pb2.UsageEvent, dict[str, bytes], bytes]]:
        return [e for e in self.events if e[0].request_id == request_id]

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.consumer.stop()


@dataclass
class Stack:
    edge: RunningEdge
    backends: Backends
    events: EventReader
    broker: TansuBroker


@pytest.fixture(scope="session")
async def stack(
    backends: Backends, broker: TansuBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    topic = "usage.v1.edge-tests"
    await create_topic(broker.bootstrap, topic)
    reader = EventReader(broker.bootstrap, topic)
    await reader.start()
    settings = edge_settings(
        backends, broker.bootstrap, tmp_path_factory.mktemp("spool"), topic, max_body_bytes=4096
    )
    async with serve(settings) as running:
        yield Stack(running, backends, reader, broker)
    await reader.stop()


async def eventually(cond: Callable[[], bool | Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = cond()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
