"""`python -m crossmodel_billing` serves BillingService and consumes usage events;
`python -m crossmodel_billing migrate` applies the database migrations and exits.
Wiring only: settings -> adapters -> servicer and consumer -> server."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

import uvloop
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from redis.asyncio import BlockingConnectionPool, Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from crossmodel.billing.v1 import billing_pb2_grpc
from crossmodel_billing.adapters.postgres import PostgresLedger
from crossmodel_billing.adapters.wallet import RedisPublisher
from crossmodel_billing.config import Settings
from crossmodel_billing.consumer import ChargeBatch, make_consumer
from crossmodel_billing.domain.billing import Billing
from crossmodel_billing.server import SERVICE_NAME, BillingServicer
from crossmodel_common.balance_state import BalanceState
from crossmodel_common.config import load_settings
from crossmodel_common.db import make_engine, run_migrations
from crossmodel_common.grpcio import GrpcServer, wait_for_shutdown_signal
from crossmodel_common.kafka import IdempotentConsumer
from crossmodel_common.logging import get_logger, setup_logging
from crossmodel_common.telemetry import setup_telemetry, shutdown_telemetry

MIGRATIONS = Path(__file__).parent / "migrations"

log = get_logger("crossmodel_billing")


@dataclass
class Running:
    server: GrpcServer
    consumer: IdempotentConsumer
    charges: ChargeBatch
    engine: AsyncEngine
    redis: Redis
    billing: Billing
    republish: asyncio.Task[None] = field(init=False)

    async def stop(self) -> None:
        await self.server.health.enter_graceful_shutdown()
        self.republish.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.republish
        await self.consumer.stop()
        await self.server.stop()
        await self.redis.aclose()
        await self.engine.dispose()


async def _republish(billing: Billing) -> None:
    # After the server is up, since auth's fallback for a missing balance asks GetBalance.
    while True:
        try:
            count = await billing.publish_all()
        except Exception as exc:  # noqa: BLE001 - Redis or the database not there yet: try again
            log.warning("could not publish balances, retrying", error=repr(exc))
            await asyncio.sleep(2)
            continue
        log.info("balances published", accounts=count)
        return


async def start(settings: Settings) -> Running:
    engine = make_engine(settings.database_url, pool_size=settings.db_pool_size)
    redis = Redis.from_pool(
        BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=settings.redis_max_connections,
            timeout=settings.redis_timeout_seconds,
            socket_timeout=settings.redis_timeout_seconds,
            socket_connect_timeout=settings.redis_timeout_seconds,
        )
    )
    billing = Billing(PostgresLedger(engine), RedisPublisher(BalanceState(redis)))
    server = GrpcServer(settings.listen, [SERVICE_NAME], grace=settings.shutdown_grace_seconds)
    billing_pb2_grpc.add_BillingServiceServicer_to_server(
        BillingServicer(billing, currency=settings.currency), server.server
    )
    charges = ChargeBatch(billing)
    consumer = make_consumer(
        settings.kafka_bootstrap,
        settings.usage_topic,
        settings.dlq_topic,
        charges,
        group=settings.consumer_group,
    )
    await server.start()
    running = Running(server, consumer, charges, engine, redis, billing)
    running.republish = asyncio.create_task(_republish(billing), name="publish-balances")
    await consumer.start()
    return running


async def serve(settings: Settings) -> None:
    # Listen for SIGTERM before anything slow starts, so an early stop is still graceful.
    shutdown = asyncio.ensure_future(wait_for_shutdown_signal())
    await asyncio.sleep(0)
    running = await start(settings)
    SQLAlchemyInstrumentor().instrument(engine=running.engine.sync_engine, enable_commenter=False)
    log.info("billing serving", listen=settings.listen, port=running.server.port, topic=settings.usage_topic)
    try:
        await shutdown
    finally:
        log.info("billing stopping")
        await running.stop()


def main() -> None:
    settings = load_settings(Settings, "billing")
    setup_logging("billing", settings.log_level)
    if sys.argv[1:] == ["migrate"]:
        run_migrations(MIGRATIONS, settings.database_url)
        log.info("billing database migrated")
        return
    if sys.argv[1:]:
        sys.exit(
            f"usage: python -m crossmodel_billing [migrate]  (unknown arguments: {' '.join(sys.argv[1:])})"
        )
    setup_telemetry("billing")
    RedisInstrumentor().instrument()
    try:
        # uvloop, as in every service: this consumer's per-event work is mostly the loop's own
        # (Kafka fetches, PostgreSQL and Redis round trips); docs/performance.md.
        uvloop.run(serve(settings))
    finally:
        shutdown_telemetry()


if __name__ == "__main__":
    main()
