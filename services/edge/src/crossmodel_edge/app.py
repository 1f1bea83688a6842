"""The FastAPI application: routers, the request middleware, protocol-shaped errors for what
FastAPI itself refuses, and the lifespan that owns the long-lived parts.

Later API surfaces plug in as routers: /v1/responses and /v1/messages(/count_tokens) next to
chat completions in routes/inference.py, /admin/v1 and the console as their own routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from crossmodel_edge.config import Settings
from crossmodel_edge.console import router as console_router
from crossmodel_edge.middleware import DirectRoute, EdgeMiddleware, protocol_for_path, request_info
from crossmodel_edge.relay import error_response
from crossmodel_edge.routes import account, admin, catalog, health, inference
from crossmodel_edge.runtime import Edge
from crossmodel_protocols.canonical import Protocol
from crossmodel_protocols.errors import ApiError, ErrorType


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    info = request_info(request.scope)
    protocol = protocol_for_path(request.url.path)
    if "anthropic-version" in request.headers:
        # Only Anthropic's clients send it, and they read errors in Anthropic's shape.
        protocol = Protocol.ANTHROPIC_MESSAGES
    if exc.status_code == 404:
        err = ApiError(ErrorType.NOT_FOUND, f"Invalid URL ({request.method} {request.url.path}).")
    elif exc.status_code == 405:
        err = ApiError(
            ErrorType.INVALID_REQUEST, f"Method {request.method} is not allowed on {request.url.path}."
        )
    else:
        err = ApiError(ErrorType.INVALID_REQUEST, str(exc.detail))
    response = error_response(err, protocol, info)
    response.status_code = exc.status_code
    return response


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")]
    err = ApiError(
        ErrorType.INVALID_REQUEST, str(first.get("msg", "Invalid request.")), ".".join(loc) or None
    )
    return error_response(err, protocol_for_path(request.url.path), request_info(request.scope))


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        edge = await Edge.start(settings)
        app.state.edge = edge
        try:
            yield
        finally:
            await edge.stop()

    app = FastAPI(
        title="CrossModel",
        summary="One API key for every model, through the protocols clients already speak.",
        version="0.1.0",
        lifespan=lifespan,
        # FastAPI's own telemetry would open its server span before the request id exists and
        # add spans per dependency and endpoint; EdgeMiddleware records the one span we need.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for module in (inference, catalog, account, health, admin):
        app.include_router(module.router)
    app.include_router(console_router)
    # From the router itself: the app lists an included router as one entry, not its routes.
    direct = {
        route.path: DirectRoute(route.endpoint, route)
        for route in inference.router.routes
        if isinstance(route, APIRoute) and route.path in inference.DIRECT_PATHS and route.methods == {"POST"}
    }
    app.add_middleware(EdgeMiddleware, direct=direct)
    return app
