"""Events through a real broker into a real database: one row per request id, redelivery
changes nothing, poison goes to the dead-letter topic without blocking what follows."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from crossmodel.events.v1 import usage_event_pb2 as events_pb2
from crossmodel_common.kafka import IdempotentConsumer, OutgoingRecord, SpooledProducer, trace_headers
from crossmodel_common.telemetry import RequestIdSpanProcessor
from crossmodel_devstack.broker import TansuBroker, free_port
from crossmodel_devstack.harness import eventually
from crossmodel_usage.adapters.database import open_engine
from crossmodel_usage.adapters.repository import UsageRepository
from crossmodel_usage.adapters.tables import request_log, usage_daily
from crossmodel_usage.consumer import make_consumer, start_when_reachable

MakeEvent = Callable[..., events_pb2.UsageEvent]


@pytest.fixture
async def topics(broker: TansuBroker) -> tuple[str, str]:
    topic = f"usage.v1.{secrets.token_hex(4)}"
    dlq = f"{topic}.usage.dlq"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, num_partitions=3, replication_factor=1) for t in (topic, dlq)])
    finally:
        await admin.close()
    return topic, dlq


@pytest.fixture
async def producer(broker: TansuBroker, tmp_path: Path) -> AsyncIterator[SpooledProducer]:
    p = SpooledProducer(broker.bootstrap, tmp_path / "spool")
    await p.start()
    yield p
    await p.stop()


@pytest.fixture
async def consumer(
    broker: TansuBroker, topics: tuple[str, str], repository: UsageRepository
) -> AsyncIterator[IdempotentConsumer]:
    topic, dlq = topics
    c = make_consumer(broker.bootstrap, topic, dlq, repository, group=f"usage-{secrets.token_hex(4)}")
    await c.start()
    yield c
    await c.stop()


def _publish(producer: SpooledProducer, topic: str, event: events_pb2.UsageEvent) -> None:
    producer.publish(
        OutgoingRecord(
            topic, event.account_id.encode(), event.SerializeToString(), trace_headers(event.request_id)
        )
    )


async def _rows(engine: AsyncEngine, account: str) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).where(request_log.c.account_id == account)) or 0)


async def _aggregates(engine: AsyncEngine, account: str) -> list[tuple[Any, ...]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(usage_daily).where(usage_daily.c.account_id == account).order_by(*usage_daily.primary_key)
        )
        return [tuple(r) for r in rows]


async def _dead_letters(broker: TansuBroker, dlq: str, count: int) -> list[Any]:
    """The first `count` records of the dead-letter topic."""
    reader = AIOKafkaConsumer(dlq, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest")
    await reader.start()
    try:
        dead: list[Any] = []

        async def read() -> bool:
            for records in (await reader.getmany(timeout_ms=200)).values():
                dead.extend(records)
            return len(dead) >= count

        await eventually(read)
    finally:
        await reader.stop()
    return dead


async def test_each_event_lands_once_and_redelivery_changes_nothing(
    producer: SpooledProducer,
    consumer: IdempotentConsumer,
    topics: tuple[str, str],
    engine: AsyncEngine,
    account: str,
    make_event: MakeEvent,
    day0_ms: int,
) -> None:
    topic, _ = topics
    events = [
        make_event(
            model=("m1", "m2")[i % 2],
            key_id=("key_a", "key_b", "key_c")[i % 3],
            input_tokens=10 + i,
            output_tokens=i,
            cost_micros=3 * i,
            status=events_pb2.REQUEST_STATUS_FAILED if i % 5 == 0 else events_pb2.REQUEST_STATUS_SUCCEEDED,
            started_at_unix_ms=day0_ms + i * 3_600_000,  # 60 hours: three UTC days
        )
        for i in range(60)
    ]
    for e in events:
        _publish(producer, topic, e)
    await eventually(lambda: consumer.processed >= 60)
    assert await _rows(engine, account) == 60
    before = await _aggregates(engine, account)
    assert len(before) == 3 * 2 * 3
    assert sum(r[4] for r in before) == 60
    assert sum(r[5] for r in before) == sum(e.input_tokens for e in events)
    assert sum(r[10] for r in before) == sum(e.cost_micros for e in events)
    assert sum(r[11] for r in before) == 12

    for e in events:
        _publish(producer, topic, e)
    await eventually(lambda: consumer.processed >= 120)
    assert await _rows(engine, account) == 60
    assert await _aggregates(engine, account) == before
    assert consumer.dead_lettered == 0


async def test_poison_goes_to_the_dead_letter_topic_and_does_not_block_later_events(
    broker: TansuBroker,
    producer: SpooledProducer,
    consumer: IdempotentConsumer,
    topics: tuple[str, str],
    repository: UsageRepository,
    account: str,
    make_event: MakeEvent,
) -> None:
    topic, dlq = topics
    # Same key as the good events: same partition, so the good ones really come after.
    key = account.encode()
    producer.publish(OutgoingRecord(topic, key, b"\xff\xff not protobuf", trace_headers("req_poison")))
    invalid = make_event(request_id="")
    producer.publish(OutgoingRecord(topic, key, invalid.SerializeToString(), trace_headers("req_invalid")))
    good = [make_event() for _ in range(3)]
    for e in good:
        _publish(producer, topic, e)

    async def all_good_stored() -> bool:
        return all([await repository.get_request(e.request_id) is not None for e in good])

    await eventually(all_good_stored)
    await eventually(lambda: consumer.dead_lettered == 2)

    dead = await _dead_letters(broker, dlq, 2)
    reasons = sorted(dict(r.headers)["crossmodel-dlq-reason"].decode() for r in dead)
    assert reasons[0].startswith("invalid UsageEvent: request_id is empty")
    assert reasons[1].startswith("undecodable UsageEvent")
    assert {dict(r.headers)["x-request-id"] for r in dead} == {b"req_poison", b"req_invalid"}
    assert all(dict(r.headers)["crossmodel-dlq-source"].startswith(topic.encode()) for r in dead)


async def test_the_consumer_starts_once_the_broker_becomes_reachable(
    repository: UsageRepository, tmp_path: Path, make_event: MakeEvent, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    consumer = make_consumer(f"127.0.0.1:{port}", "usage.v1.late", "usage.v1.late.dlq", repository)
    attempts = 0
    start = consumer.start

    async def counted_start() -> None:
        nonlocal attempts
        attempts += 1
        await start()

    monkeypatch.setattr(consumer, "start", counted_start)
    starting = asyncio.create_task(start_when_reachable(consumer, retry_seconds=0.1))
    try:
        await eventually(lambda: attempts >= 3, what="three attempts to reach the absent broker")
        assert not starting.done()
        with TansuBroker(port=port) as late:
            admin = AIOKafkaAdminClient(bootstrap_servers=late.bootstrap)
            await admin.start()
            try:
                await admin.create_topics([NewTopic("usage.v1.late", num_partitions=1, replication_factor=1)])
            finally:
                await admin.close()
            await starting
            producer = SpooledProducer(late.bootstrap, tmp_path / "spool")
            await producer.start()
            event = make_event()
            _publish(producer, "usage.v1.late", event)

            async def stored() -> bool:
                return await repository.get_request(event.request_id) is not None

            try:
                await eventually(stored)
            finally:
                await producer.stop()
                await consumer.stop()
    finally:
        starting.cancel()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Spans of this test, whatever tracer provider the session installed first."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(RequestIdSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


async def test_the_batch_write_is_linked_to_the_requests_trace(
    broker: TansuBroker,
    topics: tuple[str, str],
    database_url: str,
    tmp_path: Path,
    make_event: MakeEvent,
    spans: InMemorySpanExporter,
) -> None:
    """Each event is processed in a CONSUMER span of its request's trace, with its request id;
    the batch's write is in a settle span of its own, linked to each of those spans."""
    topic, dlq = topics
    engine = open_engine(database_url)
    repository = UsageRepository(engine)
    consumer = make_consumer(broker.bootstrap, topic, dlq, repository, group=f"usage-{secrets.token_hex(4)}")
    producer = SpooledProducer(broker.bootstrap, tmp_path / "spool")
    await producer.start()
    await consumer.start()
    try:
        event = make_event()
        with trace.get_tracer("edge").start_as_current_span("POST /v1/chat/completions") as root:
            _publish(producer, topic, event)
        trace_id = root.get_span_context().trace_id

        async def stored() -> bool:
            return await repository.get_request(event.request_id) is not None

        await eventually(stored)
        await eventually(lambda: any(s.name == f"{topic} settle" for s in spans.get_finished_spans()))
    finally:
        await consumer.stop()
        await producer.stop()
        await engine.dispose()
    finished = spans.get_finished_spans()
    in_trace = [s for s in finished if s.context.trace_id == trace_id]
    consumer_span = next(s for s in in_trace if s.name == f"{topic} process")
    assert consumer_span.parent is not None
    assert (consumer_span.attributes or {}).get("crossmodel.request_id") == event.request_id
    (settle,) = [
        s
        for s in finished
        if s.name == f"{topic} settle"
        and any(link.context.span_id == consumer_span.context.span_id for link in s.links)
    ]
    assert settle.context.trace_id != trace_id
    assert (settle.attributes or {}).get("messaging.operation.type") == "settle"
    writes = [s for s in finished if s.parent is not None and s.parent.span_id == settle.context.span_id]
    assert any("INSERT" in str((s.attributes or {}).get("db.statement")) for s in writes)


