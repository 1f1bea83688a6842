"""Accounts and API keys.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("account_id", sa.Text, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        # SHA-256 of the secret; the secret itself is never stored.
        sa.Column("key_hash", sa.LargeBinary, nullable=False, unique=True),
        sa.Column("last4", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="active"),
        sa.Column("rpm", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("tpm", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("allowed_models", ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("spend_cap_micros", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("last_used_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.Column("generation", sa.BigInteger, nullable=False, server_default="1"),
        sa.CheckConstraint("status IN ('active', 'revoked')", name="api_keys_status"),
        sa.CheckConstraint("rpm >= 0 AND tpm >= 0 AND spend_cap_micros >= 0", name="api_keys_limits"),
    )
    op.create_index("api_keys_account_id", "api_keys", ["account_id", "created_at"])


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_table("accounts")
