"""The admin API under /admin/v1: accounts, credits, the ledger, API keys and usage, for
operators holding the admin token. Every call goes to auth, billing or usage over gRPC; the edge
stores nothing. docs/admin.md describes it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from datetime import date, datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Header, Query, Request, Response, Security
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer

from crossmodel.auth.v1 import auth_pb2
from crossmodel.billing.v1 import billing_pb2
from crossmodel.usage.v1 import usage_pb2
from crossmodel_edge.adapters.admin import Refused, call
from crossmodel_edge.domain.admin import (
    AdminInputError,
    LimitsChange,
    amount_micros,
    apply_limits,
    check_cap,
    check_expiry,
    check_patterns,
    csv_header,
    csv_rows,
    day_range,
    decode_ledger_cursor,
    ledger_page,
    ledger_request,
    money,
    parse_amount,
    sum_totals,
    time_bounds,
    to_ms,
    token_matches,
)
from crossmodel_edge.middleware import request_info
from crossmodel_edge.relay import error_response
from crossmodel_edge.routes.admin_models import (
    ERRORS,
    Account,
    AccountCreate,
    AccountDetail,
    AccountList,
    AdjustmentCreate,
    Balance,
    Credit,
    CreditCreate,
    DailyUsage,
    Key,
    KeyCreate,
    KeyCreated,
    KeyList,
    KeyUpdate,
    LedgerEntry,
    LedgerPage,
    LimitsIn,
    RequestPage,
    RequestRecord,
    Totals,
    Usage,
)
from crossmodel_edge.routes.deps import EdgeDep, InfoDep
from crossmodel_edge.runtime import Edge
from crossmodel_protocols.canonical import Protocol
from crossmodel_protocols.errors import ApiError, ErrorType

A = TypeVar("A")
B = TypeVar("B")

DISABLED = ApiError(
    ErrorType.NOT_FOUND,
    "The admin API is not enabled on this server (CROSSMODEL_EDGE_ADMIN_TOKEN is not set).",
    code="admin_api_disabled",
)
BAD_TOKEN = ApiError(
    ErrorType.AUTHENTICATION,
    "Missing or wrong admin token. Send it as 'Authorization: Bearer <CROSSMODEL_ADMIN_TOKEN>'.",
    code="invalid_admin_token",
)
_NO_STORE = ("cache-control", "no-store")
EXPORT_PAGE = 1000


class AdminRoute(APIRoute):
    """Checks the admin token before anything else of the request is looked at (so a caller
    without it learns nothing, not even whether its body parses) and renders refusals in the
    API's error shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        inner = super().get_route_handler()

        async def handler(request: Request) -> Response:
            info = request_info(request.scope)
            edge: Edge = request.app.state.edge
            expected = edge.settings.admin_token.get_secret_value()
            if not expected:
                return error_response(DISABLED, Protocol.OPENAI_CHAT, info, [_NO_STORE])
            if not token_matches(request.headers.get("authorization"), expected):
                challenge = ("www-authenticate", 'Bearer realm="crossmodel-admin"')
                return error_response(BAD_TOKEN, Protocol.OPENAI_CHAT, info, [challenge, _NO_STORE])
            try:
                response = await inner(request)
            except Refused as exc:
                return error_response(exc.error, Protocol.OPENAI_CHAT, info, [_NO_STORE])
            except AdminInputError as exc:
                err = ApiError(ErrorType.INVALID_REQUEST, str(exc), exc.param)
                return error_response(err, Protocol.OPENAI_CHAT, info, [_NO_STORE])
            response.headers["cache-control"] = "no-store"
            return response

        return handler


_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="AdminToken",
    description="The edge's CROSSMODEL_EDGE_ADMIN_TOKEN (make run writes it to .crossmodel/dev.env "
    "as CROSSMODEL_ADMIN_TOKEN).",
)
router = APIRouter(
    prefix="/admin/v1",
    tags=["admin"],
    route_class=AdminRoute,
    # Documents the scheme on /docs; AdminRoute does the check, before the body is parsed.
    dependencies=[Security(_bearer)],
    responses=ERRORS,
)

