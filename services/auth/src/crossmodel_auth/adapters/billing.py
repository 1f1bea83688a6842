"""The BalanceSource port on billing's gRPC API (the fallback when Redis lost the state)."""

from __future__ import annotations

import grpc

from crossmodel.billing.v1 import billing_pb2, billing_pb2_grpc
from crossmodel_auth.domain.errors import Unavailable


class BillingBalances:
    def __init__(self, channel: grpc.aio.Channel, *, timeout: float = 2.0) -> None:
        self._stub = billing_pb2_grpc.BillingServiceStub(channel)
        self._timeout = timeout

    async def balance(self, account_id: str) -> int:
        try:
            resp = await self._stub.GetBalance(
                billing_pb2.GetBalanceRequest(account_id=account_id), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise Unavailable(f"billing could not report the balance: {exc.code().name}") from exc
        return int(resp.balance_micros)

    async def key_spend(self, key_id: str) -> int:
        try:
            resp = await self._stub.GetKeySpend(
                billing_pb2.GetKeySpendRequest(key_id=key_id), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise Unavailable(f"billing could not report the key's spend: {exc.code().name}") from exc
        return int(resp.spent_micros)
