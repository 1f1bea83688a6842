"""Billing tests run against real PostgreSQL (a database created for this session and dropped
after), the real Redis and a real Kafka-protocol broker (Tansu), with BillingService servers
in-process on free ports."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import grpc
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from redis.asyncio import Redis

from crossmodel.billing.v1 import billing_pb2_grpc
from crossmodel_billing.__main__ import MIGRATIONS, Running, start
from crossmodel_billing.config import Settings
from crossmodel_common.balance_state import BalanceState
from crossmodel_common.db import run_migrations
from crossmodel_common.ids import new_ulid
from crossmodel_devstack.broker import TansuBroker

PG_ADMIN = os.environ.get("CROSSMODEL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("CROSSMODEL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    name = f"cm_billing_test_{new_ulid()}"
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    await asyncio.to_thread(run_migrations, MIGRATIONS, url)
    yield "postgresql+asyncpg://" + url.split("://", 1)[1]
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def broker() -> Iterator[TansuBroker]:
    with TansuBroker() as b:
        yield b


@pytest.fixture
async def topics(broker: TansuBroker) -> tuple[str, str]:
    """A fresh usage topic and its dead-letter topic for one test."""
    suffix = new_ulid()
    usage, dlq = f"usage.v1.{suffix}", f"usage.v1.{suffix}.billing.dlq"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(usage, num_partitions=2, replication_factor=1), NewTopic(dlq, 1, 1)]
        )
    finally:
        await admin.close()
    return usage, dlq


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
def wallet(redis: Redis) -> BalanceState:
    """Auth's side of the shared state, to reserve the way admission does."""
    return BalanceState(redis)


StartBilling = Callable[..., Awaitable[tuple[Running, billing_pb2_grpc.BillingServiceStub]]]


@pytest.fixture
async def start_billing(
    database_url: str, broker: TansuBroker, topics: tuple[str, str]
) -> AsyncIterator[StartBilling]:
    started: list[tuple[Running, grpc.aio.Channel]] = []

    async def _start(**extra: Any) -> tuple[Running, billing_pb2_grpc.BillingServiceStub]:
        values: dict[str, Any] = {
            "listen": "127.0.0.1:0",
            "database_url": database_url,
            "redis_url": REDIS_URL,
            "kafka_bootstrap": broker.bootstrap,
            "usage_topic": topics[0],
            "dlq_topic": topics[1],
            "consumer_group": f"billing-{new_ulid()}",
        }
        values.update(extra)
        running = await start(Settings(**values))
        ch = grpc.aio.insecure_channel(f"127.0.0.1:{running.server.port}")
        started.append((running, ch))
        return running, billing_pb2_grpc.BillingServiceStub(ch)

    yield _start
    for running, ch in reversed(started):
        await ch.close()
        await running.stop()
