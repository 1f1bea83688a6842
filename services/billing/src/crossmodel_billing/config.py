"""Settings of the billing service (environment prefix CROSSMODEL_BILLING_; see docs/services.md)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from crossmodel_common.config import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CROSSMODEL_BILLING_", extra="ignore", frozen=True)

    listen: str = "0.0.0.0:50053"
    database_url: str
    redis_url: str
    # Calls beyond this many in flight wait for a free connection (up to the timeout) instead
    # of failing: redis-py's default pool refuses the 101st.
    redis_max_connections: int = 64
    redis_timeout_seconds: float = 5.0
    kafka_bootstrap: str
    usage_topic: str = "usage.v1"
    dlq_topic: str = "usage.v1.billing.dlq"
    consumer_group: str = "billing"
    # ISO 4217 code of the account currency that the micro-units are of.
    currency: str = "USD"
    db_pool_size: int = 10
