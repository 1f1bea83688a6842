"""The usage service's settings, from CROSSMODEL_USAGE_* variables (see docs/services.md)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from crossmodel_common.config import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CROSSMODEL_USAGE_", extra="ignore", frozen=True)

    listen: str = "0.0.0.0:50054"
    database_url: str
    kafka_bootstrap: str
    usage_topic: str = "usage.v1"
    dlq_topic: str = "usage.v1.usage.dlq"
