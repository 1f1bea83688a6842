"""The console's tables (migration 0002), on the same metadata as the rest of the schema."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, ForeignKey, LargeBinary, Table, Text

from crossmodel_auth.adapters.tables import metadata

console_users = Table(
    "console_users",
    metadata,
    Column("id", Text, primary_key=True),
    Column("account_id", Text, ForeignKey("accounts.id"), nullable=False),
    Column("email", Text, nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

console_sessions = Table(
    "console_sessions",
    metadata,
    Column("token_hash", LargeBinary, primary_key=True),
    Column("user_id", Text, ForeignKey("console_users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)
