"""The request log and the daily aggregates in PostgreSQL."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Sequence
from datetime import date
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Date,
    DateTime,
    Integer,
    Select,
    Text,
    bindparam,
    case,
    func,
    literal,
    select,
    text,
    tuple_,
    union_all,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import TextClause

from crossmodel_usage.adapters.tables import request_log, usage_daily
from crossmodel_usage.domain.queries import (
    Cursor,
    DailyUsage,
    RequestFilter,
    TimeRange,
    Totals,
    TotalsPlan,
    Unavailable,
)
from crossmodel_usage.domain.records import InvalidRecord, Status, UsageRecord, to_datetime, to_unix_ms

_RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(UsageRecord))
_PLAIN_FIELDS = tuple(n for n in _RECORD_FIELDS if n not in ("status", "started_at_ms", "finished_at_ms"))
_LOG_COLUMNS = [request_log.c[n] for n in (*_PLAIN_FIELDS, "status", "started_at", "finished_at")]
# The aggregate counters and, for each, what one request adds to it.
_COUNTERS = (
    "requests",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_micros",
    "errors",
)
_TOTALS_FIELDS = tuple(f.name for f in dataclasses.fields(Totals))


def _log_row(record: UsageRecord) -> dict[str, Any]:
    row: dict[str, Any] = {n: getattr(record, n) for n in _PLAIN_FIELDS}
    row["status"] = record.status.value
    row["started_at"] = to_datetime(record.started_at_ms)
    row["finished_at"] = to_datetime(record.finished_at_ms) if record.finished_at_ms else None
    return row


def _record_statement() -> TextClause:
    """Insert a log row unless its request id exists and, only when it was inserted (the
    aggregate insert selects from the log insert's RETURNING), add it to its day's aggregate.

    Plain SQL built once from the tables: SQLAlchemy cannot cache the compiled form of
    PostgreSQL's INSERT … ON CONFLICT, and compiling it costs more than running it. Its
    parameters are named after the log's columns, plus `day` and `errors`."""
    log = [c.name for c in _LOG_COLUMNS]
    day_key = ["account_id", "day", "key_id", "model"]
    adds = {"requests": "1", **{n: f":{n}" for n in _COUNTERS if n in log}, "errors": ":errors"}
    sql = f"""
        WITH inserted AS (
            INSERT INTO request_log ({", ".join(log)})
            VALUES ({", ".join(f":{n}" for n in log)})
            ON CONFLICT (request_id) DO NOTHING
            RETURNING request_id
        )
        INSERT INTO usage_daily ({", ".join(day_key)}, {", ".join(adds)})
        SELECT {", ".join(f":{n}" for n in day_key)}, {", ".join(adds.values())} FROM inserted
        ON CONFLICT ({", ".join(day_key)}) DO UPDATE SET
            {", ".join(f"{n} = usage_daily.{n} + excluded.{n}" for n in _COUNTERS)}
        RETURNING 1
    """  # noqa: S608 - every name comes from the table definitions, every value is a parameter
    return text(sql).bindparams(
        *(bindparam(c.name, type_=c.type) for c in _LOG_COLUMNS),
        bindparam("day", type_=Date),
        bindparam("errors", type_=BigInteger),
    )


# PostgreSQL's name for each column type, to pass a batch's columns as arrays.
_SQL_TYPES: dict[type, str] = {
    Text: "text",
    Boolean: "boolean",
    Integer: "integer",
    BigInteger: "bigint",
    DateTime: "timestamptz",
    Date: "date",
}


def _record_many_statement() -> TextClause:
    """The batch form of `_record_statement`: one array parameter per column (plus `day` and
    `errors`), unnested into rows; the rows whose request id is new go to the log, and only
    those, summed per (account, day, key, model), to the aggregates. Selects how many were new.

    The batch must not hold one request id twice (the aggregates would count it twice):
    `record_many` drops repeats first. `sum(bigint)` is numeric, assigned back to bigint (an
    overflow fails the statement, as it does for one record). Rows are inserted in key order,
    so that two batches writing the same rows at once (replicas during a rebalance) lock them
    in the same order instead of deadlocking."""
    log = [c.name for c in _LOG_COLUMNS]
    columns = [(c.name, _SQL_TYPES[type(c.type)]) for c in _LOG_COLUMNS]
    columns += [("day", "date"), ("errors", "bigint")]
    day_key = ["account_id", "day", "key_id", "model"]
    sums = [f"sum(b.{n})" for n in _COUNTERS if n != "requests"]
    sql = f"""
        WITH batch AS (
            SELECT * FROM unnest({", ".join(f"CAST(:{n} AS {t}[])" for n, t in columns)})
                AS b({", ".join(n for n, _ in columns)})
        ), inserted AS (
            INSERT INTO request_log ({", ".join(log)})
            SELECT {", ".join(log)} FROM batch ORDER BY request_id COLLATE "C"
            ON CONFLICT (request_id) DO NOTHING
            RETURNING request_id
        ), added AS (
            INSERT INTO usage_daily ({", ".join(day_key)}, {", ".join(_COUNTERS)})
            SELECT {", ".join(f"b.{n}" for n in day_key)}, count(*), {", ".join(sums)}
            FROM batch b JOIN inserted i ON i.request_id = b.request_id COLLATE "C"
            GROUP BY {", ".join(f"b.{n}" for n in day_key)}
            ORDER BY {", ".join(f"b.{n}" for n in day_key)}
            ON CONFLICT ({", ".join(day_key)}) DO UPDATE SET
                {", ".join(f"{n} = usage_daily.{n} + excluded.{n}" for n in _COUNTERS)}
        )
        SELECT count(*) FROM inserted
    """  # noqa: S608 - every name comes from the table definitions, every value is a parameter
    return text(sql)


def _record_many_params(records: Sequence[UsageRecord]) -> dict[str, list[Any]]:
    rows = [_record_params(r) for r in records]
    return {name: [row[name] for row in rows] for name in rows[0]}


def _record_params(record: UsageRecord) -> dict[str, Any]:
    params = _log_row(record)
    params["day"] = record.day
    params["errors"] = int(record.is_error)
    return params


def _record(row: RowMapping) -> UsageRecord:
    values = {n: row[n] for n in _PLAIN_FIELDS}
    finished = row["finished_at"]
    return UsageRecord(
        **values,
        status=Status(row["status"]),
        started_at_ms=to_unix_ms(row["started_at"]),
        finished_at_ms=to_unix_ms(finished) if finished is not None else 0,
    )


def _totals(row: Sequence[Any]) -> Totals:
    return Totals(**{n: int(v or 0) for n, v in zip(_TOTALS_FIELDS, row, strict=True)})


def _in_range(column: Any, span: TimeRange) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    if span.from_ms is not None:
        conds.append(column >= to_datetime(span.from_ms))
    if span.to_ms is not None:
        conds.append(column < to_datetime(span.to_ms))
    return conds


_RECORD = _record_statement()
_RECORD_MANY = _record_many_statement()


def _refused(exc: DBAPIError) -> bool:
    """The database refused the values themselves (SQLSTATE class 22, a data exception such as
    an overflow, or 23, a constraint): the same statement can never succeed. The asyncpg dialect
    raises both as a plain DBAPIError, so the SQLSTATE is what tells them apart."""
    state = str(getattr(exc.orig, "sqlstate", None) or "")
    return state[:2] in ("22", "23")


# The database cannot be reached or is going away: the same query may succeed later.
_UNREACHABLE = (
    OSError,
    TimeoutError,
    OperationalError,
    InterfaceError,
    PoolTimeout,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)


class UsageRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._engine.connect() as conn:
                yield conn
        except _UNREACHABLE as exc:
            raise Unavailable(f"{type(exc).__name__}: {exc}") from exc

    async def record(self, record: UsageRecord) -> bool:
        """Store `record` once: a new request id adds a log row and its usage to the day's
        aggregate; a request id already stored changes nothing. True when it was new.

        One statement does both (the aggregate insert reads the log insert's RETURNING), so the
        two can never disagree, whatever is redelivered or runs concurrently."""
        try:
            async with self._engine.begin() as conn:
                result = await conn.execute(_RECORD, _record_params(record))
                return result.first() is not None
        except DBAPIError as exc:
            if _refused(exc):  # retrying cannot help
                raise InvalidRecord(f"database refused the record: {exc.orig}") from exc
            raise

    async def record_many(self, records: Sequence[UsageRecord]) -> int:
        """Store each of `records` once, as `record` does, in one statement and one transaction
        (committed when durable); how many were new. All or none: a record the database refuses
        (InvalidRecord) leaves every other one unstored."""
        first: dict[str, UsageRecord] = {}
        for r in records:
            first.setdefault(r.request_id, r)
        unique = list(first.values())
        if not unique:
            return 0
        try:
            async with self._engine.begin() as conn:
                return int(await conn.scalar(_RECORD_MANY, _record_many_params(unique)) or 0)
        except DBAPIError as exc:
            if _refused(exc):
                raise InvalidRecord(f"database refused the batch: {exc.orig}") from exc
            raise

    async def get_request(self, request_id: str) -> UsageRecord | None:
        stmt = select(*_LOG_COLUMNS).where(request_log.c.request_id == request_id)
        async with self._reading() as conn:
            row = (await conn.execute(stmt)).mappings().first()
        return None if row is None else _record(row)

    async def list_requests(
        self, request_filter: RequestFilter, limit: int, after: Cursor | None
    ) -> tuple[list[UsageRecord], Cursor | None]:
        """Up to `limit` requests after `after`, newest first, and the cursor of the next page
        (None on the last page)."""
        f = request_filter
        t = request_log.c
        conds: list[ColumnElement[bool]] = [t.account_id == f.account_id, *_in_range(t.started_at, f.span)]
        if f.key_id:
            conds.append(t.key_id == f.key_id)
        if f.model:
            conds.append(t.model == f.model)
        if f.status is not None:
            conds.append(t.status == f.status.value)
        if f.request_id:
            conds.append(t.request_id == f.request_id)
        if after is not None:
            conds.append(
                tuple_(t.started_at, t.request_id)
                < tuple_(
                    literal(to_datetime(after.started_at_ms), t.started_at.type),
                    literal(after.request_id, t.request_id.type),
                )
            )
        stmt = (
            select(*_LOG_COLUMNS)
            .where(*conds)
            .order_by(t.started_at.desc(), t.request_id.desc())
            # One more than asked tells whether another page exists without a count.
            .limit(limit + 1)
        )
        async with self._reading() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        records = [_record(r) for r in rows[:limit]]
        if len(rows) <= limit:
            return records, None
        last = records[-1]
        return records, Cursor(last.started_at_ms, last.request_id)

    async def totals(self, account_id: str, key_id: str, plan: TotalsPlan) -> Totals:
        """Sum the whole days of `plan` from the aggregates and its partial days from the log,
        in one statement (one snapshot)."""
        parts: list[Select[Any]] = []
        d = usage_daily.c
        if plan.days is not None:
            first, end = plan.days
            conds: list[ColumnElement[bool]] = [d.account_id == account_id]
            if key_id:
                conds.append(d.key_id == key_id)
            if first is not None:
                conds.append(d.day >= first)
            if end is not None:
                conds.append(d.day < end)
            parts.append(select(*(func.sum(d[n]).label(n) for n in _TOTALS_FIELDS)).where(*conds))
        t = request_log.c
        for span in plan.log_ranges:
            conds = [t.account_id == account_id, *_in_range(t.started_at, span)]
            if key_id:
                conds.append(t.key_id == key_id)
            parts.append(
                select(
                    func.count().label("requests"),
                    *(
                        func.sum(t[n]).label(n)
                        for n in ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens")
                    ),
                    func.sum(t.cost_micros).label("cost_micros"),
                    func.sum(case((t.status == Status.FAILED.value, 1), else_=0)).label("errors"),
                ).where(*conds)
            )
        if not parts:
            return Totals()
        both = union_all(*parts).subquery()
        stmt = select(*(func.sum(both.c[n]) for n in _TOTALS_FIELDS))
        async with self._reading() as conn:
            row = (await conn.execute(stmt)).one()
        return _totals(row)

    async def daily(
        self, account_id: str, key_id: str, first: date | None, last: date | None
    ) -> list[DailyUsage]:
        """Aggregates of the days first..last (inclusive, None unbounded), by day, key, model."""
        d = usage_daily.c
        conds: list[ColumnElement[bool]] = [d.account_id == account_id]
        if key_id:
            conds.append(d.key_id == key_id)
        if first is not None:
            conds.append(d.day >= first)
        if last is not None:
            conds.append(d.day <= last)
        stmt = (
            select(d.day, d.key_id, d.model, *(d[n] for n in _TOTALS_FIELDS))
            .where(*conds)
            .order_by(d.day, d.key_id, d.model)
        )
        async with self._reading() as conn:
            rows = (await conn.execute(stmt)).all()
        return [DailyUsage(r[0], r[1], r[2], _totals(r[3:])) for r in rows]
