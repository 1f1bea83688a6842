"""GET /v1/account: the calling key's account balance, usage totals, and the key itself."""

from __future__ import annotations

import asyncio

import grpc
import orjson
from fastapi import APIRouter, Request, Response

from crossmodel.billing.v1 import billing_pb2
from crossmodel.usage.v1 import usage_pb2
from crossmodel_edge.adapters.backends import rpc_failure
from crossmodel_edge.domain.account import account_object
from crossmodel_edge.domain.failures import MISSING_KEY
from crossmodel_edge.relay import RawResponse, credentials, error_response
from crossmodel_edge.routes.deps import EdgeDep, InfoDep
from crossmodel_protocols.canonical import Protocol
from crossmodel_protocols.errors import ApiError

router = APIRouter(tags=["account"])


@router.get("/v1/account", summary="Balance, usage totals and the calling key", response_class=Response)
async def account(request: Request, edge: EdgeDep, info: InfoDep) -> Response:
    api_key, _ = credentials(request.scope)
    if not api_key:
        return error_response(MISSING_KEY, Protocol.OPENAI_CHAT, info)
    checked = await edge.relay.check_key(api_key)
    if isinstance(checked, ApiError):
        return error_response(checked, Protocol.OPENAI_CHAT, info)
    key = checked.key
    info.key_id = key.id
    info.account_id = key.account_id
    timeout = edge.settings.backend_timeout_seconds
    balance_call = edge.backends.billing.GetBalance(
        billing_pb2.GetBalanceRequest(account_id=key.account_id), timeout=timeout
    )
    totals_call = edge.backends.usage.GetTotals(
        usage_pb2.GetTotalsRequest(account_id=key.account_id), timeout=timeout
    )
    balance_r, totals_r = await asyncio.gather(balance_call, totals_call, return_exceptions=True)
    for result, service in ((balance_r, "billing"), (totals_r, "usage")):
        if isinstance(result, grpc.aio.AioRpcError):
            return error_response(rpc_failure(result, service), Protocol.OPENAI_CHAT, info)
        if isinstance(result, BaseException):
            raise result
    assert isinstance(balance_r, billing_pb2.GetBalanceResponse)
    assert isinstance(totals_r, usage_pb2.GetTotalsResponse)
    body = orjson.dumps(account_object(key, balance_r, totals_r.totals))
    return RawResponse(body, 200, [("content-type", "application/json")])
