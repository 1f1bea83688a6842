"""`python -m crossmodel_usage` serves gRPC and consumes usage events;
`python -m crossmodel_usage migrate` applies the database migrations and exits."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

import uvloop

from crossmodel.usage.v1 import usage_pb2_grpc
from crossmodel_common.config import load_settings
from crossmodel_common.db import run_migrations
from crossmodel_common.grpcio import GrpcServer, wait_for_shutdown_signal
from crossmodel_common.logging import get_logger, setup_logging
from crossmodel_common.telemetry import setup_telemetry, shutdown_telemetry
from crossmodel_usage.adapters.database import open_engine
from crossmodel_usage.adapters.repository import UsageRepository
from crossmodel_usage.config import Settings
from crossmodel_usage.consumer import make_consumer, start_when_reachable
from crossmodel_usage.server import SERVICE_NAME, UsageServicer

MIGRATIONS = Path(__file__).parent / "migrations"
log = get_logger("crossmodel_usage")


async def serve(settings: Settings) -> None:
    # Listen for SIGTERM before anything slow starts, so an early stop is still graceful.
    shutdown = asyncio.ensure_future(wait_for_shutdown_signal())
    await asyncio.sleep(0)
    setup_telemetry("usage")
    engine = open_engine(settings.database_url)
    repository = UsageRepository(engine)
    server = GrpcServer(settings.listen, [SERVICE_NAME], grace=settings.shutdown_grace_seconds)
    usage_pb2_grpc.add_UsageServiceServicer_to_server(UsageServicer(repository), server.server)
    consumer = make_consumer(settings.kafka_bootstrap, settings.usage_topic, settings.dlq_topic, repository)
    starting = asyncio.create_task(start_when_reachable(consumer))
    try:
        await server.start()
        log.info(
            "usage service started", listen=settings.listen, port=server.port, topic=settings.usage_topic
        )
        await shutdown
    finally:
        log.info("usage service stopping")
        await server.health.enter_graceful_shutdown()
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        try:
            await consumer.stop()
        except Exception:  # whatever ended the consumer, the server still drains
            log.exception("consumer ended with an error")
        await server.stop()
        await engine.dispose()
        shutdown_telemetry()


def main() -> None:
    settings = load_settings(Settings, "usage")
    setup_logging("usage", settings.log_level)
    if sys.argv[1:] == ["migrate"]:
        run_migrations(MIGRATIONS, settings.database_url)
        log.info("usage database migrated")
        return
    if sys.argv[1:]:
        sys.exit(
            f"usage: python -m crossmodel_usage [migrate]  (unknown arguments: {' '.join(sys.argv[1:])})"
        )
    # uvloop, as in every service: this consumer's per-event work is mostly the loop's own
    # (Kafka fetches, PostgreSQL round trips); docs/performance.md.
    uvloop.run(serve(settings))


if __name__ == "__main__":
    main()
