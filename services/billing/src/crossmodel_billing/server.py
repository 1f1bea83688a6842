"""BillingService servicer: translates the wire messages to domain calls and back."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import NoReturn, TypeVar

import grpc

from crossmodel.billing.v1 import billing_pb2 as pb
from crossmodel.billing.v1 import billing_pb2_grpc
from crossmodel_billing.domain.billing import Billing
from crossmodel_billing.domain.ledger import (
    BillingError,
    Credit,
    EntryKind,
    FailedPrecondition,
    InvalidArgument,
    LedgerEntry,
    Unavailable,
)

T = TypeVar("T")
Context = grpc.aio.ServicerContext[object, object]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["BillingService"].full_name

_KINDS = {
    EntryKind.CHARGE: pb.ENTRY_KIND_CHARGE,
    EntryKind.TOP_UP: pb.ENTRY_KIND_TOP_UP,
    EntryKind.ADJUSTMENT: pb.ENTRY_KIND_ADJUSTMENT,
}
_CODES: list[tuple[type[BillingError], grpc.StatusCode]] = [
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
]


async def _call(context: Context, call: Awaitable[T]) -> T:
    try:
        return await call
    except BillingError as exc:
        await _abort(context, exc)


async def _abort(context: Context, exc: BillingError) -> NoReturn:
    code = next((c for t, c in _CODES if isinstance(exc, t)), grpc.StatusCode.INTERNAL)
    await context.abort(code, str(exc))
    raise AssertionError("unreachable")  # context.abort raises


def entry_pb(entry: LedgerEntry) -> pb.LedgerEntry:
    return pb.LedgerEntry(
        id=entry.id,
        account_id=entry.account_id,
        kind=_KINDS[entry.kind],
        amount_micros=entry.amount_micros,
        balance_after_micros=entry.balance_after_micros,
        request_id=entry.request_id,
        idempotency_key=entry.idempotency_key,
        description=entry.description,
        created_at_unix_ms=entry.created_at_ms,
        key_id=entry.key_id,
        model=entry.model,
    )


class BillingServicer(billing_pb2_grpc.BillingServiceServicer):
    def __init__(self, billing: Billing, *, currency: str) -> None:
        self._billing = billing
        self._currency = currency

    async def GetBalance(self, request: pb.GetBalanceRequest, context: Context) -> pb.GetBalanceResponse:
        if not request.account_id:
            await _abort(context, InvalidArgument("account_id is required"))
        b = await _call(context, self._billing.balance(request.account_id))
        return pb.GetBalanceResponse(
            account_id=b.account_id,
            balance_micros=b.balance_micros,
            total_charged_micros=b.total_charged_micros,
            total_credited_micros=b.total_credited_micros,
            currency=self._currency,
        )

    async def TopUp(self, request: pb.TopUpRequest, context: Context) -> pb.TopUpResponse:
        outcome = await _call(
            context,
            self._billing.credit(
                Credit(
                    account_id=request.account_id,
                    amount_micros=request.amount_micros,
                    idempotency_key=request.idempotency_key,
                    description=request.description,
                    adjustment=request.adjustment,
                )
            ),
        )
        return pb.TopUpResponse(
            entry=entry_pb(outcome.entry),
            replayed=outcome.replayed,
            balance_micros=outcome.balance.balance_micros,
        )

    async def ListLedger(self, request: pb.ListLedgerRequest, context: Context) -> pb.ListLedgerResponse:
        if not request.account_id:
            await _abort(context, InvalidArgument("account_id is required"))
        entries = await _call(
            context, self._billing.entries(request.account_id, request.limit, request.before_unix_ms)
        )
        return pb.ListLedgerResponse(entries=[entry_pb(e) for e in entries])

    async def GetKeySpend(self, request: pb.GetKeySpendRequest, context: Context) -> pb.GetKeySpendResponse:
        return pb.GetKeySpendResponse(
            spent_micros=await _call(context, self._billing.key_spend(request.key_id))
        )
