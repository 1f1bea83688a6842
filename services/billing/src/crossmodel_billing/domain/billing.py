"""Billing's use cases: charge a finished request, credit an account, read the ledger."""

from __future__ import annotations

from collections.abc import Sequence

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
from crossmodel_billing.domain.ports import BalancePublisher, LedgerStore, Publication
from crossmodel_common.ids import new_id

MAX_ENTRIES = 1000
DEFAULT_ENTRIES = 50
_PUBLISH_BATCH = 500


def _distinct(charges: Sequence[Charge]) -> list[Charge]:
    seen: dict[str, Charge] = {}
    for c in charges:
        seen.setdefault(c.request_id, c)
    return list(seen.values())


class Billing:
    def __init__(self, store: LedgerStore, publisher: BalancePublisher) -> None:
        self._store = store
        self._publisher = publisher

    async def settle(self, charges: Sequence[Charge]) -> list[ChargeOutcome]:
        """Charge each request's cost (once per request id) and release its reservation.

        The publish runs after the commit and also for duplicates, so a publish lost to a Redis
        failure is redone when the consumer delivers the events again."""
        for charge in charges:
            validate_charge(charge)
        priced = [c for c in charges if c.cost_micros > 0]
        outcomes = await self._store.charge(priced) if priced else []
        by_request = {c.request_id: o for c, o in zip(_distinct(priced), outcomes, strict=True)}
        items = []
        for c in _distinct(charges):
            outcome = by_request.get(c.request_id)
            if outcome is None:
                # Nothing to charge (a failed or cancelled request that used no tokens): the
                # reservation is released all the same.
                items.append(Publication(c.account_id, release_request_id=c.request_id))
            else:
                items.append(
                    Publication(
                        c.account_id, outcome.balance, c.request_id, c.key_id, outcome.key_spent_micros
                    )
                )
        await self._publisher.publish(items)
        return outcomes

    async def credit(self, credit: Credit) -> CreditOutcome:
        validate_credit(credit)
        entry, replayed, balance = await self._store.credit(credit, new_id("le"))
        if replayed and not same_credit(entry, credit):
            raise FailedPrecondition(
                "idempotency_key was already used for a different amount or kind; use a new key"
            )
        try:
            await self._publisher.publish([Publication(credit.account_id, balance)])
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
        batch: list[Publication] = []
        async for balance in self._store.all_balances():
            batch.append(Publication(balance.account_id, balance))
            count += 1
            if len(batch) >= _PUBLISH_BATCH:
                await self._publisher.publish(batch)
                batch = []
        async for account_id, key_id, spent in self._store.all_key_spends():
            batch.append(Publication(account_id, key_id=key_id, key_spent_micros=spent))
            if len(batch) >= _PUBLISH_BATCH:
                await self._publisher.publish(batch)
                batch = []
        await self._publisher.publish(batch)
        return count
