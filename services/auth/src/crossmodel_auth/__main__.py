"""`python -m crossmodel_auth` serves AuthService; `python -m crossmodel_auth migrate` applies the
database migrations and exits. Wiring only: settings -> adapters -> servicer -> server."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path

import grpc
import uvloop
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from redis.asyncio import BlockingConnectionPool, Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from crossmodel.auth.v1 import auth_pb2, auth_pb2_grpc
from crossmodel_auth.adapters.attempts import RedisAttempts
from crossmodel_auth.adapters.billing import BillingBalances
from crossmodel_auth.adapters.console_postgres import ConsolePostgres
from crossmodel_auth.adapters.idempotency import RedisIdempotency
from crossmodel_auth.adapters.last_used import LastUsedRecorder
from crossmodel_auth.adapters.passwords import Argon2Passwords
from crossmodel_auth.adapters.postgres import PostgresRepository
from crossmodel_auth.adapters.wallet import RedisWallet
from crossmodel_auth.config import Settings
from crossmodel_auth.console_server import ConsoleAuthServicer
from crossmodel_auth.domain.admission import Admission
from crossmodel_auth.domain.console import ConsolePolicy, ConsoleUsers
from crossmodel_auth.domain.directory import Directory
from crossmodel_auth.domain.keycache import KeyCache
from crossmodel_common.config import load_settings
from crossmodel_common.db import make_engine, run_migrations
from crossmodel_common.grpcio import GrpcServer, channel, wait_for_shutdown_signal
from crossmodel_common.logging import get_logger, setup_logging
from crossmodel_common.resp import PipelinedRedis
from crossmodel_common.telemetry import setup_telemetry, shutdown_telemetry

MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE_NAME = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name

log = get_logger("crossmodel_auth")


@dataclass
class Running:
    server: GrpcServer
    engine: AsyncEngine
    redis: Redis
    pipelined: PipelinedRedis
    recorder: LastUsedRecorder
    billing: grpc.aio.Channel
    admission: Admission

    async def stop(self) -> None:
        await self.server.health.enter_graceful_shutdown()
        await self.server.stop()
        await self.recorder.stop()
        await self.billing.close()
        await self.redis.aclose()
        await self.pipelined.aclose()
        await self.engine.dispose()


def console_policy(settings: Settings) -> ConsolePolicy:
    return ConsolePolicy(
        session_ttl_ms=int(settings.console_session_ttl_seconds * 1000),
        signin_per_email=settings.console_signin_per_email,
        signin_per_ip=settings.console_signin_per_ip,
        signin_window_ms=int(settings.console_signin_window_seconds * 1000),
        signup_per_ip=settings.console_signup_per_ip,
        signup_window_ms=int(settings.console_signup_window_seconds * 1000),
    )


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
    # Admission's script, once per request, on its own pipelined connection (docs/performance.md).
    pipelined = PipelinedRedis(settings.redis_url, timeout=settings.redis_timeout_seconds)
    repo = PostgresRepository(engine)
    wallet = RedisWallet(
        redis, reservation_ttl_ms=int(settings.reservation_ttl_seconds * 1000), pipelined=pipelined
    )
    billing_channel = channel(settings.billing_target, timeout=settings.billing_timeout_seconds)
    recorder = LastUsedRecorder(repo, interval_seconds=settings.last_used_flush_seconds)
    admission = Admission(
        KeyCache(repo.key_by_hash, ttl_seconds=settings.key_cache_ttl_seconds),
        repo,
        wallet,
        BillingBalances(billing_channel, timeout=settings.billing_timeout_seconds),
        recorder,
        idempotency=RedisIdempotency(
            redis,
            in_progress_ttl_ms=int(settings.reservation_ttl_seconds * 1000),
            done_ttl_ms=int(settings.idempotency_ttl_seconds * 1000),
        ),
    )
    server = GrpcServer(settings.listen, [SERVICE_NAME], grace=settings.shutdown_grace_seconds)
    console = ConsoleUsers(
        ConsolePostgres(engine), Argon2Passwords(), RedisAttempts(redis), console_policy(settings)
    )
    auth_pb2_grpc.add_AuthServiceServicer_to_server(
        ConsoleAuthServicer(admission, Directory(repo, wallet), console), server.server
    )
    recorder.start()
    await server.start()
    return Running(server, engine, redis, pipelined, recorder, billing_channel, admission)


async def serve(settings: Settings) -> None:
    # Listen for SIGTERM before anything slow starts, so an early stop is still graceful.
    shutdown = asyncio.ensure_future(wait_for_shutdown_signal())
    await asyncio.sleep(0)
    running = await start(settings)
    SQLAlchemyInstrumentor().instrument(engine=running.engine.sync_engine, enable_commenter=False)
    log.info("auth serving", listen=settings.listen, port=running.server.port)
    try:
        await shutdown
    finally:
        log.info("auth stopping")
        await running.stop()


def main() -> None:
    settings = load_settings(Settings, "auth")
    setup_logging("auth", settings.log_level)
    if sys.argv[1:] == ["migrate"]:
        run_migrations(MIGRATIONS, settings.database_url)
        log.info("auth database migrated")
        return
    if sys.argv[1:]:
        sys.exit(f"usage: python -m crossmodel_auth [migrate]  (unknown arguments: {' '.join(sys.argv[1:])})")
    setup_telemetry("auth")
    RedisInstrumentor().instrument()
    try:
        # uvloop: the loop's own work per gRPC call (callbacks, socket I/O) is a visible share
        # of this service's CPU on the request path (docs/performance.md).
        uvloop.run(serve(settings))
    finally:
        shutdown_telemetry()


if __name__ == "__main__":
    main()
