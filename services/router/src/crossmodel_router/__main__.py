"""`python -m crossmodel_router` serves RouterService. Wiring only: settings -> catalog and the
upstream client -> router -> servicer -> server."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import uvloop

from crossmodel.router.v1 import router_pb2, router_pb2_grpc
from crossmodel_common.config import load_settings
from crossmodel_common.grpcio import GrpcServer, wait_for_shutdown_signal
from crossmodel_common.logging import get_logger, setup_logging
from crossmodel_common.telemetry import setup_telemetry, shutdown_telemetry
from crossmodel_router.adapters.catalog_file import load_catalog
from crossmodel_router.adapters.http import HttpUpstream
from crossmodel_router.config import Settings
from crossmodel_router.domain.breaker import Breakers
from crossmodel_router.domain.catalog import CatalogError
from crossmodel_router.domain.codecs import INGRESS, PROVIDERS
from crossmodel_router.domain.route import RoutePolicy, Router
from crossmodel_router.server import RouterServicer

SERVICE_NAME = router_pb2.DESCRIPTOR.services_by_name["RouterService"].full_name

log = get_logger("crossmodel_router")


@dataclass
class Running:
    server: GrpcServer
    upstream: HttpUpstream
    router: Router

    async def stop(self) -> None:
        await self.server.stop()
        await self.upstream.close()


async def start(settings: Settings) -> Running:
    catalog = load_catalog(settings.catalog, os.environ)
    upstream = HttpUpstream(
        max_connections=settings.upstream_max_connections,
        connect_timeout=settings.upstream_connect_timeout_seconds,
        read_timeout=settings.upstream_read_timeout_seconds,
    )
    await upstream.start()
    router = Router(
        catalog,
        upstream,
        Breakers(
            failures=settings.breaker_failures,
            open_seconds=settings.breaker_open_seconds,
            clock=time.monotonic,
        ),
        ingress=INGRESS,
        providers=PROVIDERS,
        policy=RoutePolicy(
            max_attempts=settings.upstream_max_attempts,
            backoff_seconds=settings.retry_backoff_seconds,
            total_timeout_seconds=settings.upstream_total_timeout_seconds,
            usage_progress_seconds=settings.usage_progress_seconds,
            passthrough=settings.passthrough,
        ),
    )
    server = GrpcServer(settings.listen, [SERVICE_NAME], grace=settings.shutdown_grace_seconds)
    router_pb2_grpc.add_RouterServiceServicer_to_server(RouterServicer(router), server.server)
    await server.start()
    return Running(server, upstream, router)


async def serve(settings: Settings) -> None:
    running = await start(settings)
    log.info(
        "router serving",
        listen=settings.listen,
        port=running.server.port,
        models=len(running.router.catalog.models),
        providers={p.name: p.base_url for p in running.router.catalog.providers.values()},
    )
    await wait_for_shutdown_signal()
    log.info("router stopping")
    await running.stop()


def main() -> None:
    settings = load_settings(Settings, "router")
    setup_logging("router", settings.log_level)
    setup_telemetry("router")
    try:
        # uvloop: the loop's own work per gRPC call (callbacks, socket I/O) is a visible share
        # of this service's CPU on the request path (docs/performance.md).
        uvloop.run(serve(settings))
    except CatalogError as e:
        log.error("router cannot start: bad catalog", error=str(e))
        sys.exit(2)
    finally:
        shutdown_telemetry()


if __name__ == "__main__":
    main()
