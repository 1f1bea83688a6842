from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from aiohttp import web

from crossmodel.router.v1 import router_pb2_grpc
from crossmodel_common.grpcio import GrpcServer
from crossmodel_devstack.stack import PROVIDER_PATHS
from crossmodel_router.adapters.catalog_file import load_catalog
from crossmodel_router.adapters.http import HttpUpstream
from crossmodel_router.domain.breaker import Breakers
from crossmodel_router.domain.catalog import Catalog
from crossmodel_router.domain.codecs import INGRESS, PROVIDERS
from crossmodel_router.domain.route import RoutePolicy, Router
from crossmodel_router.server import RouterServicer
from crossmodel_simulator.app import create_app

RouterFactory = Callable[..., Awaitable[router_pb2_grpc.RouterServiceStub]]


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


@pytest.fixture(scope="session")
async def simulator_url() -> AsyncIterator[str]:
    runner, url = await _serve(create_app())
    yield url
    await runner.cleanup()


ServeApp = Callable[[web.Application], Awaitable[str]]


@pytest.fixture
async def serve_app() -> AsyncIterator[ServeApp]:
    """Serves aiohttp apps (stand-in upstreams) on free ports until the test ends."""
    runners: list[web.AppRunner] = []

    async def serve(app: web.Application) -> str:
        runner, url = await _serve(app)
        runners.append(runner)
        return url

    yield serve
    for runner in runners:
        await runner.cleanup()


def simulator_env(simulator_url: str) -> dict[str, str]:
    """Every packaged provider pointed at its simulator route, as the dev stack points them."""
    env = {f"CROSSMODEL_ROUTER_PROVIDER_{k}_BASE_URL": simulator_url + v for k, v in PROVIDER_PATHS.items()}
    env.update({f"CROSSMODEL_ROUTER_PROVIDER_{k}_API_KEY": "sk-sim" for k in PROVIDER_PATHS})
    return env


@pytest.fixture
def packaged_catalog(simulator_url: str) -> Catalog:
    return load_catalog("", simulator_env(simulator_url))


@pytest.fixture
async def start_router() -> AsyncIterator[RouterFactory]:
    """Starts a RouterService on a free port, in this process, with the real upstream client."""
    stack: list[tuple[GrpcServer, HttpUpstream, grpc.aio.Channel]] = []

    async def start(
        catalog: Catalog, *, read_timeout: float = 30.0, **policy: Any
    ) -> router_pb2_grpc.RouterServiceStub:
        upstream = HttpUpstream(max_connections=100, connect_timeout=2.0, read_timeout=read_timeout)
        await upstream.start()
        policy.setdefault("backoff_seconds", 0.0)
        router = Router(
            catalog,
            upstream,
            Breakers(failures=5, open_seconds=30, clock=time.monotonic),
            ingress=INGRESS,
            providers=PROVIDERS,
            policy=RoutePolicy(**policy),
        )
        server = GrpcServer("127.0.0.1:0", ["crossmodel.router.v1.RouterService"], grace=1.0)
        router_pb2_grpc.add_RouterServiceServicer_to_server(RouterServicer(router), server.server)
        await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        stack.append((server, upstream, channel))
        return router_pb2_grpc.RouterServiceStub(channel)

    yield start
    for server, upstream, channel in stack:
        await channel.close()
        await server.stop()
        await upstream.close()
