"""Billing tests run against real PostgreSQL (a database created for this session and dropped
after), the real Redis and a real Kafka-protocol broker (Tansu), with BillingService servers
in-process on free ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from redis.asyncio import Redis

from crossmodel.billing.v1 import billing_pb2_grpc
from crossmodel_billing.__main__ import MIGRATIONS, Running, start
from crossmodel_billing.config import Settings
from crossmodel_common.balance_state import BalanceState
from crossmodel_common.ids import new_ulid
from crossmodel_devstack.backends import REDIS_URL, database
from crossmodel_devstack.broker import TansuBroker


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    async with database("cm_billing_test", MIGRATIONS) as url:
        yield url


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
