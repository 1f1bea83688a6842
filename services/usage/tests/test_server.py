"""The gRPC API, served in-process on a free port and called through the shared client channel."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from crossmodel.events.v1 import usage_event_pb2 as events_pb2
from crossmodel.usage.v1 import usage_pb2, usage_pb2_grpc
from crossmodel_common.db import make_engine
from crossmodel_common.grpcio import GrpcServer, channel
from crossmodel_devstack.broker import free_port
from crossmodel_usage.adapters.repository import UsageRepository
from crossmodel_usage.domain.queries import DAY_MS
from crossmodel_usage.domain.records import normalize
from crossmodel_usage.server import SERVICE_NAME, UsageServicer
from crossmodel_usage.wire import record_from_event

MakeEvent = Callable[..., events_pb2.UsageEvent]


@pytest.fixture(scope="module")
async def target(repository: UsageRepository) -> AsyncIterator[str]:
    port = free_port()
    server = GrpcServer(f"127.0.0.1:{port}", [SERVICE_NAME], grace=1.0)
    usage_pb2_grpc.add_UsageServiceServicer_to_server(UsageServicer(repository), server.server)
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop()


@pytest.fixture
async def stub(target: str) -> AsyncIterator[usage_pb2_grpc.UsageServiceAsyncStub]:
    ch = channel(target, timeout=5.0)
    yield usage_pb2_grpc.UsageServiceStub(ch)
    await ch.close()


@pytest.fixture
async def stored(
    repository: UsageRepository, make_event: MakeEvent, day0_ms: int
) -> list[events_pb2.UsageEvent]:
    """Eight requests over two days, two keys, two models, one failure."""
    events = [
        make_event(
            started_at_unix_ms=day0_ms + (i // 4) * DAY_MS + i * 60_000,
            key_id="key_a" if i % 2 else "key_b",
            model="m1" if i < 6 else "m2",
            input_tokens=100 * (i + 1),
            output_tokens=10 * (i + 1),
            cost_micros=1000 * (i + 1),
            status=events_pb2.REQUEST_STATUS_FAILED if i == 3 else events_pb2.REQUEST_STATUS_SUCCEEDED,
        )
        for i in range(8)
    ]
    for e in events:
        assert await repository.record(normalize(record_from_event(e)))
    return events


async def test_health_reports_serving(target: str) -> None:
    ch = channel(target)
    try:
        health: Any = health_pb2_grpc.HealthStub(ch)  # the typeshed stub lacks the methods
        reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
    finally:
        await ch.close()
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_totals_over_everything_whole_days_partial_days_and_one_key(
    stub: usage_pb2_grpc.UsageServiceAsyncStub,
    stored: list[events_pb2.UsageEvent],
    account: str,
    day0_ms: int,
) -> None:
    everything = (await stub.GetTotals(usage_pb2.GetTotalsRequest(account_id=account))).totals
    assert everything == usage_pb2.Totals(
        requests=8, input_tokens=3600, output_tokens=360, cost_micros=36000, errors=1
    )
    first_day = (
        await stub.GetTotals(
            usage_pb2.GetTotalsRequest(account_id=account, from_unix_ms=day0_ms, to_unix_ms=day0_ms + DAY_MS)
        )
    ).totals
    assert (first_day.requests, first_day.input_tokens, first_day.errors) == (4, 1000, 1)
    # From the second request of day one into the middle of day two: 2,3 and 4,5.
    partial = (
        await stub.GetTotals(
            usage_pb2.GetTotalsRequest(
                account_id=account, from_unix_ms=day0_ms + 60_000, to_unix_ms=day0_ms + DAY_MS + 6 * 60_000
            )
        )
    ).totals
    assert (partial.requests, partial.input_tokens) == (5, 200 + 300 + 400 + 500 + 600)
    key_a = (await stub.GetTotals(usage_pb2.GetTotalsRequest(account_id=account, key_id="key_a"))).totals
    assert (key_a.requests, key_a.cost_micros) == (4, 2000 + 4000 + 6000 + 8000)


async def test_a_request_by_id_only_for_its_own_account(
    stub: usage_pb2_grpc.UsageServiceAsyncStub, stored: list[events_pb2.UsageEvent], account: str
) -> None:
    wanted = stored[3]
    reply = await stub.GetRequest(usage_pb2.GetRequestRequest(request_id=wanted.request_id))
    assert reply.found
    assert reply.request == wanted
    reply = await stub.GetRequest(
        usage_pb2.GetRequestRequest(request_id=wanted.request_id, account_id=account)
    )
    assert reply.found
    assert reply.request == wanted
    other = await stub.GetRequest(
        usage_pb2.GetRequestRequest(request_id=wanted.request_id, account_id="acct_x")
    )
    assert not other.found
    assert not other.HasField("request")
    missing = await stub.GetRequest(usage_pb2.GetRequestRequest(request_id="req_missing"))
    assert not missing.found


async def test_lists_filter_and_page_through_every_request(
    stub: usage_pb2_grpc.UsageServiceAsyncStub,
    stored: list[events_pb2.UsageEvent],
    account: str,
    day0_ms: int,
) -> None:
    async def walk(**filters: object) -> list[str]:
        ids: list[str] = []
        token = ""
        while True:
            reply = await stub.ListRequests(
                usage_pb2.ListRequestsRequest(account_id=account, limit=3, page_token=token, **filters)  # type: ignore[arg-type]
            )
            assert len(reply.requests) <= 3
            ids.extend(r.request_id for r in reply.requests)
            token = reply.next_page_token
            if not token:
                return ids

    newest_first = [e.request_id for e in reversed(stored)]
    assert await walk() == newest_first
    assert await walk(key_id="key_a") == [e.request_id for e in reversed(stored) if e.key_id == "key_a"]
    assert await walk(model="m2") == newest_first[:2]
    assert await walk(status="failed") == [stored[3].request_id]
    assert await walk(request_id=stored[5].request_id) == [stored[5].request_id]
    assert await walk(from_unix_ms=day0_ms + DAY_MS) == newest_first[:4]
    assert await walk(to_unix_ms=day0_ms + 2 * 60_000) == [stored[1].request_id, stored[0].request_id]
    full = await stub.ListRequests(usage_pb2.ListRequestsRequest(account_id=account))
    assert list(full.requests) == list(reversed(stored))
    assert full.next_page_token == ""


async def test_a_page_token_is_refused_for_other_filters_or_when_forged(
    stub: usage_pb2_grpc.UsageServiceAsyncStub, stored: list[events_pb2.UsageEvent], account: str
) -> None:
    first = await stub.ListRequests(usage_pb2.ListRequestsRequest(account_id=account, limit=2))
    assert first.next_page_token
    for request in (
        usage_pb2.ListRequestsRequest(account_id=account, model="m1", page_token=first.next_page_token),
        usage_pb2.ListRequestsRequest(account_id="acct_x", page_token=first.next_page_token),
        usage_pb2.ListRequestsRequest(account_id=account, page_token="not a token"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ListRequests(request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # A different page size with the same filters is fine.
    second = await stub.ListRequests(
        usage_pb2.ListRequestsRequest(account_id=account, limit=5, page_token=first.next_page_token)
    )
    assert [r.request_id for r in second.requests] == [e.request_id for e in reversed(stored)][2:7]


async def test_daily_usage_per_day_key_and_model(
    stub: usage_pb2_grpc.UsageServiceAsyncStub, stored: list[events_pb2.UsageEvent], account: str
) -> None:
    reply = await stub.GetDailyUsage(usage_pb2.GetDailyUsageRequest(account_id=account))
    assert [(d.day, d.key_id, d.model, d.totals.requests, d.totals.errors) for d in reply.days] == [
        ("2026-11-20", "key_a", "m1", 2, 1),
        ("2026-11-20", "key_b", "m1", 2, 0),
        ("2026-11-21", "key_a", "m1", 1, 0),
        ("2026-11-21", "key_a", "m2", 1, 0),
        ("2026-11-21", "key_b", "m1", 1, 0),
        ("2026-11-21", "key_b", "m2", 1, 0),
    ]
    reply = await stub.GetDailyUsage(
        usage_pb2.GetDailyUsageRequest(
            account_id=account, key_id="key_b", from_day="2026-11-21", to_day="2026-11-21"
        )
    )
    assert [(d.model, d.totals.input_tokens, d.totals.cost_micros) for d in reply.days] == [
        ("m1", 500, 5000),
        ("m2", 700, 7000),
    ]


@pytest.mark.parametrize(
    "call",
    [
        ("GetTotals", usage_pb2.GetTotalsRequest()),
        ("GetTotals", usage_pb2.GetTotalsRequest(account_id="a", from_unix_ms=10, to_unix_ms=5)),
        ("GetRequest", usage_pb2.GetRequestRequest()),
        ("ListRequests", usage_pb2.ListRequestsRequest()),
        ("ListRequests", usage_pb2.ListRequestsRequest(account_id="a", status="weird")),
        ("ListRequests", usage_pb2.ListRequestsRequest(account_id="a", limit=-1)),
        ("GetDailyUsage", usage_pb2.GetDailyUsageRequest()),
        ("GetDailyUsage", usage_pb2.GetDailyUsageRequest(account_id="a", from_day="yesterday")),
        (
            "GetDailyUsage",
            usage_pb2.GetDailyUsageRequest(account_id="a", from_day="2026-11-21", to_day="2026-11-20"),
        ),
    ],
)
async def test_malformed_requests_are_invalid_arguments(
    stub: usage_pb2_grpc.UsageServiceAsyncStub, call: tuple[str, object]
) -> None:
    method, request = call
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await getattr(stub, method)(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details()


async def test_an_unreachable_database_answers_unavailable() -> None:
    engine = make_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing_listens_here")
    port = free_port()
    server = GrpcServer(f"127.0.0.1:{port}", [SERVICE_NAME], grace=1.0)
    usage_pb2_grpc.add_UsageServiceServicer_to_server(UsageServicer(UsageRepository(engine)), server.server)
    await server.start()
    ch = channel(f"127.0.0.1:{port}", timeout=5.0)
    try:
        stub = usage_pb2_grpc.UsageServiceStub(ch)
        for method, request in (
            ("GetTotals", usage_pb2.GetTotalsRequest(account_id="a")),
            ("GetRequest", usage_pb2.GetRequestRequest(request_id="req_1")),
            ("ListRequests", usage_pb2.ListRequestsRequest(account_id="a")),
            ("GetDailyUsage", usage_pb2.GetDailyUsageRequest(account_id="a")),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await getattr(stub, method)(request)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE, method
            assert "127.0.0.1" not in (err.value.details() or "")
    finally:
        await ch.close()
        await server.stop()
        await engine.dispose()
