"""PostgreSQL access for the services that own a database: one async engine per process and an
Alembic runner for `python -m crossmodel_<service> migrate`."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import MetaData, pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine


def make_engine(
    url: str,
    *,
    pool_size: int = 10,
    pre_ping: bool = True,
    server_settings: dict[str, str] | None = None,
) -> AsyncEngine:
    """An asyncpg engine. `url` is `postgresql+asyncpg://…`; a plain `postgresql://` URL is
    accepted and given the asyncpg driver. `pre_ping` checks each connection as it leaves the
    pool (a round trip); `server_settings` are set on every new connection."""
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+asyncpg://" + url.split("://", 1)[1]
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=pre_ping,
        connect_args={"server_settings": server_settings} if server_settings else {},
    )


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker:  # type: ignore[type-arg]
    return async_sessionmaker(engine, expire_on_commit=False)


def run_migrations(script_location: Path, url: str) -> None:
    """Apply every migration under `script_location` (an Alembic directory with env.py) to `url`.

    Migrations run synchronously in the `migrate` command, never on the request path; env.py
    receives the URL through the Alembic config's `sqlalchemy.url`."""
    from alembic import command
    from alembic.config import Config

    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+asyncpg://" + url.split("://", 1)[1]
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, "head")


# Any fixed number: concurrent `migrate` runs (two deploys at once) queue on it instead of racing.
_MIGRATION_LOCK = 7_305_454_201


def _upgrade(connection: Connection, metadata: MetaData | None) -> None:
    from alembic import context

    connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK})
    connection.commit()
    try:
        # Every pending migration in one transaction: PostgreSQL DDL is transactional, so a
        # failed upgrade leaves the schema as it was.
        context.configure(connection=connection, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK})
        connection.commit()


async def _migrate(url: str, metadata: MetaData | None) -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_upgrade, metadata)
    finally:
        await engine.dispose()


def alembic_env(metadata: MetaData | None = None) -> None:
    """The body of every service's migrations/env.py: run the pending migrations over the
    async engine named by the Alembic config's sqlalchemy.url (set by run_migrations)."""
    from alembic import context

    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("sqlalchemy.url is not set")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
    else:
        asyncio.run(_migrate(url, metadata))
