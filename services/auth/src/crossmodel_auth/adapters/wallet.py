"""The Wallet port: the shared balance-state scripts, with Redis failures reported as the
domain's Unavailable so the caller gets a retryable status instead of an unknown error."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from redis.exceptions import RedisError

from crossmodel_auth.domain.errors import Unavailable
from crossmodel_common.balance_state import AdmitResult, BalanceState

T = TypeVar("T")


async def _guard(call: Awaitable[T]) -> T:
    try:
        return await call
    except RedisError as exc:
        raise Unavailable(f"admission state unavailable: {type(exc).__name__}") from exc


class RedisWallet(BalanceState):
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
    ) -> AdmitResult:
        return await _guard(
            super().admit(
                account_id=account_id,
                key_id=key_id,
                generation=generation,
                request_id=request_id,
                tokens=tokens,
                reserve_micros=reserve_micros,
                rpm=rpm,
                tpm=tpm,
                spend_cap_micros=spend_cap_micros,
            )
        )

    async def settle_tokens(
        self, *, account_id: str, key_id: str, request_id: str, actual_tokens: int
    ) -> int:
        return await _guard(
            super().settle_tokens(
                account_id=account_id, key_id=key_id, request_id=request_id, actual_tokens=actual_tokens
            )
        )

    async def seed_balance(self, account_id: str, balance_micros: int) -> bool:
        return await _guard(super().seed_balance(account_id, balance_micros))

    async def seed_key_spent(self, account_id: str, key_id: str, spent_micros: int) -> None:
        await _guard(super().seed_key_spent(account_id, key_id, spent_micros))

    async def publish_key_generation(self, account_id: str, key_id: str, generation: int) -> None:
        await _guard(super().publish_key_generation(account_id, key_id, generation))

    async def key_generation(self, account_id: str, key_id: str) -> int | None:
        return await _guard(super().key_generation(account_id, key_id))
