"""One system per test session: real PostgreSQL, Redis and broker (found as `make run` finds
them), the simulator and the five services as processes, and an OTLP receiver they all export
to. See docs/development.md, "Integration tests"."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from crossmodel_devstack.harness import AccountKey, Harness

ROOT = Path(__file__).resolve().parents[2]
# Enough for hundreds of simulated requests at catalog prices.
CREDIT_MICROS = 50_000_000

_harness: Harness | None = None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[Any]:
    report = yield
    if report.failed and _harness is not None:
        report.sections.append(("service logs (tails)", _harness.log_tails()))
    return report


@pytest.fixture(scope="session")
async def harness() -> AsyncIterator[Harness]:
    global _harness
    _harness = await Harness.start(ROOT / ".crossmodel")
    try:
        yield _harness
    finally:
        await _harness.close()
        _harness = None


@pytest.fixture
async def account(harness: Harness, request: pytest.FixtureRequest) -> AccountKey:
    """A fresh funded account and key per test, so balances and totals are the test's own."""
    return await harness.new_account(f"it-{request.node.name}"[:60], credit_micros=CREDIT_MICROS)


@pytest.fixture
async def client(harness: Harness, account: AccountKey) -> AsyncIterator[openai.AsyncOpenAI]:
    # max_retries=0: a failure must show as a failure, not be hidden by the SDK's retries.
    async with openai.AsyncOpenAI(
        base_url=f"{harness.edge_url}/v1", api_key=account.api_key, max_retries=0, timeout=30
    ) as c:
        yield c


@pytest.fixture(scope="session")
async def model(harness: Harness) -> str:
    """An OpenAI model of the catalog: routed through the OpenAI adapter to the simulator."""
    models = await harness.models()
    openai_models = sorted(m for m in models if m.startswith("openai/"))
    assert openai_models, f"the catalog has no openai/* model: {sorted(models)}"
    return "openai/gpt-4o-mini" if "openai/gpt-4o-mini" in openai_models else openai_models[0]
