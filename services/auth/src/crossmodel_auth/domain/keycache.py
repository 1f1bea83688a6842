"""In-process cache of key lookups by hash.

Freshness does not depend on the TTL: every admission compares the cached record's generation
with the one in Redis (inside the admission script), and a mismatch reloads the record. The TTL
only bounds memory and how long an account's `disabled` flag may be seen late.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from crossmodel_auth.domain.keys import ApiKey

Loader = Callable[[bytes], Awaitable[ApiKey | None]]


class KeyCache:
    def __init__(
        self,
        load: Loader,
        *,
        ttl_seconds: float,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        # Unknown hashes are cached too (as None): a client retrying a bad key must not turn
        # every attempt into a database query. A new key cannot collide with one (288 bits).
        self._entries: dict[bytes, tuple[ApiKey | None, float]] = {}
        self._loading: dict[bytes, asyncio.Future[ApiKey | None]] = {}
        self._accounts: dict[str, str] = {}

    async def get(self, key_hash: bytes) -> ApiKey | None:
        hit = self._entries.get(key_hash)
        if hit is not None and hit[1] > self._clock():
            return hit[0]
        return await self.refresh(key_hash)

    async def refresh(self, key_hash: bytes) -> ApiKey | None:
        """Load from the store, sharing one query among concurrent callers."""
        pending = self._loading.get(key_hash)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[ApiKey | None] = asyncio.get_running_loop().create_future()
        self._loading[key_hash] = fut
        try:
            key = await self._load(key_hash)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: the waiters (if any) re-raise it
            raise
        finally:
            self._loading.pop(key_hash, None)
        fut.set_result(key)
        self.put(key_hash, key)
        return key

    def put(self, key_hash: bytes, key: ApiKey | None) -> None:
        if len(self._entries) >= self._max and key_hash not in self._entries:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key_hash] = (key, self._clock() + self._ttl)
        if key is not None:
            self.remember_account(key.id, key.account_id)

    def account_of(self, key_id: str) -> str | None:
        """A key never changes account, so this mapping is never stale."""
        return self._accounts.get(key_id)

    def remember_account(self, key_id: str, account_id: str) -> None:
        if len(self._accounts) >= self._max:
            self._accounts.pop(next(iter(self._accounts)))
        self._accounts[key_id] = account_id
