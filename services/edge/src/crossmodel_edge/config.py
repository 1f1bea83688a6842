"""The edge's one Settings class (environment prefix CROSSMODEL_EDGE_)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from crossmodel_common.config import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CROSSMODEL_EDGE_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = 8080

    auth_target: str
    router_target: str
    billing_target: str
    usage_target: str

    kafka_bootstrap: str
    kafka_idempotence: bool = False
    usage_topic: str = "usage.v1"
    spool_dir: Path
    # Usage events are grouped this long before they are spooled and sent (one disk write and
    # one produce request per group); 0 hands each event over at once.
    event_linger_ms: float = 20.0

    max_body_bytes: int = 32 * 1024 * 1024
    # Deadlines of the calls the edge makes. Route covers a whole (possibly long) stream; it is
    # a little longer than the router's own total upstream limit (900 s), so a slow upstream is
    # reported by the router as a typed timeout rather than cut by this deadline.
    auth_timeout_seconds: float = 2.0
    route_timeout_seconds: float = 930.0
    backend_timeout_seconds: float = 5.0
    # How often the cached model catalog is refreshed from the router.
    catalog_refresh_seconds: float = 30.0
    # Bearer token of the admin API under /admin/v1; empty turns that API off (docs/admin.md).
    admin_token: SecretStr = SecretStr("")

    # The console under /console (docs/console.md). Session cookies carry `Secure` when the
    # request came over https ("auto", the scheme uvicorn reports, X-Forwarded-Proto from trusted
    # proxies included), always, or never (plain-http development only).
    console_cookie_secure: Literal["auto", "always", "never"] = "auto"
    # The development payment provider credits top-ups at once: never enable it in production.
    console_dev_payments: bool = False
    # The webhook-driven payment provider: the signing secret of the provider's webhook endpoint,
    # where the console sends a top-up (a hosted checkout / payment link), and how old a signed
    # event may be.
    payments_webhook_secret: SecretStr = SecretStr("")
    payments_checkout_url: str = ""
    payments_webhook_tolerance_seconds: int = 300
