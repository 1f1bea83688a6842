"""Inference endpoints. Every protocol goes through the same relay; /v1/responses and
/v1/messages are one route each here, with their protocol."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from crossmodel_edge.relay import Relay
from crossmodel_protocols.canonical import Protocol

router = APIRouter(tags=["inference"])


def relay(request: Request) -> Relay:
    # The hot path skips dependency injection: resolving even one dependency costs more than
    # this attribute lookup.
    r: Relay = request.app.state.edge.relay
    return r


_JSON_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object", "required": ["model"]}}},
    }
}


@router.post(
    "/v1/chat/completions",
    summary="Create a chat completion (OpenAI Chat Completions)",
    openapi_extra=_JSON_BODY,
    response_class=Response,
)
async def chat_completions(request: Request) -> Response:
    return await relay(request).handle(request, Protocol.OPENAI_CHAT)
