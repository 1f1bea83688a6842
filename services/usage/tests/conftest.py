"""Real PostgreSQL (a database of its own per session, migrated, dropped after) and a real broker."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from crossmodel.events.v1 import usage_event_pb2 as events_pb2
from crossmodel_common.db import make_engine, run_migrations
from crossmodel_common.ids import new_id, new_request_id
from crossmodel_devstack.broker import TansuBroker
from crossmodel_usage.adapters.repository import UsageRepository

MIGRATIONS = Path(__file__).resolve().parents[1] / "src" / "crossmodel_usage" / "migrations"
SERVER_URL = os.environ.get("CROSSMODEL_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432")


def _admin_engine() -> AsyncEngine:
    return create_async_engine(f"{SERVER_URL}/postgres", isolation_level="AUTOCOMMIT")


async def create_database(prefix: str = "crossmodel_usage_test") -> str:
    name = f"{prefix}_{secrets.token_hex(6)}"
    admin = _admin_engine()
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()
    return name


async def drop_database(name: str) -> None:
    admin = _admin_engine()
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    name = await create_database()
    url = f"{SERVER_URL}/{name}"
    try:
        await asyncio.to_thread(run_migrations, MIGRATIONS, url)
        yield url
    finally:
        await drop_database(name)


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(database_url, pool_size=5)
    yield eng
    await eng.dispose()


@pytest.fixture(scope="session")
def repository(engine: AsyncEngine) -> UsageRepository:
    return UsageRepository(engine)


@pytest.fixture(scope="session")
def broker() -> Iterator[TansuBroker]:
    with TansuBroker() as b:
        yield b


@pytest.fixture
def account() -> str:
    """A fresh account per test, so tests sharing the database never see each other's rows."""
    return new_id("acct")


# 2026-11-20T00:00:00Z, a fixed day so that tests can reason about day boundaries.
DAY0_MS = 1_795_132_800_000


@pytest.fixture
def make_event(account: str) -> Callable[..., events_pb2.UsageEvent]:
    def make(**fields: Any) -> events_pb2.UsageEvent:
        values: dict[str, Any] = {
            "request_id": new_request_id(),
            "account_id": account,
            "key_id": "key_a",
            "key_name": "default",
            "model": "openai/gpt-4o-mini",
            "provider": "openai",
            "deployment": "openai-main",
            "upstream_model": "gpt-4o-mini",
            "protocol": "openai.chat",
            "status": events_pb2.REQUEST_STATUS_SUCCEEDED,
            "http_status": 200,
            "input_tokens": 100,
            "output_tokens": 20,
            "cost_micros": 27,
            "started_at_unix_ms": DAY0_MS + 3_600_000,
            "finished_at_unix_ms": DAY0_MS + 3_601_000,
            "latency_ms": 1000,
        }
        values.update(fields)
        return events_pb2.UsageEvent(**values)

    return make


async def eventually(condition: Callable[[], Any], timeout: float = 30.0) -> None:
    """Poll `condition` (sync or async) until it is truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@pytest.fixture
def poll() -> Callable[..., Any]:
    return eventually


@pytest.fixture
def day0_ms() -> int:
    return DAY0_MS


@pytest.fixture
async def empty_database() -> AsyncIterator[str]:
    """A new, unmigrated database of its own, dropped after the test."""
    name = await create_database("crossmodel_usage_test_empty")
    try:
        yield f"{SERVER_URL}/{name}"
    finally:
        await drop_database(name)
