"""The usage database as SQLAlchemy Core tables. The migrations create exactly this schema (a
test compares them)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    text,
)

metadata = MetaData()

# Identifiers are compared bytewise ("C" collation): they are ASCII, the order of the keyset
# pagination must not depend on the server's locale, and C comparisons are the cheapest.
_ID = Text(collation="C")

request_log = Table(
    "request_log",
    metadata,
    Column("request_id", _ID, nullable=False),
    Column("account_id", _ID, nullable=False),
    Column("key_id", _ID, nullable=False, server_default=""),
    Column("key_name", Text, nullable=False, server_default=""),
    Column("model", _ID, nullable=False, server_default=""),
    Column("provider", Text, nullable=False, server_default=""),
    Column("deployment", Text, nullable=False, server_default=""),
    Column("upstream_model", Text, nullable=False, server_default=""),
    Column("protocol", Text, nullable=False, server_default=""),
    Column("stream", Boolean, nullable=False, server_default=text("false")),
    Column("status", _ID, nullable=False),
    Column("http_status", Integer, nullable=False, server_default="0"),
    Column("error_type", Text, nullable=False, server_default=""),
    Column("error_message", Text, nullable=False, server_default=""),
    Column("input_tokens", BigInteger, nullable=False, server_default="0"),
    Column("output_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cached_input_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_write_tokens", BigInteger, nullable=False, server_default="0"),
    Column("reasoning_tokens", BigInteger, nullable=False, server_default="0"),
    Column("input_price_per_mtok_micros", BigInteger, nullable=False, server_default="0"),
    Column("output_price_per_mtok_micros", BigInteger, nullable=False, server_default="0"),
    Column("cached_input_price_per_mtok_micros", BigInteger, nullable=False, server_default="0"),
    Column("cache_write_price_per_mtok_micros", BigInteger, nullable=False, server_default="0"),
    Column("cost_micros", BigInteger, nullable=False, server_default="0"),
    Column("reserved_micros", BigInteger, nullable=False, server_default="0"),
    Column("reserved_tokens", BigInteger, nullable=False, server_default="0"),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("latency_ms", BigInteger, nullable=False, server_default="0"),
    Column("upstream_latency_ms", BigInteger, nullable=False, server_default="0"),
    Column("ttft_ms", BigInteger, nullable=False, server_default="0"),
    Column("finish_reason", Text, nullable=False, server_default=""),
    Column("end_user", Text, nullable=False, server_default=""),
    Column("usage_estimated", Boolean, nullable=False, server_default=text("false")),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("request_id", name="request_log_pkey"),
    CheckConstraint(
        "status IN ('unspecified', 'succeeded', 'failed', 'cancelled')", name="request_log_status_check"
    ),
    # The listing order is (started_at DESC, request_id DESC); each index serves one search of
    # one account, newest first, and the keyset condition on (started_at, request_id).
    Index("request_log_account_time_idx", "account_id", "started_at", "request_id"),
    Index("request_log_account_key_time_idx", "account_id", "key_id", "started_at", "request_id"),
    Index("request_log_account_model_time_idx", "account_id", "model", "started_at", "request_id"),
    Index("request_log_account_status_time_idx", "account_id", "status", "started_at", "request_id"),
)

# One row per (account, UTC day of the start time, key, model).
usage_daily = Table(
    "usage_daily",
    metadata,
    Column("account_id", _ID, nullable=False),
    Column("day", Date, nullable=False),
    Column("key_id", _ID, nullable=False),
    Column("model", _ID, nullable=False),
    Column("requests", BigInteger, nullable=False, server_default="0"),
    Column("input_tokens", BigInteger, nullable=False, server_default="0"),
    Column("output_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cached_input_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_write_tokens", BigInteger, nullable=False, server_default="0"),
    Column("reasoning_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cost_micros", BigInteger, nullable=False, server_default="0"),
    Column("errors", BigInteger, nullable=False, server_default="0"),
    PrimaryKeyConstraint("account_id", "day", "key_id", "model", name="usage_daily_pkey"),
    Index("usage_daily_account_key_day_idx", "account_id", "key_id", "day"),
)