Limit = Annotated[int, Query(ge=1, le=1000, description="Page size")]


async def _both(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """Both calls at once; the first one's failure wins (an unknown account before anything)."""
    a, b = await asyncio.gather(first, second, return_exceptions=True)
    for result in (a, b):
        if isinstance(result, BaseException):
            raise result
    return a, b  # type: ignore[return-value]


def _account_call(edge: Edge, account_id: str) -> Awaitable[auth_pb2.GetAccountResponse]:
    return call(edge.backends.auth.GetAccount(auth_pb2.GetAccountRequest(account_id=account_id)), "auth")


def _now_ms() -> int:
    return int(time.time() * 1000)


# -- accounts -----------------------------------------------------------------------------------


@router.post("/accounts", status_code=201, summary="Create an account")
async def create_account(body: AccountCreate, edge: EdgeDep, info: InfoDep) -> Account:
    resp = await call(edge.backends.auth.CreateAccount(auth_pb2.CreateAccountRequest(name=body.name)), "auth")
    info.account_id = resp.account.id
    return Account.of(resp.account)


@router.get("/accounts", summary="List accounts (by id)")
async def list_accounts(
    edge: EdgeDep, limit: Limit = 100, page_token: Annotated[str, Query(max_length=200)] = ""
) -> AccountList:
    resp = await call(
        edge.backends.auth.ListAccounts(auth_pb2.ListAccountsRequest(page_size=limit, page_token=page_token)),
        "auth",
    )
    return AccountList(
        data=[Account.of(a) for a in resp.accounts], next_page_token=resp.next_page_token or None
    )


@router.get("/accounts/{account_id}", summary="An account with its balance")
async def get_account(account_id: str, edge: EdgeDep, info: InfoDep) -> AccountDetail:
    info.account_id = account_id
    account, balance = await _both(_account_call(edge, account_id), _balance_call(edge, account_id))
    return AccountDetail(**Account.of(account.account).model_dump(), balance=Balance.of(balance))


# -- money --------------------------------------------------------------------------------------


def _balance_call(edge: Edge, account_id: str) -> Awaitable[billing_pb2.GetBalanceResponse]:
    return call(
        edge.backends.billing.GetBalance(billing_pb2.GetBalanceRequest(account_id=account_id)), "billing"
    )


IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Required. A replay with the same key credits nothing and returns the first entry",
    ),
]


async def _credit(
    edge: EdgeDep,
    response: Response,
    account_id: str,
    micros: int,
    idempotency_key: str,
    description: str,
    *,
    adjustment: bool,
) -> Credit:
    await _account_call(edge, account_id)  # billing credits any id: make sure the account exists
    resp = await call(
        edge.backends.billing.TopUp(
            billing_pb2.TopUpRequest(
                account_id=account_id,
                amount_micros=micros,
                idempotency_key=idempotency_key,
                description=description,
                adjustment=adjustment,
            )
        ),
        "billing",
    )
    if resp.replayed:
        response.status_code = 200
        response.headers["idempotent-replayed"] = "true"
    return Credit(
        entry=LedgerEntry.of(resp.entry),
        replayed=resp.replayed,
        balance_micros=resp.balance_micros,
        balance=money(resp.balance_micros),
    )


@router.post(
    "/accounts/{account_id}/credits",
    status_code=201,
    summary="Top up an account",
    description="Credits a positive amount. 201 with the new entry; a replay of the same "
    "Idempotency-Key answers 200 with the first entry and `replayed: true` (nothing credited); the "
    "same key with another amount is a 409.",
)
async def credit(
    account_id: str,
    body: CreditCreate,
    idempotency_key: IdempotencyKey,
    response: Response,
    edge: EdgeDep,
    info: InfoDep,
) -> Credit:
    info.account_id = account_id
    micros = amount_micros(body.amount, body.amount_micros)
    if micros <= 0:
        raise AdminInputError("a top-up must be positive (use an adjustment to take money away)", "amount")
    return await _credit(
        edge, response, account_id, micros, idempotency_key, body.description, adjustment=False
    )


