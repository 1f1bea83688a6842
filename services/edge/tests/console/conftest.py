"""The console over real HTTP, against the real auth, billing and usage services in-process
(their own servicers and domain code on freshly migrated PostgreSQL databases and the real
Redis), a router answering ListModels, and a real broker for the edge's producer."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from crossmodel.auth.v1 import auth_pb2_grpc
from crossmodel.router.v1 import router_pb2_grpc
from crossmodel_common.grpcio import GrpcServer
from crossmodel_common.ids import new_ulid
from crossmodel_devstack.backends import Backends, backends
from crossmodel_devstack.broker import TansuBroker, free_port
from crossmodel_edge.config import Settings

from ..conftest import FakeRouter, RunningEdge, serve

WEBHOOK_SECRET = "whsec_" + new_ulid()
PASSWORD = "a long enough password"
SIGNIN_PER_EMAIL = 4
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_ATTEMPT = re.compile(r'name="attempt_id" value="([^"]+)"')


@dataclass
class Services(Backends):
    router_target: str

    def auth(self) -> auth_pb2_grpc.AuthServiceAsyncStub:
        return auth_pb2_grpc.AuthServiceStub(grpc.aio.insecure_channel(self.auth_target))


@pytest.fixture(scope="module")
async def services() -> AsyncIterator[Services]:
    async with backends(
        "cm_edge_console", last_used_flush_seconds=0.1, console_signin_per_email=SIGNIN_PER_EMAIL
    ) as running:
        router = GrpcServer("127.0.0.1:0", ["crossmodel.router.v1.RouterService"], grace=0.5)
        router_pb2_grpc.add_RouterServiceServicer_to_server(FakeRouter(), router.server)
        await router.start()
        try:
            yield Services(
                running.auth_target,
                running.billing_target,
                running.usage_target,
                running.usage,
                f"127.0.0.1:{router.port}",
            )
        finally:
            await router.stop()


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
