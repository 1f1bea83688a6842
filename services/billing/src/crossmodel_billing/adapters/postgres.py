"""The LedgerStore port on PostgreSQL (SQLAlchemy 2 async, asyncpg).

Every ledger entry and the balance it produces are written in one transaction; the balance row
is the lock that orders an account's entries, and its version numbers them in commit order."""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from crossmodel_billing.adapters.tables import balances, key_spend, ledger_entries
from crossmodel_billing.domain.ledger import (
    Balance,
    Charge,
    ChargeOutcome,
    Credit,
    EntryKind,
    LedgerEntry,
    Unavailable,
)
from crossmodel_common.ids import new_id

_PAGE = 1000


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


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def _balance(row: Any) -> Balance:
    return Balance(
        account_id=row.account_id,
        balance_micros=row.balance_micros,
        total_charged_micros=row.total_charged_micros,
        total_credited_micros=row.total_credited_micros,
        version=row.version,
    )


def _entry(row: Any) -> LedgerEntry:
    return LedgerEntry(
        id=row.id,
        account_id=row.account_id,
        kind=EntryKind(row.kind),
        amount_micros=row.amount_micros,
        balance_after_micros=row.balance_after_micros,
        created_at_ms=_ms(row.created_at),
        request_id=row.request_id or "",
        idempotency_key=row.idempotency_key or "",
        description=row.description,
        key_id=row.key_id,
        model=row.model,
    )