@router.post(
    "/accounts/{account_id}/adjustments",
    status_code=201,
    summary="Correct a balance (operator adjustment, either sign)",
    description="Like a credit, but the amount may be negative and a description is required.",
)
async def adjust(
    account_id: str,
    body: AdjustmentCreate,
    idempotency_key: IdempotencyKey,
    response: Response,
    edge: EdgeDep,
    info: InfoDep,
) -> Credit:
    info.account_id = account_id
    micros = amount_micros(body.amount, body.amount_micros)
    if micros == 0:
        raise AdminInputError("an adjustment must not be zero", "amount")
    return await _credit(
        edge, response, account_id, micros, idempotency_key, body.description, adjustment=True
    )


@router.get("/accounts/{account_id}/balance", summary="Balance and running totals")
async def balance(account_id: str, edge: EdgeDep, info: InfoDep) -> Balance:
    info.account_id = account_id
    _, resp = await _both(_account_call(edge, account_id), _balance_call(edge, account_id))
    return Balance.of(resp)


@router.get("/accounts/{account_id}/ledger", summary="Balance history: charges, top-ups, adjustments")
async def ledger(
    account_id: str,
    edge: EdgeDep,
    info: InfoDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    page_token: Annotated[str, Query(max_length=4000)] = "",
) -> LedgerPage:
    info.account_id = account_id
    cursor = decode_ledger_cursor(page_token)
    before, ask = ledger_request(cursor, limit)
    _, resp = await _both(
        _account_call(edge, account_id),
        call(
            edge.backends.billing.ListLedger(
                billing_pb2.ListLedgerRequest(account_id=account_id, limit=ask, before_unix_ms=before)
            ),
            "billing",
        ),
    )
    page, token = ledger_page(resp.entries, cursor, limit)
    return LedgerPage(data=[LedgerEntry.of(e) for e in page], next_page_token=token or None)


# -- keys ---------------------------------------------------------------------------------------


def _cap(limits: LimitsIn) -> int | None:
    if limits.spend_cap is not None:
        return parse_amount(limits.spend_cap, "limits.spend_cap")
    return limits.spend_cap_micros


def _new_limits(limits: LimitsIn) -> auth_pb2.KeyLimits:
    return auth_pb2.KeyLimits(
        rpm=limits.rpm or 0,
        tpm=limits.tpm or 0,
        allowed_models=check_patterns(limits.allowed_models or ()),
        spend_cap_micros=check_cap(_cap(limits)),
        expires_at_unix_ms=check_expiry(to_ms(limits.expires_at) if limits.expires_at else None, _now_ms()),
    )


def _change(limits: LimitsIn) -> LimitsChange:
    given = limits.model_fields_set
    names = {"rpm", "tpm", "allowed_models"} & given
    if given & {"spend_cap", "spend_cap_micros"}:
        names.add("spend_cap_micros")
    if "expires_at" in given:
        names.add("expires_at_ms")
    cap = _cap(limits)
    check_cap(cap)
    return LimitsChange(
        given=frozenset(names),
        rpm=limits.rpm,
        tpm=limits.tpm,
        allowed_models=limits.allowed_models,
        spend_cap_micros=cap,
        expires_at_ms=to_ms(limits.expires_at) if limits.expires_at else None,
    )


@router.post(
    "/accounts/{account_id}/keys",
    status_code=201,
    summary="Create an API key",
    description="The response carries the secret (`secret`) once; only its hash is stored.",
)
async def create_key(account_id: str, body: KeyCreate, edge: EdgeDep, info: InfoDep) -> KeyCreated:
    info.account_id = account_id
    limits = _new_limits(body.limits)
    resp = await call(
        edge.backends.auth.CreateKey(
            auth_pb2.CreateKeyRequest(account_id=account_id, name=body.name, limits=limits)
        ),
        "auth",
    )
    return KeyCreated(**Key.of(resp.key).model_dump(), secret=resp.secret)


