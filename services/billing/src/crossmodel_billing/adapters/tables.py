"""The billing database schema (SQLAlchemy Core). Migrations under migrations/ create it."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, MetaData, Table, Text

metadata = MetaData()

balances = Table(
    "balances",
    metadata,
    Column("account_id", Text, primary_key=True),
    Column("balance_micros", BigInteger, nullable=False),
    Column("total_charged_micros", BigInteger, nullable=False),
    Column("total_credited_micros", BigInteger, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column("id", Text, primary_key=True),
    Column("account_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("amount_micros", BigInteger, nullable=False),
    Column("balance_after_micros", BigInteger, nullable=False),
    Column("balance_version", BigInteger, nullable=False),
    Column("request_id", Text),
    Column("idempotency_key", Text),
    Column("key_id", Text, nullable=False),
    Column("model", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

key_spend = Table(
    "key_spend",
    metadata,
    Column("key_id", Text, primary_key=True),
    Column("account_id", Text, nullable=False),
    Column("spent_micros", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
