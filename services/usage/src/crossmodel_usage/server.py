"""The UsageService servicer: wire ⇄ domain, nothing else."""

from __future__ import annotations

import grpc

from crossmodel.usage.v1 import usage_pb2, usage_pb2_grpc
from crossmodel_usage.adapters.repository import UsageRepository
from crossmodel_usage.domain.queries import (
    QueryError,
    RequestFilter,
    Totals,
    decode_page_token,
    encode_page_token,
    page_size,
    parse_day,
    parse_status,
    plan_totals,
    time_range,
)
from crossmodel_usage.wire import event_from_record

SERVICE_NAME = usage_pb2.DESCRIPTOR.services_by_name["UsageService"].full_name


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


async def _invalid(context: grpc.aio.ServicerContext[object, object], message: str) -> None:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)


class UsageServicer(usage_pb2_grpc.UsageServiceServicer):
    def __init__(self, repository: UsageRepository) -> None:
        self._repo = repository

    async def GetTotals(
        self, request: usage_pb2.GetTotalsRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> usage_pb2.GetTotalsResponse:
        if not request.account_id:
            await _invalid(context, "account_id is required")
        try:
            plan = plan_totals(time_range(request.from_unix_ms, request.to_unix_ms))
        except QueryError as exc:
            await _invalid(context, str(exc))
            raise
        totals = await self._repo.totals(request.account_id, request.key_id, plan)
        return usage_pb2.GetTotalsResponse(totals=_totals(totals))

    async def GetRequest(
        self, request: usage_pb2.GetRequestRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> usage_pb2.GetRequestResponse:
        if not request.request_id:
            await _invalid(context, "request_id is required")
        record = await self._repo.get_request(request.request_id)
        # Another account's request is reported as absent, not as forbidden: its existence is
        # not the caller's business.
        if record is None or (request.account_id and record.account_id != request.account_id):
            return usage_pb2.GetRequestResponse(found=False)
        return usage_pb2.GetRequestResponse(found=True, request=event_from_record(record))

    async def ListRequests(
        self, request: usage_pb2.ListRequestsRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> usage_pb2.ListRequestsResponse:
        if not request.account_id:
            await _invalid(context, "account_id is required")
        try:
            request_filter = RequestFilter(
                account_id=request.account_id,
                key_id=request.key_id,
                model=request.model,
                status=parse_status(request.status),
                request_id=request.request_id,
                span=time_range(request.from_unix_ms, request.to_unix_ms),
            )
            limit = page_size(request.limit)
            after = decode_page_token(request_filter, request.page_token)
        except QueryError as exc:
            await _invalid(context, str(exc))
            raise
        records, next_cursor = await self._repo.list_requests(request_filter, limit, after)
        return usage_pb2.ListRequestsResponse(
            requests=[event_from_record(r) for r in records],
            next_page_token=encode_page_token(request_filter, next_cursor) if next_cursor else "",
        )

    async def GetDailyUsage(
        self, request: usage_pb2.GetDailyUsageRequest, context: grpc.aio.ServicerContext[object, object]
    ) -> usage_pb2.GetDailyUsageResponse:
        if not request.account_id:
            await _invalid(context, "account_id is required")
        try:
            first = parse_day(request.from_day, "from_day")
            last = parse_day(request.to_day, "to_day")
        except QueryError as exc:
            await _invalid(context, str(exc))
            raise
        if first is not None and last is not None and first > last:
            await _invalid(context, "from_day is after to_day")
        rows = await self._repo.daily(request.account_id, request.key_id, first, last)
        return usage_pb2.GetDailyUsageResponse(
            days=[
                usage_pb2.DailyUsage(
                    day=r.day.isoformat(), key_id=r.key_id, model=r.model, totals=_totals(r.totals)
                )
                for r in rows
            ]
        )
