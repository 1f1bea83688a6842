"""Account and key management: validation and the order of effects, no I/O of its own."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from crossmodel_auth.domain.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from crossmodel_auth.domain.keys import Account, ApiKey, KeyLimits, hash_secret, validate_limits
from crossmodel_auth.domain.ports import Repository, Wallet
from crossmodel_common.ids import new_api_key, new_id

MAX_PAGE = 1000
DEFAULT_PAGE = 100


class Directory:
    def __init__(self, repo: Repository, wallet: Wallet, *, clock: Callable[[], float] = time.time) -> None:
        self._repo = repo
        self._wallet = wallet
        self._clock = clock

    async def create_account(self, name: str) -> Account:
        name = name.strip()
        if not name:
            raise InvalidArgument("name is required")
        return await self._repo.create_account(new_id("acct"), name)

    async def get_account(self, account_id: str) -> Account:
        account = await self._repo.get_account(account_id)
        if account is None:
            raise NotFound(f"no account {account_id!r}")
        return account

    async def list_accounts(self, page_size: int, page_token: str) -> tuple[list[Account], str]:
        size = min(page_size, MAX_PAGE) if page_size > 0 else DEFAULT_PAGE
        accounts = await self._repo.list_accounts(size + 1, page_token)
        if len(accounts) > size:
            return accounts[:size], accounts[size - 1].id
        return accounts, ""

    async def create_key(self, account_id: str, name: str, limits: KeyLimits) -> tuple[ApiKey, str]:
        """Returns the key and its secret; the secret exists nowhere else afterwards."""
        name = name.strip()
        if not name:
            raise InvalidArgument("name is required")
        validate_limits(limits)
        await self.get_account(account_id)
        secret = new_api_key()
        key = await self._repo.create_key(
            key_id=new_id("key"),
            account_id=account_id,
            name=name,
            key_hash=hash_secret(secret),
            last4=secret[-4:],
            limits=limits,
        )
        # Admission reloads a key whose generation Redis does not know, so this only saves the
        # first request that reload; failing the call here would lose a secret already issued.
        with contextlib.suppress(Unavailable):
            await self._wallet.publish_key_generation(key.account_id, key.id, key.generation)
        return key, secret

    async def get_key(self, key_id: str, account_id: str = "") -> ApiKey:
        key = await self._repo.get_key(key_id)
        if key is None or (account_id and key.account_id != account_id):
            raise NotFound(f"no key {key_id!r}")
        return key

    async def list_keys(self, account_id: str) -> list[ApiKey]:
        await self.get_account(account_id)
        return await self._repo.list_keys(account_id)

    async def update_key(
        self, key_id: str, account_id: str, *, name: str | None, limits: KeyLimits | None
    ) -> ApiKey:
        key = await self.get_key(key_id, account_id)
        if key.revoked_at_ms:
            raise FailedPrecondition("a revoked key cannot be changed")
        if name is not None:
            name = name.strip()
            if not name:
                raise InvalidArgument("name must not be empty")
        if limits is not None:
            validate_limits(limits)
        return await self._change(key_id, name=name, limits=limits, revoke_at_ms=None)

    async def revoke_key(self, key_id: str, account_id: str = "") -> ApiKey:
        key = await self.get_key(key_id, account_id)
        if key.revoked_at_ms:
            return key
        return await self._change(key_id, name=None, limits=None, revoke_at_ms=int(self._clock() * 1000))

    async def _change(
        self, key_id: str, *, name: str | None, limits: KeyLimits | None, revoke_at_ms: int | None
    ) -> ApiKey:
        async def publish(updated: ApiKey) -> None:
            # Inside the transaction: if Redis cannot be told, the change is rolled back and the
            # caller sees an error, so a successful revoke is in force on every replica at once.
            await self._wallet.publish_key_generation(updated.account_id, updated.id, updated.generation)

        key = await self._repo.update_key(
            key_id, name=name, limits=limits, revoke_at_ms=revoke_at_ms, before_commit=publish
        )
        if key is None:
            raise NotFound(f"no key {key_id!r}")
        return key