async def test_a_record_the_database_refuses_is_dead_lettered_and_the_rest_stored(
    broker: TansuBroker,
    producer: SpooledProducer,
    consumer: IdempotentConsumer,
    topics: tuple[str, str],
    repository: UsageRepository,
    engine: AsyncEngine,
    account: str,
    make_event: MakeEvent,
) -> None:
    """Found only when the batch is written (an aggregate that would overflow): that record goes
    to the dead-letter topic, every other record of its batch is stored, none is lost."""
    first = make_event()
    _publish(producer, topics[0], first)
    await eventually(lambda: consumer.processed >= 1)
    async with engine.begin() as conn:
        await conn.execute(
            usage_daily.update().where(usage_daily.c.account_id == account).values(cost_micros=2**63 - 10)
        )
    overflowing = make_event()
    others = [make_event(account_id=f"{account}_{i}") for i in range(5)]
    for e in [others[0], overflowing, *others[1:]]:
        _publish(producer, topics[0], e)
    await eventually(lambda: consumer.dead_lettered == 1)
    await eventually(lambda: consumer.processed >= 6)
    for e in others:
        assert await repository.get_request(e.request_id) is not None
    assert await repository.get_request(overflowing.request_id) is None
    assert await _rows(engine, account) == 1

    (record,) = await _dead_letters(broker, topics[1], 1)
    assert dict(record.headers)["x-request-id"] == overflowing.request_id.encode()
    assert b"bigint out of range" in dict(record.headers)["crossmodel-dlq-reason"]
