"""The console over real HTTP, against the real auth, billing and usage services in-process
(their own servicers and domain code on freshly migrated PostgreSQL databases and the real
Redis), a router answering ListModels, and a real broker for the edge's producer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import httpx
import pytest
from redis.asyncio import Redis

from crossmodel.auth.v1 import auth_pb2_grpc
from crossmodel.billing.v1 import billing_pb2_grpc
from crossmodel.router.v1 import router_pb2_grpc
from crossmodel.usage.v1 import usage_pb2_grpc
from crossmodel_auth.__main__ import MIGRATIONS as AUTH_MIGRATIONS
from crossmodel_auth.__main__ import Running as AuthRunning
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
from crossmodel_devstack.broker import TansuBroker, free_port
from crossmodel_edge.config import Settings
from crossmodel_usage.__main__ import MIGRATIONS as USAGE_MIGRATIONS
from crossmodel_usage.adapters.repository import UsageRepository
from crossmodel_usage.server import SERVICE_NAME as USAGE_SERVICE
from crossmodel_usage.server import UsageServicer

from ..conftest import FakeRouter, RunningEdge, serve

PG_ADMIN = os.environ.get("CROSSMODEL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("CROSSMODEL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
WEBHOOK_SECRET = "whsec_" + new_ulid()
PASSWORD = "a long enough password"
SIGNIN_PER_EMAIL = 4
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_ATTEMPT = re.compile(r'name="attempt_id" value="([^"]+)"')


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
class Services:
    auth_target: str
    billing_target: str
    usage_target: str
    router_target: str
    usage: UsageRepository
    auth_database_url: str

    def auth(self) -> auth_pb2_grpc.AuthServiceAsyncStub:
        return auth_pb2_grpc.AuthServiceStub(grpc.aio.insecure_channel(self.auth_target))


@pytest.fixture(scope="module")
async def services() -> AsyncIterator[Services]:
    async with contextlib.AsyncExitStack() as stack:
        urls: dict[str, str] = {}
        for service, migrations in (
            ("billing", BILLING_MIGRATIONS),
            ("auth", AUTH_MIGRATIONS),
            ("usage", USAGE_MIGRATIONS),
        ):
            name, urls[service] = await _create_database(f"cm_edge_console_{service}", migrations)
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
        billing_target = f"127.0.0.1:{billing.port}"

        auth: AuthRunning = await start_auth(
            AuthSettings(
                listen="127.0.0.1:0",
                database_url=urls["auth"],
                redis_url=REDIS_URL,
                billing_target=billing_target,
                last_used_flush_seconds=0.1,
                console_signin_per_email=SIGNIN_PER_EMAIL,
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

        router = GrpcServer("127.0.0.1:0", ["crossmodel.router.v1.RouterService"], grace=0.5)
        router_pb2_grpc.add_RouterServiceServicer_to_server(FakeRouter(), router.server)
        await router.start()
        stack.push_async_callback(router.stop)

        yield Services(
            f"127.0.0.1:{auth.server.port}",
            billing_target,
            f"127.0.0.1:{usage.port}",
            f"127.0.0.1:{router.port}",
            repository,
            urls["auth"],
        )


@pytest.fixture(scope="module")
def broker() -> Any:
    with TansuBroker() as b:
        yield b


def console_settings(services: Services, broker: TansuBroker, spool: Path, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "auth_target": services.auth_target,
        "router_target": services.router_target,
        "billing_target": services.billing_target,
        "usage_target": services.usage_target,
        "kafka_bootstrap": broker.bootstrap,
        "usage_topic": "usage.v1.edge-console-tests",
        "spool_dir": spool,
        "port": free_port(),
        "console_dev_payments": True,
        "payments_webhook_secret": WEBHOOK_SECRET,
    }
    values.update(extra)
    return Settings(**values)


@pytest.fixture(scope="module")
async def edge(
    services: Services, broker: TansuBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningEdge]:
    async with serve(console_settings(services, broker, tmp_path_factory.mktemp("spool"))) as running:
        yield running


def client_ip() -> str:
    """A fresh address from the IPv6 documentation range."""
    return "2001:db8::" + ":".join(f"{int.from_bytes(os.urandom(2), 'big'):x}" for _ in range(4))


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no csrf_token field on the page"
    return found.group(1)


def attempt_of(html: str) -> str:
    found = _ATTEMPT.search(html)
    assert found, "no attempt_id field on the page"
    return found.group(1)


@dataclass
class Browser:
    """An httpx client that behaves like a browser on the console: keeps cookies, follows no
    redirects by itself, and reads the CSRF token from the last page it loaded."""

    client: httpx.AsyncClient
    email: str = ""
    csrf: str = ""

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        resp = await self.client.get(path, **kw)
        if 'name="csrf_token"' in resp.text:
            self.csrf = csrf_of(resp.text)
        return resp

    async def post(
        self, path: str, data: dict[str, str] | None = None, *, csrf: bool = True
    ) -> httpx.Response:
        form = dict(data or {})
        if csrf:
            form.setdefault("csrf_token", self.csrf)
        return await self.client.post(path, data=form)


@pytest.fixture
async def new_browser(edge: RunningEdge) -> AsyncIterator[Callable[[], httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []

    def make() -> httpx.AsyncClient:
        # Each browser its own address (uvicorn takes X-Forwarded-For from loopback proxies), so
        # the per-address sign-in limits in the shared Redis are this browser's alone.
        c = httpx.AsyncClient(
            base_url=edge.url, timeout=30, follow_redirects=False, headers={"x-forwarded-for": client_ip()}
        )
        clients.append(c)
        return c

    yield make
    for c in clients:
        await c.aclose()


async def sign_up(client: httpx.AsyncClient, email: str | None = None, name: str = "Acme") -> Browser:
    browser = Browser(client, email or f"user-{new_ulid()}@example.com")
    page = await browser.get("/console/signup")
    assert page.status_code == 200
    resp = await browser.post(
        "/console/signup",
        {"email": browser.email, "password": PASSWORD, "password_again": PASSWORD, "account_name": name},
    )
    assert resp.status_code == 303, resp.text
    assert resp.headers["location"] == "/console/keys?done=welcome"
    keys = await browser.get("/console/keys")
    assert keys.status_code == 200
    return browser


@pytest.fixture
async def alice(new_browser: Callable[[], httpx.AsyncClient]) -> Browser:
    return await sign_up(new_browser(), name="Alice Inc")


@pytest.fixture
async def bob(new_browser: Callable[[], httpx.AsyncClient]) -> Browser:
    return await sign_up(new_browser(), name="Bob LLC")
