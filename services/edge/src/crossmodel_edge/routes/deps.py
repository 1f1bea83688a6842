"""Dependency aliases for the routers (async, so FastAPI does not hop to a thread for them)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from crossmodel_edge.middleware import RequestInfo, request_info
from crossmodel_edge.runtime import Edge


async def _edge(request: Request) -> Edge:
    edge: Edge = request.app.state.edge
    return edge


async def _info(request: Request) -> RequestInfo:
    return request_info(request.scope)


EdgeDep = Annotated[Edge, Depends(_edge)]
InfoDep = Annotated[RequestInfo, Depends(_info)]
