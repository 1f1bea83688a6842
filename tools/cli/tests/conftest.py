"""A real edge (uvicorn on a free port) with the admin API on, in front of the real auth, billing
and usage services running in-process on freshly migrated PostgreSQL databases and the real
Redis, plus a real broker for the edge's producer. The CLI runs against it in a worker thread
(it is synchronous) or as a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
import uvicorn
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
from crossmodel_cli.__main__ import main
from crossmodel_common.balance_state import BalanceState
from crossmodel_common.db import make_engine, run_migrations
from crossmodel_common.grpcio import GrpcServer
from crossmodel_common.ids import new_ulid
from crossmodel_devstack.broker import TansuBroker, free_port
from crossmodel_edge.app import create_app
from crossmodel_edge.config import Settings as EdgeSettings
from crossmodel_usage.__main__ import MIGRATIONS as USAGE_MIGRATIONS
from crossmodel_usage.adapters.repository import UsageRepository
from crossmodel_usage.server import SERVICE_NAME as USAGE_SERVICE
from crossmodel_usage.server import UsageServicer

PG_ADMIN = os.environ.get("CROSSMODEL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("CROSSMODEL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


async def _create_database(prefix: str, migrations: Path) -> tuple[str, str]:
    name = f"{prefix}_{new_ulid()}"
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    await asyncio.to_thread(run_migrations, migrations, url)
    return name, "postgresql+asyncpg://" + url.split("://", 1)[1]


async def _drop_database(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@dataclass
class Edge:
    url: str
    token: str
    usage: UsageRepository

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "CROSSMODEL_ADMIN_URL": self.url, "CROSSMODEL_ADMIN_TOKEN": self.token}


@pytest.fixture(scope="session")
def broker() -> Iterator[TansuBroker]:
    with TansuBroker() as b:
        yield b


@pytest.fixture(scope="session")
async def edge(broker: TansuBroker, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Edge]:
    async with contextlib.AsyncExitStack() as stack:
        urls: dict[str, str] = {}
        for service, migrations in (
            ("billing", BILLING_MIGRATIONS),
            ("auth", AUTH_MIGRATIONS),
            ("usage", USAGE_MIGRATIONS),
        ):
            name, urls[service] = await _create_database(f"cm_cli_{service}", migrations)
            stack.push_async_callback(_drop_database, name)

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

        auth = await start_auth(
            AuthSettings(
                listen="127.0.0.1:0",
                database_url=urls["auth"],
                redis_url=REDIS_URL,
                billing_target=f"127.0.0.1:{billing.port}",
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

        token = "cm-admin-" + new_ulid()
        settings = EdgeSettings(
            auth_target=f"127.0.0.1:{auth.server.port}",
            # The admin API never calls the router; nothing listens here.
            router_target=f"127.0.0.1:{free_port()}",
            billing_target=f"127.0.0.1:{billing.port}",
            usage_target=f"127.0.0.1:{usage.port}",
            kafka_bootstrap=broker.bootstrap,
            usage_topic="usage.v1.cli-tests",
            spool_dir=tmp_path_factory.mktemp("spool"),
            port=free_port(),
            admin_token=token,  # type: ignore[arg-type]  # pydantic turns it into a SecretStr
        )
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings),
                host="127.0.0.1",
                port=settings.port,
                lifespan="on",
                log_config=None,
                access_log=False,
            )
        )
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        try:
            yield Edge(f"http://127.0.0.1:{settings.port}", token, repository)
        finally:
            server.should_exit = True
            await task


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(edge: Edge, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("CROSSMODEL_ADMIN_URL", edge.url)
    monkeypatch.setenv("CROSSMODEL_ADMIN_TOKEN", edge.token)
    return CliRunner()


class CliRunner:
    """`crossmodel ARGS` in-process, off the event loop that serves the edge."""

    async def __call__(self, *argv: str) -> Result:
        out, err = io.StringIO(), io.StringIO()
        code = await asyncio.to_thread(main, list(argv), out, err)
        return Result(code, out.getvalue(), err.getvalue())
