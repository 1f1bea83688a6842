"""The request log (one row per request id) and the daily usage aggregates.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.Text(collation="C")


def _bigints(*names: str) -> list[sa.Column[int]]:
    return [sa.Column(n, sa.BigInteger(), nullable=False, server_default="0") for n in names]


def _texts(*names: str) -> list[sa.Column[str]]:
    return [sa.Column(n, sa.Text(), nullable=False, server_default="") for n in names]


def upgrade() -> None:
    op.create_table(
        "request_log",
        sa.Column("request_id", _ID, nullable=False),
        sa.Column("account_id", _ID, nullable=False),
        sa.Column("key_id", _ID, nullable=False, server_default=""),
        *_texts("key_name"),
        sa.Column("model", _ID, nullable=False, server_default=""),
        *_texts("provider", "deployment", "upstream_model", "protocol"),
        sa.Column("stream", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column("status", _ID, nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=False, server_default="0"),
        *_texts("error_type", "error_message"),
        *_bigints(
            "input_tokens",
            "output_tokens",
            "cached_input_tokens",
            "cache_write_tokens",
            "reasoning_tokens",
            "input_price_per_mtok_micros",
            "output_price_per_mtok_micros",
            "cached_input_price_per_mtok_micros",
            "cache_write_price_per_mtok_micros",
            "cost_micros",
            "reserved_micros",
            "reserved_tokens",
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        *_bigints("latency_ms", "upstream_latency_ms", "ttft_ms"),
        *_texts("finish_reason", "end_user"),
        sa.Column("usage_estimated", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
        sa.PrimaryKeyConstraint("request_id", name="request_log_pkey"),
        sa.CheckConstraint(
            "status IN ('unspecified', 'succeeded', 'failed', 'cancelled')", name="request_log_status_check"
        ),
    )
    for name, columns in (
        ("request_log_account_time_idx", ["account_id", "started_at", "request_id"]),
        ("request_log_account_key_time_idx", ["account_id", "key_id", "started_at", "request_id"]),
        ("request_log_account_model_time_idx", ["account_id", "model", "started_at", "request_id"]),
        ("request_log_account_status_time_idx", ["account_id", "status", "started_at", "request_id"]),
    ):
        op.create_index(name, "request_log", columns)

    op.create_table(
        "usage_daily",
        sa.Column("account_id", _ID, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("key_id", _ID, nullable=False),
        sa.Column("model", _ID, nullable=False),
        *_bigints(
            "requests",
            "input_tokens",
            "output_tokens",
            "cached_input_tokens",
            "cache_write_tokens",
            "reasoning_tokens",
            "cost_micros",
            "errors",
        ),
        sa.PrimaryKeyConstraint("account_id", "day", "key_id", "model", name="usage_daily_pkey"),
    )
    op.create_index("usage_daily_account_key_day_idx", "usage_daily", ["account_id", "key_id", "day"])


def downgrade() -> None:
    op.drop_table("usage_daily")
    op.drop_table("request_log")
