"""What the domain needs from the outside world; adapters/ implement these."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from crossmodel_auth.domain.idempotency import Claim, StoredResult
from crossmodel_auth.domain.keys import Account, ApiKey, KeyLimits
from crossmodel_common.balance_state import AdmitResult


class Repository(Protocol):
    async def create_account(self, account_id: str, name: str) -> Account: ...
    async def get_account(self, account_id: str) -> Account | None: ...
    async def list_accounts(self, limit: int, after_id: str) -> list[Account]: ...

    async def create_key(
        self, *, key_id: str, account_id: str, name: str, key_hash: bytes, last4: str, limits: KeyLimits
    ) -> ApiKey: ...
    async def get_key(self, key_id: str) -> ApiKey | None: ...
    async def key_by_hash(self, key_hash: bytes) -> ApiKey | None: ...
    async def list_keys(self, account_id: str) -> list[ApiKey]: ...

    async def update_key(
        self,
        key_id: str,
        *,
        name: str | None,
        limits: KeyLimits | None,
        revoke_at_ms: int | None,
        before_commit: Callable[[ApiKey], Awaitable[None]],
    ) -> ApiKey | None:
        """Apply the change and bump the key's generation; `before_commit` runs inside the
        transaction with the new record, and its failure rolls the change back."""
        ...

    async def record_last_used(self, seen: dict[str, int]) -> None: ...


class Wallet(Protocol):
    async def admit(
        self,
        *,
        account_id: str,
        key_id: str,
        generation: int,
        request_id: str,
        tokens: int,
        reserve_micros: int,
        rpm: int,
        tpm: int,
        spend_cap_micros: int,
    ) -> AdmitResult: ...

    async def settle_tokens(
        self, *, account_id: str, key_id: str, request_id: str, actual_tokens: int
    ) -> int: ...

    async def seed_balance(self, account_id: str, balance_micros: int) -> bool: ...
    async def seed_key_spent(self, account_id: str, key_id: str, spent_micros: int) -> None: ...
    async def publish_key_generation(self, account_id: str, key_id: str, generation: int) -> None: ...
    async def key_generation(self, account_id: str, key_id: str) -> int | None: ...


class BalanceSource(Protocol):
    """Billing, asked only when Redis has lost an account's balance or a key's spend."""

    async def balance(self, account_id: str) -> int: ...
    async def key_spend(self, key_id: str) -> int: ...


class UsageRecorder(Protocol):
    def note(self, key_id: str, at_ms: int) -> None: ...


class IdempotencyStore(Protocol):
    """Idempotency-Key records (crossmodel_auth.domain.idempotency)."""

    async def claim(
        self, account_id: str, idempotency_key: str, body_hash: bytes, request_id: str
    ) -> Claim: ...

    async def complete(
        self,
        account_id: str,
        idempotency_key: str,
        request_id: str,
        *,
        keep: bool,
        result: StoredResult | None,
    ) -> bool: ...
