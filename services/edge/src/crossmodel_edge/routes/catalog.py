"""GET /v1/models and /v1/models/{vendor}/{model}: the cached catalog, scoped to the key."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request, Response

from crossmodel_edge.domain.catalog import model_allowed, openai_model_object
from crossmodel_edge.domain.failures import MISSING_KEY, model_not_found
from crossmodel_edge.relay import RawResponse, credentials, error_response
from crossmodel_edge.routes.deps import EdgeDep, InfoDep
from crossmodel_protocols.canonical import Protocol
from crossmodel_protocols.errors import ApiError, ErrorType

router = APIRouter(tags=["models"])
_JSON = [("content-type", "application/json")]
_UNAVAILABLE = ApiError(
    ErrorType.UNAVAILABLE, "The model catalog is not available yet. Please retry.", retry_after_ms=1000
)


async def _allowed_models(request: Request, edge: EdgeDep, info: InfoDep) -> list[str] | Response:
    api_key, _ = credentials(request.scope)
    if not api_key:
        return error_response(MISSING_KEY, Protocol.OPENAI_CHAT, info)
    checked = await edge.relay.check_key(api_key)
    if isinstance(checked, ApiError):
        return error_response(checked, Protocol.OPENAI_CHAT, info)
    info.key_id = checked.key.id
    info.account_id = checked.key.account_id
    return list(checked.key.limits.allowed_models)


@router.get(
    "/v1/models", summary="List the models this key may use (OpenAI list shape)", response_class=Response
)
async def list_models(request: Request, edge: EdgeDep, info: InfoDep) -> Response:
    allowed = await _allowed_models(request, edge, info)
    if isinstance(allowed, Response):
        return allowed
    catalog = edge.catalog.catalog
    if catalog is None:
        return error_response(_UNAVAILABLE, Protocol.OPENAI_CHAT, info)
    return RawResponse(catalog.openai_list(allowed), 200, _JSON)


@router.get("/v1/models/{vendor}/{model}", summary="One model", response_class=Response)
async def get_model(vendor: str, model: str, request: Request, edge: EdgeDep, info: InfoDep) -> Response:
    allowed = await _allowed_models(request, edge, info)
    if isinstance(allowed, Response):
        return allowed
    model_id = f"{vendor}/{model}"
    found = await edge.catalog.lookup(model_id)
    if found is None or not model_allowed(model_id, allowed):
        if found is None and not edge.catalog.loaded:
            return error_response(_UNAVAILABLE, Protocol.OPENAI_CHAT, info)
        return error_response(model_not_found(model_id), Protocol.OPENAI_CHAT, info)
    return RawResponse(orjson.dumps(openai_model_object(found)), 200, _JSON)
