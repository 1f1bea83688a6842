"""The repository against a real, migrated PostgreSQL database."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Callable
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from crossmodel.events.v1 import usage_event_pb2 as events_pb2
from crossmodel_common.ids import new_id
from crossmodel_usage.adapters.repository import UsageRepository
from crossmodel_usage.adapters.tables import metadata, request_log, usage_daily
from crossmodel_usage.domain.queries import (
    DAY_MS,
    RequestFilter,
    TimeRange,
    Totals,
    plan_totals,
)
from crossmodel_usage.domain.records import InvalidRecord, Status, UsageRecord, normalize
from crossmodel_usage.wire import record_from_event

MakeEvent = Callable[..., events_pb2.UsageEvent]


def _rec(make_event: MakeEvent, **fields: Any) -> UsageRecord:
    return normalize(record_from_event(make_event(**fields)))


async def _log_rows(engine: AsyncEngine, account: str) -> int:
    async with engine.connect() as conn:
        n = await conn.scalar(select(func.count()).where(request_log.c.account_id == account))
    return int(n or 0)


async def _daily_rows(engine: AsyncEngine, account: str) -> list[tuple[Any, ...]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(usage_daily).where(usage_daily.c.account_id == account).order_by(*usage_daily.primary_key)
        )
        return [tuple(r) for r in rows]


def _expected_totals(records: list[UsageRecord], span: TimeRange, key_id: str = "") -> Totals:
    chosen = [
        r
        for r in records
        if (span.from_ms is None or r.started_at_ms >= span.from_ms)
        and (span.to_ms is None or r.started_at_ms < span.to_ms)
        and (not key_id or r.key_id == key_id)
    ]
    return Totals(
        requests=len(chosen),
        input_tokens=sum(r.input_tokens for r in chosen),
        output_tokens=sum(r.output_tokens for r in chosen),
        cached_input_tokens=sum(r.cached_input_tokens for r in chosen),
        reasoning_tokens=sum(r.reasoning_tokens for r in chosen),
        cost_micros=sum(r.cost_micros for r in chosen),
        errors=sum(r.status is Status.FAILED for r in chosen),
    )


async def test_the_migrated_schema_is_exactly_the_tables_the_code_uses(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        diff = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), metadata))
    assert diff == []


async def test_a_request_is_stored_once_and_counted_once(
    repository: UsageRepository, engine: AsyncEngine, account: str, make_event: MakeEvent
) -> None:
    record = _rec(
        make_event, status=events_pb2.REQUEST_STATUS_FAILED, cached_input_tokens=40, reasoning_tokens=5
    )
    assert await repository.record(record) is True
    assert await repository.record(record) is False
    # A redelivery that differs (a replayed event from an older producer) changes nothing either.
    assert await repository.record(dataclasses.replace(record, input_tokens=999)) is False
    assert await _log_rows(engine, account) == 1
    assert await _daily_rows(engine, account) == [
        (account, record.day, "key_a", "openai/gpt-4o-mini", 1, 100, 20, 40, 0, 5, 27, 1)
    ]
    assert await repository.get_request(record.request_id) == record


async def test_a_batch_is_stored_as_its_records_would_be_one_by_one(
    repository: UsageRepository, engine: AsyncEngine, make_event: MakeEvent, day0_ms: int
) -> None:
    """The consumer's batch write: same log rows and aggregates as one record at a time, each
    request id once, whether it repeats inside the batch or was stored before."""
    rng = random.Random(11)
    one_by_one, batched = new_id("acct"), new_id("acct")

    def events(account: str) -> list[UsageRecord]:
        return [
            _rec(
                make_event,
                account_id=account,
                key_id=rng.choice(["key_a", "key_b"]),
                model=rng.choice(["m1", "m2", "m3"]),
                input_tokens=rng.randrange(1000),
                output_tokens=rng.randrange(1000),
                cached_input_tokens=rng.randrange(10),
                cache_write_tokens=rng.randrange(10),
                reasoning_tokens=rng.randrange(10),
                cost_micros=rng.randrange(10**6),
                status=rng.choice([events_pb2.REQUEST_STATUS_SUCCEEDED, events_pb2.REQUEST_STATUS_FAILED]),
                started_at_unix_ms=day0_ms + rng.randrange(3 * DAY_MS),
            )
            for _ in range(60)
        ]

    records = events(one_by_one)
    for r in records:
        assert await repository.record(r)
    # The same usage under the other account: stored in three overlapping batches, with repeats.
    twins = [dataclasses.replace(r, request_id=r.request_id + "b", account_id=batched) for r in records]
    assert await repository.record_many(twins[:25] + twins[:5]) == 25
    assert await repository.record_many(twins[20:50]) == 25
    assert await repository.record_many(twins) == 10
    assert await repository.record_many([]) == 0
    assert await _log_rows(engine, batched) == 60
    assert [r[1:] for r in await _daily_rows(engine, batched)] == [
        r[1:] for r in await _daily_rows(engine, one_by_one)
    ]
    for r in twins[::7]:
        assert await repository.get_request(r.request_id) == r


async def test_a_batch_the_database_refuses_stores_nothing(
    repository: UsageRepository, engine: AsyncEngine, account: str, make_event: MakeEvent
) -> None:
    first = _rec(make_event)
    assert await repository.record(first)
    # An aggregate one request away from bigint's limit: the next cost added to it overflows.
    async with engine.begin() as conn:
        await conn.execute(
            usage_daily.update().where(usage_daily.c.account_id == account).values(cost_micros=2**63 - 10)
        )
    other = new_id("acct")
    good = [_rec(make_event, account_id=other) for _ in range(3)]
    with pytest.raises(InvalidRecord, match="database refused the batch"):
        await repository.record_many([*good, _rec(make_event)])
    assert await _log_rows(engine, account) == 1
    assert await _log_rows(engine, other) == 0
    assert await repository.record_many(good) == 3
    with pytest.raises(InvalidRecord, match="database refused the record"):
        await repository.record(_rec(make_event))


async def test_concurrent_deliveries_of_one_request_count_once(
    repository: UsageRepository, engine: AsyncEngine, account: str, make_event: MakeEvent
) -> None:
    records = [_rec(make_event) for _ in range(5)]
    results = await asyncio.gather(*(repository.record(r) for r in records * 4))
    assert sorted(results) == [False] * 15 + [True] * 5
    assert await _log_rows(engine, account) == 5
    (row,) = await _daily_rows(engine, account)
    assert row[4:] == (5, 500, 100, 0, 0, 0, 135, 0)


async def test_every_field_of_the_event_survives_storage(repository: UsageRepository, account: str) -> None:
    event = events_pb2.UsageEvent()
    for i, fd in enumerate(event.DESCRIPTOR.fields, start=1):
        if fd.type == fd.TYPE_STRING:
            setattr(event, fd.name, f"{fd.name}-value")
        elif fd.type == fd.TYPE_BOOL:
            setattr(event, fd.name, True)
        elif fd.type == fd.TYPE_ENUM:
            setattr(event, fd.name, events_pb2.REQUEST_STATUS_CANCELLED)
        else:
            setattr(event, fd.name, 1000 + i)
    event.account_id = account
    event.started_at_unix_ms = 1_795_132_800_123
    event.finished_at_unix_ms = 1_795_132_801_456
    record = normalize(record_from_event(event))
    assert await repository.record(record)
    from crossmodel_usage.wire import event_from_record

    stored = await repository.get_request(event.request_id)
    assert stored is not None
    assert event_from_record(stored) == event


async def test_totals_match_a_sum_over_the_log_for_any_range(
    repository: UsageRepository, account: str, make_event: MakeEvent, day0_ms: int
) -> None:
    rng = random.Random(7)
    records = []
    for _ in range(120):
        records.append(
            _rec(
                make_event,
                key_id=rng.choice(["key_a", "key_b"]),
                model=rng.choice(["openai/gpt-4o-mini", "anthropic/claude-sonnet-4.6"]),
                status=rng.choice([1, 1, 1, 2, 3]),
                input_tokens=rng.randrange(0, 5000),
                output_tokens=rng.randrange(0, 900),
                cached_input_tokens=rng.randrange(0, 50),
                reasoning_tokens=rng.randrange(0, 50),
                cost_micros=rng.randrange(0, 10_000),
                # Around four days, with some exactly on midnight.
                started_at_unix_ms=day0_ms + rng.choice([0, rng.randrange(-DAY_MS, 3 * DAY_MS)]),
            )
        )
    for r in records:
        await repository.record(r)
    spans = [
        TimeRange(),
        TimeRange(day0_ms, day0_ms + DAY_MS),
        TimeRange(day0_ms - DAY_MS, day0_ms + 2 * DAY_MS),
        TimeRange(day0_ms + 1, None),
        TimeRange(None, day0_ms),
        TimeRange(None, day0_ms + 1),
        TimeRange(day0_ms + 5_000, day0_ms + 9_000_000),
    ] + [
        TimeRange(*sorted(rng.randrange(day0_ms - DAY_MS, day0_ms + 3 * DAY_MS) for _ in range(2)))
        for _ in range(15)
    ]
    for span in spans:
        for key_id in ("", "key_b"):
            got = await repository.totals(account, key_id, plan_totals(span))
            assert got == _expected_totals(records, span, key_id), (span, key_id)
    assert (await repository.totals(account, "", plan_totals(TimeRange()))).requests == 120
    assert await repository.totals("acct_nobody", "", plan_totals(TimeRange())) == Totals()


async def test_daily_usage_lists_each_day_key_and_model(
    repository: UsageRepository, account: str, make_event: MakeEvent, day0_ms: int
) -> None:
    for offset, key, model in [
        (0, "key_a", "m1"),
        (1, "key_a", "m1"),
        (2, "key_b", "m1"),
        (DAY_MS, "key_a", "m2"),
        (2 * DAY_MS, "key_a", "m1"),
    ]:
        await repository.record(
            _rec(make_event, started_at_unix_ms=day0_ms + offset, key_id=key, model=model)
        )
    rows = await repository.daily(account, "", None, None)
    assert [(r.day.isoformat(), r.key_id, r.model, r.totals.requests) for r in rows] == [
        ("2026-11-20", "key_a", "m1", 2),
        ("2026-11-20", "key_b", "m1", 1),
        ("2026-11-21", "key_a", "m2", 1),
        ("2026-11-22", "key_a", "m1", 1),
    ]
    from datetime import date

    rows = await repository.daily(account, "key_a", date(2026, 11, 21), date(2026, 11, 22))
    assert [(r.day.isoformat(), r.model, r.totals.input_tokens) for r in rows] == [
        ("2026-11-21", "m2", 100),
        ("2026-11-22", "m1", 100),
    ]


async def test_pages_walk_every_matching_request_once_newest_first(
    repository: UsageRepository, account: str, make_event: MakeEvent, day0_ms: int
) -> None:
    rng = random.Random(3)
    records = [
        # Many share a millisecond, so the request id must break ties.
        _rec(
            make_event,
            started_at_unix_ms=day0_ms + rng.randrange(0, 5),
            model=rng.choice(["m1", "m2"]),
            status=rng.choice([1, 2]),
        )
        for _ in range(53)
    ]
    for r in records:
        await repository.record(r)

    async def walk(f: RequestFilter, limit: int) -> list[UsageRecord]:
        seen: list[UsageRecord] = []
        after = None
        while True:
            page, after = await repository.list_requests(f, limit, after)
            assert len(page) <= limit
            seen.extend(page)
            if after is None:
                return seen

    newest_first = sorted(records, key=lambda r: (r.started_at_ms, r.request_id), reverse=True)
    for limit in (1, 7, 53, 100):
        assert await walk(RequestFilter(account_id=account), limit) == newest_first
    only_m2_failed = [r for r in newest_first if r.model == "m2" and r.status is Status.FAILED]
    assert (
        await walk(RequestFilter(account_id=account, model="m2", status=Status.FAILED), 4) == only_m2_failed
    )
    window = TimeRange(day0_ms + 1, day0_ms + 3)
    in_window = [r for r in newest_first if day0_ms + 1 <= r.started_at_ms < day0_ms + 3]
    assert await walk(RequestFilter(account_id=account, span=window), 5) == in_window
    target = records[17]
    assert await walk(RequestFilter(account_id=account, request_id=target.request_id), 10) == [target]
    assert await walk(RequestFilter(account_id="acct_other", request_id=target.request_id), 10) == []
