"""Ledger, balances and per-key spend.

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


def upgrade() -> None:
    op.create_table(
        "balances",
        sa.Column("account_id", sa.Text, primary_key=True),
        sa.Column("balance_micros", sa.BigInteger, nullable=False),
        sa.Column("total_charged_micros", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("total_credited_micros", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("account_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("amount_micros", sa.BigInteger, nullable=False),
        sa.Column("balance_after_micros", sa.BigInteger, nullable=False),
        sa.Column("balance_version", sa.BigInteger, nullable=False),
        sa.Column("request_id", sa.Text),
        sa.Column("idempotency_key", sa.Text),
        sa.Column("key_id", sa.Text, nullable=False, server_default=""),
        sa.Column("model", sa.Text, nullable=False, server_default=""),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("kind IN ('charge', 'top_up', 'adjustment')", name="ledger_entries_kind"),
        sa.CheckConstraint(
            "(kind = 'charge' AND request_id IS NOT NULL AND amount_micros <= 0)"
            " OR (kind <> 'charge' AND idempotency_key IS NOT NULL)",
            name="ledger_entries_shape",
        ),
    )
    # One charge per request id, whatever the consumer sees redelivered.
    op.create_index(
        "ledger_entries_charge_request_id",
        "ledger_entries",
        ["request_id"],
        unique=True,
        postgresql_where=sa.text("kind = 'charge'"),
    )
    # One credit per idempotency key and account.
    op.create_index(
        "ledger_entries_account_idempotency_key",
        "ledger_entries",
        ["account_id", "idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.create_index("ledger_entries_account_created", "ledger_entries", ["account_id", "created_at", "id"])
    op.create_table(
        "key_spend",
        sa.Column("key_id", sa.Text, primary_key=True),
        sa.Column("account_id", sa.Text, nullable=False),
        sa.Column("spent_micros", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    op.drop_table("key_spend")
    op.drop_table("ledger_entries")
    op.drop_table("balances")
