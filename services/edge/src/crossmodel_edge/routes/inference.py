"""Inference endpoints. Every protocol goes through the same relay; /v1/responses and
/v1/messages are one route each here, with their protocol. /v1/messages/count_tokens and
/v1/responses/input_tokens are a key check and one router.CountTokens: no admission, nothing
billed."""

from __future__ import annotations

from typing import Any

import grpc
from fastapi import APIRouter, Request, Response

from crossmodel.router.v1 import router_pb2
from crossmodel_edge.adapters.backends import rpc_failure
from crossmodel_edge.domain.catalog import model_allowed
from crossmodel_edge.domain.failures import MISSING_KEY, model_not_found, route_failure
from crossmodel_edge.domain.request import BodyError, read_facts
from crossmodel_edge.middleware import request_info
from crossmodel_edge.relay import (
    ROUTER_PROTOCOL,
    BodyTooLarge,
    ClientGone,
    RawResponse,
    Relay,
    credentials,
    error_response,
    read_body,
)
from crossmodel_protocols.canonical import Protocol
from crossmodel_protocols.errors import ApiError, ErrorType

router = APIRouter(tags=["inference"])

# Called by EdgeMiddleware without FastAPI's routing (their handlers take only the request
# and answer every failure themselves); count_tokens is off the hot path and keeps the usual way.
DIRECT_PATHS = frozenset({"/v1/chat/completions", "/v1/responses", "/v1/messages"})


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


@router.post(
    "/v1/responses",
    summary="Create a model response (OpenAI Responses)",
    openapi_extra=_JSON_BODY,
    response_class=Response,
)
async def responses(request: Request) -> Response:
    return await relay(request).handle(request, Protocol.OPENAI_RESPONSES)


@router.post(
    "/v1/messages",
    summary="Create a message (Anthropic Messages)",
    openapi_extra=_JSON_BODY,
    response_class=Response,
)
async def messages(request: Request) -> Response:
    return await relay(request).handle(request, Protocol.ANTHROPIC_MESSAGES)


@router.post(
    "/v1/messages/count_tokens",
    summary="Count the input tokens of a message (Anthropic Messages)",
    openapi_extra=_JSON_BODY,
    response_class=Response,
)
async def count_tokens(request: Request) -> Response:
    return await _count_input_tokens(request, Protocol.ANTHROPIC_MESSAGES, b'{"input_tokens":%d}')


@router.post(
    "/v1/responses/input_tokens",
    summary="Count the input tokens of a response (OpenAI Responses)",
    openapi_extra=_JSON_BODY,
    response_class=Response,
)
async def responses_input_tokens(request: Request) -> Response:
    return await _count_input_tokens(
        request, Protocol.OPENAI_RESPONSES, b'{"object":"response.input_tokens","input_tokens":%d}'
    )


async def _count_input_tokens(request: Request, protocol: Protocol, answer: bytes) -> Response:
    """A key check and one router.CountTokens, in the protocol's shapes: no admission, nothing
    billed. `model` is required (OpenAI's own endpoint does not need it): it names the vendor,
    and the key may be scoped to some models."""
    r = relay(request)
    info = request_info(request.scope)
    api_key, _ = credentials(request.scope)
    if not api_key:
        return error_response(MISSING_KEY, protocol, info)
    try:
        body = await read_body(request.scope, request.receive, r.max_body_bytes)
    except BodyTooLarge:
        err = ApiError(
            ErrorType.REQUEST_TOO_LARGE, f"The request body exceeds the limit of {r.max_body_bytes} bytes."
        )
        return error_response(err, protocol, info, [("connection", "close")])
    except ClientGone:
        return RawResponse(b"", 499, [])
    # The key first: an unauthenticated caller learns nothing about bodies or the catalog.
    checked = await r.check_key(api_key)
    if isinstance(checked, ApiError):
        return error_response(checked, protocol, info)
    info.key_id = checked.key.id
    info.account_id = checked.key.account_id
    try:
        facts = read_facts(body, protocol)
    except BodyError as exc:
        return error_response(
            ApiError(ErrorType.INVALID_REQUEST, exc.message, exc.param, exc.code), protocol, info
        )
    info.model = facts.model
    model = await r.catalog.lookup(facts.model)
    if model is None:
        return error_response(model_not_found(facts.model), protocol, info)
    if not model_allowed(model.id, checked.key.limits.allowed_models):
        err = ApiError(
            ErrorType.PERMISSION, "This API key may not use this model.", "model", "model_not_allowed"
        )
        return error_response(err, protocol, info)
    try:
        counted = await r.backends.router.CountTokens(
            router_pb2.CountTokensRequest(
                request_id=info.request_id, protocol=ROUTER_PROTOCOL[protocol], body=body
            ),
            timeout=r.auth_timeout,
        )
    except grpc.aio.AioRpcError as exc:
        return error_response(rpc_failure(exc, "router"), protocol, info)
    if counted.HasField("error"):
        return error_response(route_failure(counted.error), protocol, info)
    return RawResponse(answer % counted.input_tokens, 200, [("content-type", "application/json")])
