"""Pieces shared by every service's Settings class (each service has exactly one)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Fields every service has. Subclasses set `model_config` with their own env prefix,
    e.g. CROSSMODEL_AUTH_. Required fields have no default, so a missing variable fails at
    start with its name."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    log_level: str = "INFO"
    # Seconds in-flight calls get to finish on SIGTERM after health turns NOT_SERVING.
    shutdown_grace_seconds: float = 10.0
