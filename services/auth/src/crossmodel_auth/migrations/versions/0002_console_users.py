"""Console users (email + argon2id password hash) and their sessions (token hashes only).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_users",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("account_id", sa.Text, sa.ForeignKey("accounts.id"), nullable=False),
        # Normalized (trimmed, lower case) by the domain before it gets here.
        sa.Column("email", sa.Text, nullable=False, unique=True),
        # argon2id in PHC string form; the password itself is never stored.
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("console_users_account_id", "console_users", ["account_id"])
    op.create_table(
        "console_sessions",
        # SHA-256 of the session token; the token itself is never stored.
        sa.Column("token_hash", sa.LargeBinary, primary_key=True),
        sa.Column("user_id", sa.Text, sa.ForeignKey("console_users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("console_sessions_user_id", "console_sessions", ["user_id", "expires_at"])


def downgrade() -> None:
    op.drop_table("console_sessions")
    op.drop_table("console_users")
