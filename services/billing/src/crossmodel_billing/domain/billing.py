"""Billing's use cases: charge a finished request, credit an account, read the ledger."""

from __future__ import annotations

from crossmodel_billing.domain.ledger import (
    Balance,
    Charge,
    ChargeOutcome,
    Credit,
    CreditOutcome,
    FailedPrecondition,
    LedgerEntry,
    Unavailable,
    same_credit,
    validate_charge,
    validate_credit,
)
from crossmodel_billing.domain.ports import BalancePublisher, LedgerStore
from crossmodel_common.ids import new_id

MAX_ENTRIES = 1000
DEFAULT_ENTRIES = 50


class Billing:
    def __init__(self, store: LedgerStore, publisher: BalancePublisher) -> None:
        self._store = store
        self._publisher = publisher

    async def settle(self, charge: Charge) -> ChargeOutcome | None:
        """Charge the request's cost (once per request id) and release its reservation.

        The publish runs after the commit and also for duplicates, so a publish lost to a Redis
        failure is redone when the consumer retries the event."""
        validate_charge(charge)
        if charge.cost_micros == 0:
            # Nothing to charge (a failed or cancelled request that used no tokens): the
            # reservation is released all the same.
            await self._publisher.publish(account_id=charge.account_id, release_request_id=charge.request_id)
            return None
        outcome = await self._store.charge(charge)
        await self._publisher.publish(
            account_id=charge.account_id,
            balance=outcome.balance,
            release_request_id=charge.request_id,
            key_id=charge.key_id,
            key_spent_micros=outcome.key_spent_micros,
        )
        return outcome

    async def credit(self, credit: Credit) -> CreditOutcome:
        validate_credit(credit)
        entry, replayed, balance = await self._store.credit(credit, new_id("le"))
        if replayed and not same_credit(entry, credit):
            raise FailedPrecondition(
                "idempotency_key was already used for a different amount or kind; use a new key"
            )
        try:
            await self._publisher.publish(account_id=credit.account_id, balance=balance)
        except Exception as exc:
            raise Unavailable(
                "the credit is recorded but the balance could not be published; "
                "retry with the same idempotency_key"
            ) from exc
        return CreditOutcome(entry, replayed, balance)

    async def balance(self, account_id: str) -> Balance:
        return await self._store.balance(account_id)

    async def entries(self, account_id: str, limit: int, before_ms: int) -> list[LedgerEntry]:
        size = min(limit, MAX_ENTRIES) if limit > 0 else DEFAULT_ENTRIES
        return await self._store.entries(account_id, size, before_ms)

    async def key_spend(self, key_id: str) -> int:
        return await self._store.key_spend(key_id)

    async def publish_all(self) -> int:
        """Publish every balance and key spend to Redis (on start, so a Redis that lost its data
        heals without waiting for each account's next ledger entry). Returns accounts published."""
        count = 0
        async for balance in self._store.all_balances():
            await self._publisher.publish(account_id=balance.account_id, balance=balance)
            count += 1
        async for account_id, key_id, spent in self._store.all_key_spends():
            await self._publisher.publish(account_id=account_id, key_id=key_id, key_spent_micros=spent)
        return count
