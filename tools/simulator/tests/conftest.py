from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from crossmodel_simulator.app import create_app


@pytest.fixture(scope="session")
async def simulator_url() -> AsyncIterator[str]:
    runner = web.AppRunner(create_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}"
    await runner.cleanup()
