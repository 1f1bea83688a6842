"""PostgreSQL access for the services that own a database: one async engine per process and an
Alembic runner for `python -m crossmodel_<service> migrate`."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine


def make_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An asyncpg engine. `url` is `postgresql+asyncpg://…`; a plain `postgresql://` URL is
    accepted and given the asyncpg driver."""
    if url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+asyncpg://" + url.split("://", 1)[1]
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


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