@router.get("/accounts/{account_id}/keys", summary="An account's API keys (revoked ones too)")
async def list_keys(account_id: str, edge: EdgeDep, info: InfoDep) -> KeyList:
    info.account_id = account_id
    resp = await call(edge.backends.auth.ListKeys(auth_pb2.ListKeysRequest(account_id=account_id)), "auth")
    return KeyList(data=[Key.of(k) for k in resp.keys])


async def _get_key(edge: Edge, key_id: str) -> auth_pb2.ApiKey:
    resp = await call(edge.backends.auth.GetKey(auth_pb2.GetKeyRequest(key_id=key_id)), "auth")
    return resp.key


@router.get("/keys/{key_id}", summary="An API key")
async def get_key(key_id: str, edge: EdgeDep, info: InfoDep) -> Key:
    key = await _get_key(edge, key_id)
    info.account_id = key.account_id
    return Key.of(key)


@router.patch(
    "/keys/{key_id}",
    summary="Rename a key or change its limits",
    description="Fields left out keep their value; a limit set to null is removed. Takes effect "
    "on the next request on every replica.",
)
async def update_key(key_id: str, body: KeyUpdate, edge: EdgeDep, info: InfoDep) -> Key:
    if body.name is None and body.limits is None:
        raise AdminInputError("nothing to change: give name and/or limits", "name")
    key = await _get_key(edge, key_id)
    info.account_id = key.account_id
    req = auth_pb2.UpdateKeyRequest(key_id=key_id, account_id=key.account_id)
    if body.name is not None:
        req.name = body.name
    if body.limits is not None:
        req.limits.CopyFrom(apply_limits(key.limits, _change(body.limits), _now_ms()))
    resp = await call(edge.backends.auth.UpdateKey(req), "auth")
    return Key.of(resp.key)


@router.post(
    "/keys/{key_id}/revoke",
    summary="Revoke a key",
    description="Refused everywhere from the next request on. Revoking twice is harmless.",
)
async def revoke_key(key_id: str, edge: EdgeDep, info: InfoDep) -> Key:
    resp = await call(edge.backends.auth.RevokeKey(auth_pb2.RevokeKeyRequest(key_id=key_id)), "auth")
    info.account_id = resp.key.account_id
    return Key.of(resp.key)


# -- usage --------------------------------------------------------------------------------------

Day = Annotated[date | None, Query(description="YYYY-MM-DD (UTC), inclusive")]
Time = Annotated[datetime | None, Query(description="RFC 3339; naive times are UTC")]
Status = Literal["succeeded", "failed", "cancelled"]


@router.get(
    "/accounts/{account_id}/usage",
    summary="Usage totals and daily aggregates per key and model",
    description="`from`/`to` are inclusive UTC days. With `model`, the totals are the sum of that "
    "model's daily rows.",
)
async def usage(
    account_id: str,
    edge: EdgeDep,
    info: InfoDep,
    key_id: str = "",
    model: str = "",
    from_day: Annotated[Day, Query(alias="from")] = None,
    to_day: Annotated[Day, Query(alias="to")] = None,
) -> Usage:
    info.account_id = account_id
    from_ms_, to_ms_ = day_range(from_day, to_day)
    daily_call = call(
        edge.backends.usage.GetDailyUsage(
            usage_pb2.GetDailyUsageRequest(
                account_id=account_id,
                key_id=key_id,
                from_day=from_day.isoformat() if from_day else "",
                to_day=to_day.isoformat() if to_day else "",
            )
        ),
        "usage",
    )
    totals_call = call(
        edge.backends.usage.GetTotals(
            usage_pb2.GetTotalsRequest(
                account_id=account_id, key_id=key_id, from_unix_ms=from_ms_, to_unix_ms=to_ms_
            )
        ),
        "usage",
    )
    _, (daily, totals) = await _both(_account_call(edge, account_id), _both(daily_call, totals_call))
    days = [d for d in daily.days if not model or d.model == model]
    return Usage(
        account_id=account_id,
        key_id=key_id or None,
        model=model or None,
        from_day=from_day.isoformat() if from_day else None,
        to_day=to_day.isoformat() if to_day else None,
        totals=Totals.of(sum_totals(days) if model else totals.totals),
        daily=[DailyUsage.of_day(d) for d in days],
    )


