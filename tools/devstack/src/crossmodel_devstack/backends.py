"""Real backends for tests, on the test PostgreSQL server and Redis
(`CROSSMODEL_TEST_POSTGRES_URL`, an admin URL, and `CROSSMODEL_TEST_REDIS_URL`; else the usual
local ports): databases of their own, migrated and dropped on exit, and auth, billing and usage
in-process, wired as their mains wire them (billing without its consumer), for what an edge's
console and admin API, and the CLI through them, call.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from crossmodel.billing.v1 import billing_pb2_grpc
from crossmodel.usage.v1 import usage_pb2_grpc
from crossmodel_auth.__main__ import MIGRATIONS as AUTH_MIGRATIONS
from crossmodel_auth.__main__ import start as start_auth
from crossmodel_auth.config import Settings as AuthSettings
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
from crossmodel_devstack.infra import create_database, database_url, drop_database, sqlalchemy_url
from crossmodel_usage.__main__ import MIGRATIONS as USAGE_MIGRATIONS
from crossmodel_usage.adapters.repository import UsageRepository
from crossmodel_usage.server import SERVICE_NAME as USAGE_SERVICE
from crossmodel_usage.server import UsageServicer

PG_ADMIN = os.environ.get("CROSSMODEL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("CROSSMODEL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass
class Backends:
    auth_target: str
    billing_target: str
    usage_target: str
    usage: UsageRepository  # the usage service's own repository, for seeding the request log


@contextlib.asynccontextmanager
async def database(prefix: str, migrations: Path | None = None) -> AsyncIterator[str]:
    """A database of its own, `{prefix}_{ulid}`, on the test server, migrated when `migrations`
    is given, dropped on exit. Yields its SQLAlchemy URL (what the services' settings take)."""
    name = f"{prefix}_{new_ulid()}"
    await create_database(PG_ADMIN, name)
    try:
        url = database_url(PG_ADMIN, name)
        if migrations is not None:
            await asyncio.to_thread(run_migrations, migrations, url)
        yield sqlalchemy_url(url)
    finally:
        await drop_database(PG_ADMIN, name)


@contextlib.asynccontextmanager
async def backends(prefix: str, **auth_settings: Any) -> AsyncIterator[Backends]:
    """The three services on free ports; databases are named `{prefix}_{service}_{ulid}`.
    `auth_settings` go to auth's Settings on top of the listen address, database and targets."""
    async with contextlib.AsyncExitStack() as stack:
        urls: dict[str, str] = {}
        for service, migrations in (
            ("billing", BILLING_MIGRATIONS),
            ("auth", AUTH_MIGRATIONS),
            ("usage", USAGE_MIGRATIONS),
        ):
            urls[service] = await stack.enter_async_context(database(f"{prefix}_{service}", migrations))

        billing_engine = make_engine(urls["billing"])
        stack.push_async_callback(billing_engine.dispose)
        redis = Redis.from_url(REDIS_URL)
        stack.push_async_callback(redis.aclose)
        billing = GrpcServer("127.0.0.1:0", [BILLING_SERVICE], grace=0.5)
        billing_pb2_grpc.add_BillingServiceServicer_to_server(
            BillingServicer(
                Billing(PostgresLedger(billing_engine), RedisPublisher(BalanceState(redis))), currency="USD"
            ),
            billing.server,
        )
        await billing.start()
        stack.push_async_callback(billing.stop)
        billing_target = f"127.0.0.1:{billing.port}"

        auth = await start_auth(
            AuthSettings(
                listen="127.0.0.1:0",
                database_url=urls["auth"],
                redis_url=REDIS_URL,
                billing_target=billing_target,
                **auth_settings,
            )
        )
        stack.push_async_callback(auth.stop)

        usage_engine = make_engine(urls["usage"])
        stack.push_async_callback(usage_engine.dispose)
        repository = UsageRepository(usage_engine)
        usage = GrpcServer("127.0.0.1:0", [USAGE_SERVICE], grace=0.5)
        usage_pb2_grpc.add_UsageServiceServicer_to_server(UsageServicer(repository), usage.server)
        await usage.start()
        stack.push_async_callback(usage.stop)

        yield Backends(f"127.0.0.1:{auth.server.port}", billing_target, f"127.0.0.1:{usage.port}", repository)
