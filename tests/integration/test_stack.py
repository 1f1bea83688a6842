"""Every process of the table runs and answers its readiness probe, on the ports it was given."""

from __future__ import annotations

import pytest

from crossmodel_devstack.harness import Harness
from crossmodel_devstack.stack import SERVICES, ServiceSpec, probe


@pytest.mark.parametrize("spec", SERVICES, ids=lambda s: s.name)
async def test_service_is_up_and_ready(harness: Harness, spec: ServiceSpec) -> None:
    proc = harness.stack.processes[spec.name]
    assert proc.running, proc.tail()
    assert await probe(spec.probe, "127.0.0.1", harness.stack.config.ports[spec.name]) == ""


async def test_edge_liveness(harness: Harness) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=harness.edge_url, timeout=5) as http:
        resp = await http.get("/healthz")
    assert resp.status_code == 200
    assert resp.headers["x-request-id"]