def _list_request(
    account_id: str,
    *,
    request_id: str,
    key_id: str,
    model: str,
    status: str,
    start: datetime | None,
    end: datetime | None,
) -> usage_pb2.ListRequestsRequest:
    from_value, to_value = time_bounds(start, end)
    return usage_pb2.ListRequestsRequest(
        account_id=account_id,
        request_id=request_id,
        key_id=key_id,
        model=model,
        status=status,
        from_unix_ms=from_value,
        to_unix_ms=to_value,
    )


@router.get(
    "/accounts/{account_id}/requests",
    summary="Search the request log",
    description="Newest first. Filters combine; `from` is inclusive, `to` exclusive.",
)
async def list_requests(
    account_id: str,
    edge: EdgeDep,
    info: InfoDep,
    request_id: str = "",
    key_id: str = "",
    model: str = "",
    status: Status | None = None,
    start: Annotated[Time, Query(alias="from")] = None,
    end: Annotated[Time, Query(alias="to")] = None,
    limit: Limit = 100,
    page_token: Annotated[str, Query(max_length=1000)] = "",
) -> RequestPage:
    info.account_id = account_id
    req = _list_request(
        account_id,
        request_id=request_id,
        key_id=key_id,
        model=model,
        status=status or "",
        start=start,
        end=end,
    )
    req.limit = limit
    req.page_token = page_token
    _, resp = await _both(
        _account_call(edge, account_id),
        call(edge.backends.usage.ListRequests(req), "usage", param="page_token" if page_token else None),
    )
    return RequestPage(
        data=[RequestRecord.of(e) for e in resp.requests], next_page_token=resp.next_page_token or None
    )


@router.get("/requests/{request_id}", summary="One request of any account, by its x-request-id")
async def get_request(request_id: str, edge: EdgeDep) -> RequestRecord:
    resp = await call(
        edge.backends.usage.GetRequest(usage_pb2.GetRequestRequest(request_id=request_id)), "usage"
    )
    if not resp.found:
        raise Refused(
            ApiError(ErrorType.NOT_FOUND, f"No request {request_id!r} in the log.", None, "not_found")
        )
    return RequestRecord.of(resp.request)


@router.get(
    "/accounts/{account_id}/requests.csv",
    summary="Export the request log as CSV",
    description="The same filters as the search, every page, streamed. Without `to`, the export "
    "ends at the moment it started, so requests arriving meanwhile do not appear halfway.",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "RFC 4180 CSV with a header row"}},
)
async def export_requests(
    account_id: str,
    edge: EdgeDep,
    info: InfoDep,
    request_id: str = "",
    key_id: str = "",
    model: str = "",
    status: Status | None = None,
    start: Annotated[Time, Query(alias="from")] = None,
    end: Annotated[Time, Query(alias="to")] = None,
) -> StreamingResponse:
    info.account_id = account_id
    req = _list_request(
        account_id,
        request_id=request_id,
        key_id=key_id,
        model=model,
        status=status or "",
        start=start,
        end=end,
    )
    if not req.to_unix_ms:
        req.to_unix_ms = _now_ms()
    req.limit = EXPORT_PAGE
    # The first page is read before answering, so a bad filter or a missing service is a proper
    # error status; a failure on a later page cuts the stream short (the client sees an
    # incomplete chunked body, never a silently short file).
    _, first = await _both(
        _account_call(edge, account_id), call(edge.backends.usage.ListRequests(req), "usage")
    )

    async def pages() -> AsyncIterator[str]:
        yield csv_header()
        page = first
        while True:
            yield csv_rows(page.requests)
            if not page.next_page_token:
                return
            req.page_token = page.next_page_token
            page = await edge.backends.usage.ListRequests(req)

    filename = f"requests-{account_id}.csv"
    return StreamingResponse(
        pages(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )
