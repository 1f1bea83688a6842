"""Real PostgreSQL (a database of its own per session, migrated, dropped after) and a real broker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from crossmodel.events.v1 import usage_event_pb2 as events_pb2
from crossmodel_common.db import make_engine
from crossmodel_common.ids import new_id, new_request_id
from crossmodel_devstack.backends import database
from crossmodel_devstack.broker import TansuBroker
from crossmodel_usage.__main__ import MIGRATIONS
from crossmodel_usage.adapters.repository import UsageRepository


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    async with database("crossmodel_usage_test", MIGRATIONS) as url:
        yield url


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


@pytest.fixture
def day0_ms() -> int:
    return DAY0_MS


@pytest.fixture
async def empty_database() -> AsyncIterator[str]:
    """A new, unmigrated database of its own, dropped after the test."""
    async with database("crossmodel_usage_test_empty") as url:
        yield url
