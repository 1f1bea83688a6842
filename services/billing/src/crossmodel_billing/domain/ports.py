"""What the billing domain needs from the outside; adapters/ implement these."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from crossmodel_billing.domain.ledger import Balance, Charge, ChargeOutcome, Credit, LedgerEntry


class LedgerStore(Protocol):
    async def charge(self, charge: Charge) -> ChargeOutcome:
        """Write the charge and the new balance in one transaction; a request id charged
        before changes nothing (applied=False, current balance)."""
        ...

    async def credit(self, credit: Credit, entry_id: str) -> tuple[LedgerEntry, bool, Balance]:
        """Write the credit; when the idempotency key was used before, return the earlier entry
        and True instead."""
        ...

    async def balance(self, account_id: str) -> Balance: ...
    async def entries(self, account_id: str, limit: int, before_ms: int) -> list[LedgerEntry]: ...
    async def key_spend(self, key_id: str) -> int: ...
    def all_balances(self) -> AsyncIterator[Balance]: ...
    def all_key_spends(self) -> AsyncIterator[tuple[str, str, int]]: ...


class BalancePublisher(Protocol):
    async def publish(
        self,
        *,
        account_id: str,
        balance: Balance | None = None,
        release_request_id: str = "",
        key_id: str = "",
        key_spent_micros: int | None = None,
    ) -> None: ...
