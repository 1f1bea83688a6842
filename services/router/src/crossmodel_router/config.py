"""Settings of the router service (environment prefix CROSSMODEL_ROUTER_; see docs/services.md).

Per-provider upstream settings are not fields here: their names come from the catalog
(`CROSSMODEL_ROUTER_PROVIDER_<NAME>_BASE_URL` / `_API_KEY`) and are read when it loads.
"""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from crossmodel_common.config import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CROSSMODEL_ROUTER_", extra="ignore", frozen=True)

    listen: str = "0.0.0.0:50052"
    # The model catalog; empty means the packaged catalog.yaml.
    catalog: str = ""
    # Upstream HTTP: one pooled client per process.
    upstream_max_connections: int = 1000
    upstream_connect_timeout_seconds: float = 5.0
    # Longest silence tolerated while waiting for response headers or between two stream chunks
    # (a non-stream answer comes only when the whole generation is done).
    upstream_read_timeout_seconds: float = 300.0
    # Ceiling for one upstream call, streams included; the caller's gRPC deadline can be shorter.
    upstream_total_timeout_seconds: float = 900.0
    # Attempts before the first byte (retries on connect errors / 5xx, moving to the next
    # deployment of the model when there is one).
    upstream_max_attempts: int = 3
    retry_backoff_seconds: float = 0.05
    # Circuit breaker per deployment: open after this many consecutive failures, for this long.
    breaker_failures: int = 5
    breaker_open_seconds: float = 30.0
    # How often a stream reports provisional usage (tokens seen so far), so an abandoned
    # stream is billed for what it consumed.
    usage_progress_seconds: float = 1.0
    # OpenAI-chat clients in front of OpenAI-family upstreams skip the canonical model (same
    # bytes out, less work); false sends everything through the canonical model.
    passthrough: bool = True
