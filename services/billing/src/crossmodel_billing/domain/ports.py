"""What the billing domain needs from the outside; adapters/ implement these."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from crossmodel_billing.domain.ledger import Balance, Charge, ChargeOutcome, Credit, LedgerEntry


class LedgerStore(Protocol):
    async def charge(self, charges: Sequence[Charge]) -> list[ChargeOutcome]:
        """Write the charges and the new balances in one transaction; one outcome per distinct
        request id, in order. A request id charged before changes nothing (applied=False, with
        the current balance and key spend)."""
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


@dataclass(frozen=True, slots=True)
class Publication:
    """What billing tells admission after a commit (see crossmodel_common.balance_state)."""

    account_id: str
    balance: Balance | None = None
    release_request_id: str = ""
    key_id: str = ""
    key_spent_micros: int | None = None


class BalancePublisher(Protocol):
    async def publish(self, items: Sequence[Publication]) -> None: ...
