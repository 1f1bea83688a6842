"""The service's database engine, with every statement traced as a child of the current span."""

from __future__ import annotations

from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from sqlalchemy.ext.asyncio import AsyncEngine

from crossmodel_common.db import make_engine


def open_engine(url: str) -> AsyncEngine:
    """The engine for reads and for the consumer's batch writes, traced."""
    engine = make_engine(url)
    # The SQL comment that the commenter would add defeats PostgreSQL's statement statistics.
    SQLAlchemyInstrumentor().instrument(engines=[engine.sync_engine], enable_commenter=False)
    return engine
