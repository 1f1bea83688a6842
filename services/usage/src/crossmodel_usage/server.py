"""The UsageService servicer: wire ⇄ domain, nothing else."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from crossmodel.usage.v1 import usage_pb2, usage_pb2_grpc
from crossmodel_common.logging import get_logger
from crossmodel_usage.adapters.repository import UsageRepository
from crossmodel_usage.domain.queries import (
    QueryError,
    RequestFilter,
    Totals,
    Unavailable,
    decode_page_token,
    encode_page_token,
    page_size,
    parse_day,
    parse_status,
    plan_totals,
    require,
    time_range,
)
from crossmodel_usage.wire import event_from_record

log = get_logger(__name__)

SERVICE_NAME = usage_pb2.DESCRIPTOR.services_by_name["UsageService"].full_name

Context = grpc.aio.ServicerContext[object, object]
Req = TypeVar("Req")
Resp = TypeVar("Resp")
Self = TypeVar("Self")


def _status_codes(
    method: Callable[[Self, Req, Context], Awaitable[Resp]],
) -> Callable[[Self, Req, Context], Awaitable[Resp]]:
    """Malformed arguments → INVALID_ARGUMENT naming the argument; an unreachable database →
    UNAVAILABLE (callers may retry). Anything else is a bug and stays UNKNOWN."""

    @functools.wraps(method)
    async def translated(self: Self, request: Req, context: Context) -> Resp:
        try:
            return await method(self, request, context)
        except QueryError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Unavailable as exc:
            log.warning("usage database unavailable", error=str(exc))
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the usage database is unavailable")

    return translated


def _totals(totals: Totals) -> usage_pb2.Totals:
    return usage_pb2.Totals(
        requests=totals.requests,
        input_tokens=totals.input_tokens,
        output_tokens=totals.output_tokens,
        cached_input_tokens=totals.cached_input_tokens,
        reasoning_tokens=totals.reasoning_tokens,
        cost_micros=totals.cost_micros,
        errors=totals.errors,
    )


class UsageServicer(usage_pb2_grpc.UsageServiceServicer):
    def __init__(self, repository: UsageRepository) -> None:
        self._repo = repository

    @_status_codes
    async def GetTotals(
        self, request: usage_pb2.GetTotalsRequest, context: Context
    ) -> usage_pb2.GetTotalsResponse:
        account_id = require(request.account_id, "account_id")
        plan = plan_totals(time_range(request.from_unix_ms, request.to_unix_ms))
        totals = await self._repo.totals(account_id, request.key_id, plan)
        return usage_pb2.GetTotalsResponse(totals=_totals(totals))

    @_status_codes
    async def GetRequest(
        self, request: usage_pb2.GetRequestRequest, context: Context
    ) -> usage_pb2.GetRequestResponse:
        record = await self._repo.get_request(require(request.request_id, "request_id"))
        # Another account's request is reported as absent, not as forbidden: its existence is
        # not the caller's business.
        if record is None or (request.account_id and record.account_id != request.account_id):
            return usage_pb2.GetRequestResponse(found=False)
        return usage_pb2.GetRequestResponse(found=True, request=event_from_record(record))

    @_status_codes
    async def ListRequests(
        self, request: usage_pb2.ListRequestsRequest, context: Context
    ) -> usage_pb2.ListRequestsResponse:
        request_filter = RequestFilter(
            account_id=require(request.account_id, "account_id"),
            key_id=request.key_id,
            model=request.model,
            status=parse_status(request.status),
            request_id=request.request_id,
            span=time_range(request.from_unix_ms, request.to_unix_ms),
        )
        limit = page_size(request.limit)
        after = decode_page_token(request_filter, request.page_token)
        records, next_cursor = await self._repo.list_requests(request_filter, limit, after)
        return usage_pb2.ListRequestsResponse(
            requests=[event_from_record(r) for r in records],
            next_page_token=encode_page_token(request_filter, next_cursor) if next_cursor else "",
        )

    @_status_codes
    async def GetDailyUsage(
        self, request: usage_pb2.GetDailyUsageRequest, context: Context
    ) -> usage_pb2.GetDailyUsageResponse:
        account_id = require(request.account_id, "account_id")
        first = parse_day(request.from_day, "from_day")
        last = parse_day(request.to_day, "to_day")
        if first is not None and last is not None and first > last:
            raise QueryError("from_day is after to_day")
        rows = await self._repo.daily(account_id, request.key_id, first, last)
        return usage_pb2.GetDailyUsageResponse(
            days=[
                usage_pb2.DailyUsage(
                    day=r.day.isoformat(), key_id=r.key_id, model=r.model, totals=_totals(r.totals)
                )
                for r in rows
            ]
        )
