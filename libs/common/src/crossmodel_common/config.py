"""Pieces shared by every service's Settings class (each service has exactly one)."""

from __future__ import annotations

import sys
from typing import TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

S = TypeVar("S", bound=BaseSettings)


class ServiceSettings(BaseSettings):
    """Fields every service has. Subclasses set `model_config` with their own env prefix,
    e.g. CROSSMODEL_AUTH_. Required fields have no default, so a missing variable fails at
    start with its name."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    log_level: str = "INFO"
    # Seconds in-flight calls get to finish on SIGTERM after health turns NOT_SERVING.
    shutdown_grace_seconds: float = 10.0


def load_settings(cls: type[S], service: str) -> S:
    """`cls()` from the environment, or exit naming every missing or invalid variable, so a
    misconfigured service stops at start with a message an operator can act on."""
    try:
        return cls()
    except ValidationError as exc:
        prefix = str(cls.model_config.get("env_prefix", ""))
        problems = ", ".join(
            prefix
            + "_".join(str(p) for p in err["loc"]).upper()
            + (" (missing)" if err["type"] == "missing" else f": {err['msg']}")
            for err in exc.errors()
        )
        sys.exit(f"crossmodel-{service}: cannot start, settings missing or invalid: {problems}")
