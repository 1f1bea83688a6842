"""Auth tests run against real PostgreSQL (a database created for this session and dropped after)
and the real Redis, with AuthService servers in-process on free ports."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import grpc
import pytest
from redis.asyncio import Redis

from crossmodel.auth.v1 import auth_pb2_grpc
from crossmodel.billing.v1 import billing_pb2_grpc
from crossmodel_auth.__main__ import MIGRATIONS, Running, start
from crossmodel_auth.config import Settings
from crossmodel_billing.__main__ import MIGRATIONS as BILLING_MIGRATIONS
from crossmodel_billing.adapters.postgres import PostgresLedger
from crossmodel_billing.adapters.wallet import RedisPublisher
from crossmodel_billing.domain.billing import Billing
from crossmodel_billing.server import SERVICE_NAME as BILLING_SERVICE
from crossmodel_billing.server import BillingServicer
from crossmodel_common.balance_state import BalanceState
from crossmodel_common.db import make_engine, run_migrations
from crossmodel_common.grpcio import GrpcServer
from crossmodel_common.ids import new_ulid

PG_ADMIN = os.environ.get("CROSSMODEL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("CROSSMODEL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    name = f"cm_auth_test_{new_ulid()}"
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


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
def wallet(redis: Redis) -> BalanceState:
    """Billing's side of the shared state, to fund accounts the way billing publishes them."""
    return BalanceState(redis)


def settings_for(database_url: str, *, billing_target: str = "127.0.0.1:9", **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "database_url": database_url,
        "redis_url": REDIS_URL,
        "billing_target": billing_target,
        "last_used_flush_seconds": 0.1,
        # The service's 0.5 s is for production; a test's burst of new connections on a busy
        # 2-core machine can take longer, and no test here waits for a Redis timeout.
        "redis_timeout_seconds": 5.0,
    }
    values.update(extra)
    return Settings(**values)


StartAuth = Callable[..., Awaitable[tuple[Running, auth_pb2_grpc.AuthServiceStub]]]


@pytest.fixture
async def start_auth(database_url: str) -> AsyncIterator[StartAuth]:
    started: list[tuple[Running, grpc.aio.Channel]] = []

    async def _start(**extra: Any) -> tuple[Running, auth_pb2_grpc.AuthServiceStub]:
        running = await start(settings_for(database_url, **extra))
        ch = grpc.aio.insecure_channel(f"127.0.0.1:{running.server.port}")
        started.append((running, ch))
        return running, auth_pb2_grpc.AuthServiceStub(ch)

    yield _start
    for running, ch in started:
        await ch.close()
        await running.stop()


@pytest.fixture
async def auth(start_auth: StartAuth) -> auth_pb2_grpc.AuthServiceStub:
    _, stub = await start_auth()
    return stub


@pytest.fixture
async def auth_pair(
    start_auth: StartAuth,
) -> tuple[auth_pb2_grpc.AuthServiceStub, auth_pb2_grpc.AuthServiceStub]:
    """Two replicas sharing PostgreSQL and Redis."""
    _, a = await start_auth()
    _, b = await start_auth()
    return a, b


@pytest.fixture(scope="session")
async def billing() -> AsyncIterator[tuple[str, Billing]]:
    """Billing's gRPC API on its own database (no consumer): the balance read-through target."""
    name = f"cm_auth_billing_test_{new_ulid()}"
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    await asyncio.to_thread(run_migrations, BILLING_MIGRATIONS, url)
    engine = make_engine(url)
    client = Redis.from_url(REDIS_URL)
    domain = Billing(PostgresLedger(engine), RedisPublisher(BalanceState(client)))
    server = GrpcServer("127.0.0.1:0", [BILLING_SERVICE], grace=1)
    billing_pb2_grpc.add_BillingServiceServicer_to_server(
        BillingServicer(domain, currency="USD"), server.server
    )
    await server.start()
    yield f"127.0.0.1:{server.port}", domain
    await server.stop()
    await client.aclose()
    await engine.dispose()
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