class PostgresLedger:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @staticmethod
    async def _apply(conn: AsyncConnection, account_id: str, amount: int, *, entries: int = 1) -> Balance:
        """Add `amount` (signed, the sum of `entries` ledger entries) to the account's balance,
        creating it at 0 first; locks the row until the transaction ends."""
        charged = -amount if amount < 0 else 0
        credited = amount if amount > 0 else 0
        stmt = (
            insert(balances)
            .values(
                account_id=account_id,
                balance_micros=amount,
                total_charged_micros=charged,
                total_credited_micros=credited,
                version=entries,
                updated_at=func.now(),
            )
            .on_conflict_do_update(
                index_elements=[balances.c.account_id],
                set_={
                    "balance_micros": balances.c.balance_micros + amount,
                    "total_charged_micros": balances.c.total_charged_micros + charged,
                    "total_credited_micros": balances.c.total_credited_micros + credited,
                    "version": balances.c.version + entries,
                    "updated_at": func.now(),
                },
            )
            .returning(*balances.c)
        )
        return _balance((await conn.execute(stmt)).one())

    @staticmethod
    async def _read_balance(conn: AsyncConnection, account_id: str) -> Balance:
        row = (await conn.execute(select(balances).where(balances.c.account_id == account_id))).first()
        return _balance(row) if row is not None else Balance(account_id=account_id)

    @staticmethod
    async def _read_spend(conn: AsyncConnection, key_id: str) -> int | None:
        if not key_id:
            return None
        spent = (
            await conn.execute(select(key_spend.c.spent_micros).where(key_spend.c.key_id == key_id))
        ).scalar()
        return int(spent) if spent is not None else 0

    @staticmethod
    async def _exists(conn: AsyncConnection, where: ColumnElement[bool]) -> Any:
        return (await conn.execute(select(ledger_entries).where(where))).first()

    @_reachable
    async def charge(self, charges: Sequence[Charge]) -> list[ChargeOutcome]:
        """One transaction for the whole batch: group commit is what lets one consumer keep up
        (a commit waits for the WAL flush; a charge per commit would cap it at the disk's fsync
        rate). Returns one outcome per distinct request id, in order."""
        unique: dict[str, Charge] = {}
        for c in charges:
            unique.setdefault(c.request_id, c)
        # A concurrent delivery of the same events (another consumer after a rebalance) can win
        # an insert; the batch then rolls back and is retried, finding those as duplicates.
        for _ in range(3):
            outcomes = await self._charge_once(list(unique.values()))
            if outcomes is not None:
                return outcomes
        raise Unavailable("concurrent deliveries of the same events kept conflicting; retry")

    async def _charge_once(self, charges: list[Charge]) -> list[ChargeOutcome] | None:
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(ledger_entries.c.request_id).where(
                    (ledger_entries.c.kind == EntryKind.CHARGE.value)
                    & ledger_entries.c.request_id.in_([c.request_id for c in charges])
                )
            )
            seen = {r.request_id for r in rows}
            by_account: dict[str, list[Charge]] = defaultdict(list)
            for c in charges:
                if c.request_id not in seen:
                    by_account[c.account_id].append(c)

            balances_now: dict[str, Balance] = {}
            entries: list[dict[str, Any]] = []
            spends: dict[str, tuple[str, int]] = {}
            # Accounts in a fixed order, so concurrent batches take the balance locks in the same
            # order and cannot deadlock.
            for account_id in sorted(by_account):
                batch = by_account[account_id]
                total = sum(c.cost_micros for c in batch)
                final = await self._apply(conn, account_id, -total, entries=len(batch))
                balances_now[account_id] = final
                running, version = final.balance_micros + total, final.version - len(batch)
                for c in batch:
                    running -= c.cost_micros
                    version += 1
                    entries.append(
                        {
                            "id": new_id("le"),
                            "account_id": account_id,
                            "kind": EntryKind.CHARGE.value,
                            "amount_micros": -c.cost_micros,
                            "balance_after_micros": running,
                            "balance_version": version,
                            "request_id": c.request_id,
                            "key_id": c.key_id,
                            "model": c.model,
                            "description": c.description,
                        }
                    )
                    if c.key_id:
                        spends[c.key_id] = (account_id, spends.get(c.key_id, ("", 0))[1] + c.cost_micros)
            if entries:
                inserted = await conn.execute(
                    insert(ledger_entries).on_conflict_do_nothing().returning(ledger_entries.c.request_id),
                    entries,
                )
                if len(inserted.all()) != len(entries):
                    await conn.rollback()
                    return None

            spent_now: dict[str, int] = {}
            for key_id in sorted(spends):
                account_id, amount = spends[key_id]
                spent_now[key_id] = (
                    await conn.execute(
                        insert(key_spend)
                        .values(
                            key_id=key_id, account_id=account_id, spent_micros=amount, updated_at=func.now()
                        )
                        .on_conflict_do_update(
                            index_elements=[key_spend.c.key_id],
                            set_={
                                "spent_micros": key_spend.c.spent_micros + amount,
                                "updated_at": func.now(),
                            },
                        )
                        .returning(key_spend.c.spent_micros)
                    )
                ).scalar_one()
            # Duplicates change nothing, but their release and publish are redone with the
            # current state (the publish after their first commit may have been lost).
            for c in charges:
                if c.account_id not in balances_now:
                    balances_now[c.account_id] = await self._read_balance(conn, c.account_id)
                if c.key_id and c.key_id not in spent_now:
                    spent_now[c.key_id] = await self._read_spend(conn, c.key_id) or 0
            await conn.commit()
        return [
            ChargeOutcome(
                c.request_id not in seen,
                balances_now[c.account_id],
                spent_now[c.key_id] if c.key_id else None,
            )
            for c in charges
        ]

    @_reachable
    async def credit(self, credit: Credit, entry_id: str) -> tuple[LedgerEntry, bool, Balance]:
        same_key = (ledger_entries.c.account_id == credit.account_id) & (
            ledger_entries.c.idempotency_key == credit.idempotency_key
        )
        kind = EntryKind.ADJUSTMENT if credit.adjustment else EntryKind.TOP_UP
        async with self._engine.connect() as conn:
            if await self._exists(conn, same_key) is None:
                balance = await self._apply(conn, credit.account_id, credit.amount_micros)
                row = (
                    await conn.execute(
                        insert(ledger_entries)
                        .values(
                            id=entry_id,
                            account_id=credit.account_id,
                            kind=kind.value,
                            amount_micros=credit.amount_micros,
                            balance_after_micros=balance.balance_micros,
                            balance_version=balance.version,
                            idempotency_key=credit.idempotency_key,
                            key_id="",
                            model="",
                            description=credit.description,
                            created_at=func.now(),
                        )
                        .on_conflict_do_nothing()
                        .returning(*ledger_entries.c)
                    )
                ).first()
                if row is not None:
                    await conn.commit()
                    return _entry(row), False, balance
                await conn.rollback()
            earlier = await self._exists(conn, same_key)
            balance = await self._read_balance(conn, credit.account_id)
            await conn.rollback()
        return _entry(earlier), True, balance

    @_reachable
    async def balance(self, account_id: str) -> Balance:
        async with self._engine.connect() as conn:
            return await self._read_balance(conn, account_id)

    @_reachable
    async def entries(self, account_id: str, limit: int, before_ms: int) -> list[LedgerEntry]:
        stmt = (
            select(ledger_entries)
            .where(ledger_entries.c.account_id == account_id)
            .order_by(ledger_entries.c.created_at.desc(), ledger_entries.c.id.desc())
            .limit(limit)
        )
        if before_ms > 0:
            stmt = stmt.where(ledger_entries.c.created_at < datetime.fromtimestamp(before_ms / 1000, tz=UTC))
        async with self._engine.connect() as conn:
            return [_entry(r) for r in await conn.execute(stmt)]

    @_reachable
    async def key_spend(self, key_id: str) -> int:
        async with self._engine.connect() as conn:
            return await self._read_spend(conn, key_id) or 0

    async def all_balances(self) -> AsyncIterator[Balance]:
        after = ""
        while True:
            stmt = (
                select(balances)
                .where(balances.c.account_id > after)
                .order_by(balances.c.account_id)
                .limit(_PAGE)
            )
            async with self._engine.connect() as conn:
                rows = (await conn.execute(stmt)).all()
            for row in rows:
                yield _balance(row)
            if len(rows) < _PAGE:
                return
            after = rows[-1].account_id

    async def all_key_spends(self) -> AsyncIterator[tuple[str, str, int]]:
        after = ""
        while True:
            stmt = (
                select(key_spend).where(key_spend.c.key_id > after).order_by(key_spend.c.key_id).limit(_PAGE)
            )
            async with self._engine.connect() as conn:
                rows = (await conn.execute(stmt)).all()
            for row in rows:
                yield row.account_id, row.key_id, row.spent_micros
            if len(rows) < _PAGE:
                return
            after = rows[-1].key_id
