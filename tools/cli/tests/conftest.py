"""A real edge (uvicorn on a free port) with the admin API on, in front of the real auth, billing
and usage services running in-process on freshly migrated PostgreSQL databases and the real
Redis, plus a real broker for the edge's producer. The CLI runs against it in a worker thread
(it is synchronous) or as a subprocess."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
import uvicorn

from crossmodel_cli.__main__ import main
from crossmodel_common.ids import new_ulid
from crossmodel_devstack.backends import backends
from crossmodel_devstack.broker import TansuBroker, free_port
from crossmodel_edge.app import create_app
from crossmodel_edge.config import Settings as EdgeSettings
from crossmodel_usage.adapters.repository import UsageRepository


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
    async with backends("cm_cli") as services:
        token = "cm-admin-" + new_ulid()
        settings = EdgeSettings(
            auth_target=services.auth_target,
            # The admin API never calls the router; nothing listens here.
            router_target=f"127.0.0.1:{free_port()}",
            billing_target=services.billing_target,
            usage_target=services.usage_target,
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
            yield Edge(f"http://127.0.0.1:{settings.port}", token, services.usage)
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
