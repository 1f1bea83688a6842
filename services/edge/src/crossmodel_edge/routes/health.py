"""Probes: /healthz (the process answers) and /readyz (auth and the router answer)."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Response

from crossmodel_edge.relay import RawResponse
from crossmodel_edge.routes.deps import EdgeDep

router = APIRouter(tags=["health"])
_JSON = [("content-type", "application/json"), ("cache-control", "no-store")]


@router.get("/healthz", summary="Liveness", response_class=Response)
async def healthz() -> Response:
    return RawResponse(b'{"status":"ok"}', 200, _JSON)


@router.get(
    "/readyz", summary="Readiness: auth and router reachable, model catalog loaded", response_class=Response
)
async def readyz(edge: EdgeDep) -> Response:
    checks = await edge.backends.readiness()
    checks["catalog"] = edge.catalog.loaded
    ready = all(checks.values())
    body = {
        "status": "ready" if ready else "not_ready",
        "checks": checks,
        # Informational: events wait in the spool while Kafka is away; that never blocks requests.
        "spooled_event_segments": edge.producer.pending_segments,
    }
    return RawResponse(orjson.dumps(body), 200 if ready else 503, _JSON)
