"""The BalancePublisher port: billing's side of the shared balance state in Redis."""

from __future__ import annotations

from crossmodel_billing.domain.ledger import Balance
from crossmodel_common.balance_state import BalanceState


class RedisPublisher:
    def __init__(self, state: BalanceState) -> None:
        self._state = state

    async def publish(
        self,
        *,
        account_id: str,
        balance: Balance | None = None,
        release_request_id: str = "",
        key_id: str = "",
        key_spent_micros: int | None = None,
    ) -> None:
        await self._state.publish(
            account_id=account_id,
            balance_micros=None if balance is None else balance.balance_micros,
            version=0 if balance is None else balance.version,
            release_request_id=release_request_id,
            key_id=key_id,
            key_spent_micros=key_spent_micros,
        )
