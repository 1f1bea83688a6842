"""The console's users and sessions on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from asyncpg.exceptions import (  # type: ignore[import-untyped]
    ForeignKeyViolationError,
    UniqueViolationError,
)
from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from crossmodel_auth.adapters.console_tables import console_sessions, console_users
from crossmodel_auth.adapters.postgres import _reachable
from crossmodel_auth.adapters.tables import accounts
from crossmodel_auth.domain.console import AlreadyExists, ConsoleUser, StoredUser
from crossmodel_auth.domain.errors import NotFound
from crossmodel_auth.domain.keys import Account


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _user(row: Any) -> ConsoleUser:
    return ConsoleUser(
        id=row.id, account_id=row.account_id, email=row.email, created_at_ms=_ms(row.created_at)
    )


def _account(row: Any) -> Account:
    return Account(
        id=row.acct_id, name=row.acct_name, created_at_ms=_ms(row.acct_created_at), disabled=row.acct_disabled
    )


_ACCOUNT_COLUMNS = (
    accounts.c.id.label("acct_id"),
    accounts.c.name.label("acct_name"),
    accounts.c.created_at.label("acct_created_at"),
    accounts.c.disabled.label("acct_disabled"),
)


def _cause(exc: IntegrityError) -> object:
    return getattr(exc.orig, "__cause__", None) or exc.orig


class ConsolePostgres:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @_reachable
    async def create_user(
        self,
        *,
        user_id: str,
        email: str,
        password_hash: str,
        account_id: str,
        new_account_name: str | None,
    ) -> tuple[ConsoleUser, Account]:
        try:
            async with self._engine.begin() as conn:
                if new_account_name is not None:
                    await conn.execute(
                        insert(accounts).values(
                            id=account_id, name=new_account_name, disabled=False, created_at=func.now()
                        )
                    )
                row = (
                    await conn.execute(
                        insert(console_users)
                        .values(
                            id=user_id,
                            account_id=account_id,
                            email=email,
                            password_hash=password_hash,
                            created_at=func.now(),
                        )
                        .returning(*console_users.c)
                    )
                ).one()
                acct = (
                    await conn.execute(select(*_ACCOUNT_COLUMNS).where(accounts.c.id == account_id))
                ).one()
        except IntegrityError as exc:
            cause = _cause(exc)
            if isinstance(cause, UniqueViolationError):
                raise AlreadyExists("a console user with this email already exists") from exc
            if isinstance(cause, ForeignKeyViolationError):
                raise NotFound(f"no account {account_id!r}") from exc
            raise
        return _user(row), _account(acct)

    @_reachable
    async def user_by_email(self, email: str) -> StoredUser | None:
        stmt = (
            select(*console_users.c, accounts.c.disabled.label("account_disabled"))
            .select_from(console_users.join(accounts, accounts.c.id == console_users.c.account_id))
            .where(console_users.c.email == email)
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        if row is None:
            return None
        return StoredUser(_user(row), row.password_hash, row.account_disabled)

    @_reachable
    async def create_session(self, *, token_hash: bytes, user_id: str, expires_at_ms: int) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                insert(console_sessions).values(
                    token_hash=token_hash,
                    user_id=user_id,
                    created_at=func.now(),
                    expires_at=_dt(expires_at_ms),
                )
            )

    @_reachable
    async def session(self, token_hash: bytes, now_ms: int) -> tuple[ConsoleUser, Account, int] | None:
        stmt = (
            select(
                *console_users.c, *_ACCOUNT_COLUMNS, console_sessions.c.expires_at.label("session_expires")
            )
            .select_from(
                console_sessions.join(console_users, console_users.c.id == console_sessions.c.user_id).join(
                    accounts, accounts.c.id == console_users.c.account_id
                )
            )
            .where(console_sessions.c.token_hash == token_hash, console_sessions.c.expires_at > _dt(now_ms))
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        if row is None:
            return None
        return _user(row), _account(row), _ms(row.session_expires)

    @_reachable
    async def delete_session(self, token_hash: bytes) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(delete(console_sessions).where(console_sessions.c.token_hash == token_hash))

    @_reachable
    async def delete_expired_sessions(self, user_id: str, now_ms: int) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                delete(console_sessions).where(
                    console_sessions.c.user_id == user_id, console_sessions.c.expires_at <= _dt(now_ms)
                )
            )
