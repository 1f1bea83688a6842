"""The Repository port on PostgreSQL (SQLAlchemy 2 async, asyncpg)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine

from crossmodel_auth.adapters.tables import accounts, api_keys
from crossmodel_auth.domain.errors import NotFound, Unavailable
from crossmodel_auth.domain.keys import Account, ApiKey, KeyLimits

P = ParamSpec("P")
R = TypeVar("R")

# Losing the database (refused, dropped, pool exhausted) is reported as Unavailable so callers get
# a retryable status; anything else is a bug and surfaces as one.
_UNREACHABLE = (OperationalError, InterfaceError, SQLAlchemyTimeoutError, OSError)


def _reachable(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except _UNREACHABLE as exc:
            raise Unavailable(f"database unavailable: {type(exc).__name__}") from exc

    return wrapper


def _ms(value: datetime | None) -> int:
    return int(value.timestamp() * 1000) if value is not None else 0


def _dt(ms: int) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, tz=UTC) if ms else None


def _account(row: Any) -> Account:
    return Account(id=row.id, name=row.name, created_at_ms=_ms(row.created_at), disabled=row.disabled)


def _key(row: Any) -> ApiKey:
    return ApiKey(
        id=row.id,
        account_id=row.account_id,
        name=row.name,
        last4=row.last4,
        limits=KeyLimits(
            rpm=row.rpm,
            tpm=row.tpm,
            allowed_models=tuple(row.allowed_models),
            spend_cap_micros=row.spend_cap_micros,
            expires_at_ms=_ms(row.expires_at),
        ),
        created_at_ms=_ms(row.created_at),
        last_used_at_ms=_ms(row.last_used_at),
        revoked_at_ms=_ms(row.revoked_at),
        generation=row.generation,
        account_disabled=row.account_disabled,
    )


_KEY_COLUMNS = [*api_keys.c, accounts.c.disabled.label("account_disabled")]
_KEY_FROM = api_keys.join(accounts, accounts.c.id == api_keys.c.account_id)


def _limit_values(limits: KeyLimits) -> dict[str, Any]:
    return {
        "rpm": limits.rpm,
        "tpm": limits.tpm,
        "allowed_models": list(limits.allowed_models),
        "spend_cap_micros": limits.spend_cap_micros,
        "expires_at": _dt(limits.expires_at_ms),
    }


class PostgresRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @_reachable
    async def create_account(self, account_id: str, name: str) -> Account:
        stmt = (
            insert(accounts)
            .values(id=account_id, name=name, disabled=False, created_at=func.now())
            .returning(*accounts.c)
        )
        async with self._engine.begin() as conn:
            return _account((await conn.execute(stmt)).one())

    @_reachable
    async def get_account(self, account_id: str) -> Account | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(accounts).where(accounts.c.id == account_id))).first()
        return _account(row) if row is not None else None

    @_reachable
    async def list_accounts(self, limit: int, after_id: str) -> list[Account]:
        stmt = select(accounts).order_by(accounts.c.id).limit(limit)
        if after_id:
            stmt = stmt.where(accounts.c.id > after_id)
        async with self._engine.connect() as conn:
            return [_account(r) for r in await conn.execute(stmt)]

    @_reachable
    async def create_key(
        self, *, key_id: str, account_id: str, name: str, key_hash: bytes, last4: str, limits: KeyLimits
    ) -> ApiKey:
        stmt = insert(api_keys).values(
            id=key_id,
            account_id=account_id,
            name=name,
            key_hash=key_hash,
            last4=last4,
            status="active",
            created_at=func.now(),
            generation=1,
            **_limit_values(limits),
        )
        try:
            async with self._engine.begin() as conn:
                await conn.execute(stmt)
        except IntegrityError as exc:
            raise NotFound(f"no account {account_id!r}") from exc
        key = await self.get_key(key_id)
        assert key is not None
        return key

    async def _one_key(self, where: Any) -> ApiKey | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(*_KEY_COLUMNS).select_from(_KEY_FROM).where(where))).first()
        return _key(row) if row is not None else None

    @_reachable
    async def get_key(self, key_id: str) -> ApiKey | None:
        return await self._one_key(api_keys.c.id == key_id)

    @_reachable
    async def key_by_hash(self, key_hash: bytes) -> ApiKey | None:
        return await self._one_key(api_keys.c.key_hash == key_hash)

    @_reachable
    async def list_keys(self, account_id: str) -> list[ApiKey]:
        stmt = (
            select(*_KEY_COLUMNS)
            .select_from(_KEY_FROM)
            .where(api_keys.c.account_id == account_id)
            .order_by(api_keys.c.created_at, api_keys.c.id)
        )
        async with self._engine.connect() as conn:
            return [_key(r) for r in await conn.execute(stmt)]

    @_reachable
    async def update_key(
        self,
        key_id: str,
        *,
        name: str | None,
        limits: KeyLimits | None,
        revoke_at_ms: int | None,
        before_commit: Callable[[ApiKey], Awaitable[None]],
    ) -> ApiKey | None:
        values: dict[str, Any] = {"generation": api_keys.c.generation + 1}
        if name is not None:
            values["name"] = name
        if limits is not None:
            values.update(_limit_values(limits))
        if revoke_at_ms is not None:
            values.update(status="revoked", revoked_at=_dt(revoke_at_ms))
        async with self._engine.begin() as conn:
            updated = (
                await conn.execute(
                    update(api_keys).where(api_keys.c.id == key_id).values(**values).returning(api_keys.c.id)
                )
            ).first()
            if updated is None:
                return None
            row = (
                await conn.execute(
                    select(*_KEY_COLUMNS).select_from(_KEY_FROM).where(api_keys.c.id == key_id)
                )
            ).one()
            key = _key(row)
            await before_commit(key)
        return key

    @_reachable
    async def record_last_used(self, seen: dict[str, int]) -> None:
        if not seen:
            return
        stmt = (
            update(api_keys)
            .where(api_keys.c.id == bindparam("kid"))
            .where((api_keys.c.last_used_at.is_(None)) | (api_keys.c.last_used_at < bindparam("ts")))
            .values(last_used_at=bindparam("ts"))
        )
        async with self._engine.begin() as conn:
            await conn.execute(stmt, [{"kid": k, "ts": _dt(ms)} for k, ms in sorted(seen.items())])
