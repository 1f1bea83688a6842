"""The BalancePublisher port: billing's side of the shared balance state in Redis."""

from __future__ import annotations

from collections.abc import Sequence

from crossmodel_billing.domain.ports import Publication
from crossmodel_common.balance_state import BalanceState, Publish


class RedisPublisher:
    def __init__(self, state: BalanceState) -> None:
        self._state = state

    async def publish(self, items: Sequence[Publication]) -> None:
        await self._state.publish_many(
            [
                Publish(
                    account_id=i.account_id,
                    balance_micros=None if i.balance is None else i.balance.balance_micros,
                    version=0 if i.balance is None else i.balance.version,
                    release_request_id=i.release_request_id,
                    key_id=i.key_id,
                    key_spent_micros=i.key_spent_micros,
                )
                for i in items
            ]
        )
