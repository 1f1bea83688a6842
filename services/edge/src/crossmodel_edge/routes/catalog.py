"""GET /v1/models and /v1/models/{vendor}/{model}: the cached catalog, scoped to the key. In
Anthropic's shapes when the request carries `anthropic-version` (what the Anthropic SDKs send),
in OpenAI's otherwise."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request, Response

from crossmodel_edge.domain.catalog import Page, anthropic_model_object, model_allowed, openai_model_object
from crossmodel_edge.domain.failures import MISSING_KEY, model_not_found
from crossmodel_edge.middleware import RequestInfo
from crossmodel_edge.relay import RawResponse, credentials, error_response
from crossmodel_edge.routes.deps import EdgeDep, InfoDep
from crossmodel_protocols.canonical import Protocol
from crossmodel_protocols.errors import ApiError, ErrorType

router = APIRouter(tags=["models"])
_JSON = [("content-type", "application/json")]
_UNAVAILABLE = ApiError(
    ErrorType.UNAVAILABLE, "The model catalog is not available yet. Please retry.", retry_after_ms=1000
)
# Anthropic's bounds for `limit` on list endpoints.
_MAX_LIMIT = 1000


def _protocol(request: Request) -> Protocol:
    if "anthropic-version" in request.headers:
        return Protocol.ANTHROPIC_MESSAGES
    return Protocol.OPENAI_CHAT


def _headers(protocol: Protocol, info: RequestInfo) -> list[tuple[str, str]]:
    # The middleware adds `request-id` on /v1/messages only; Anthropic clients read it here too.
    if protocol is Protocol.ANTHROPIC_MESSAGES:
        return [("request-id", info.request_id)]
    return []


def _error(err: ApiError, protocol: Protocol, info: RequestInfo) -> Response:
    return error_response(err, protocol, info, _headers(protocol, info))


async def _allowed_models(
    request: Request, edge: EdgeDep, info: InfoDep, protocol: Protocol
) -> list[str] | Response:
    api_key, _ = credentials(request.scope)
    if not api_key:
        return _error(MISSING_KEY, protocol, info)
    checked = await edge.relay.check_key(api_key)
    if isinstance(checked, ApiError):
        return _error(checked, protocol, info)
    info.key_id = checked.key.id
    info.account_id = checked.key.account_id
    return list(checked.key.limits.allowed_models)


def _page(request: Request) -> Page | ApiError:
    q = request.query_params
    raw = q.get("limit")
    limit = 20
    if raw is not None:
        if not raw.isdigit() or not 1 <= int(raw) <= _MAX_LIMIT:
            return ApiError(
                ErrorType.INVALID_REQUEST, f"limit: Input should be between 1 and {_MAX_LIMIT}", "limit"
            )
        limit = int(raw)
    return Page(limit, q.get("after_id") or None, q.get("before_id") or None)


@router.get(
    "/v1/models",
    summary="List the models this key may use (OpenAI's list shape; Anthropic's with anthropic-version)",
    response_class=Response,
)
async def list_models(request: Request, edge: EdgeDep, info: InfoDep) -> Response:
    protocol = _protocol(request)
    allowed = await _allowed_models(request, edge, info, protocol)
    if isinstance(allowed, Response):
        return allowed
    catalog = edge.catalog.catalog
    if catalog is None:
        return _error(_UNAVAILABLE, protocol, info)
    if protocol is Protocol.ANTHROPIC_MESSAGES:
        page = _page(request)
        if isinstance(page, ApiError):
            return _error(page, protocol, info)
        body = catalog.anthropic_list(allowed, page)
        return RawResponse(body, 200, [*_JSON, *_headers(protocol, info)])
    return RawResponse(catalog.openai_list(allowed), 200, _JSON)


@router.get("/v1/models/{vendor}/{model}", summary="One model", response_class=Response)
async def get_model(vendor: str, model: str, request: Request, edge: EdgeDep, info: InfoDep) -> Response:
    protocol = _protocol(request)
    allowed = await _allowed_models(request, edge, info, protocol)
    if isinstance(allowed, Response):
        return allowed
    model_id = f"{vendor}/{model}"
    found = await edge.catalog.lookup(model_id)
    if found is None or not model_allowed(model_id, allowed):
        if found is None and not edge.catalog.loaded:
            return _error(_UNAVAILABLE, protocol, info)
        return _error(model_not_found(model_id), protocol, info)
    if protocol is Protocol.ANTHROPIC_MESSAGES:
        body = orjson.dumps(anthropic_model_object(found))
        return RawResponse(body, 200, [*_JSON, *_headers(protocol, info)])
    return RawResponse(orjson.dumps(openai_model_object(found)), 200, _JSON)


@router.get("/v1/models/{model}", include_in_schema=False, response_class=Response)
async def get_unqualified_model(model: str, request: Request, edge: EdgeDep, info: InfoDep) -> Response:
    """An id without its vendor (`client.models.retrieve("gpt-4o-mini")`): after the key check,
    the same 404 `model_not_found` as for any unknown model, in the client's shape, rather than
    a bare "Invalid URL"."""
    protocol = _protocol(request)
    allowed = await _allowed_models(request, edge, info, protocol)
    if isinstance(allowed, Response):
        return allowed
    return _error(model_not_found(model), protocol, info)
