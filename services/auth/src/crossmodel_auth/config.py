"""Settings of the auth service (environment prefix CROSSMODEL_AUTH_; see docs/services.md)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from crossmodel_common.config import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CROSSMODEL_AUTH_", extra="ignore", frozen=True)

    listen: str = "0.0.0.0:50051"
    database_url: str
    redis_url: str
    # Admission fails fast (UNAVAILABLE) instead of hanging when Redis stops answering.
    # Calls beyond this many in flight wait for a free connection (up to the timeout) instead
    # of failing: redis-py's default pool refuses the 101st.
    redis_max_connections: int = 64
    redis_timeout_seconds: float = 0.5
    # billing's gRPC address: the balance read-through when Redis has no state for an account.
    billing_target: str
    billing_timeout_seconds: float = 2.0
    # How long a key record stays cached. Revocations and limit changes do not wait for it:
    # admission checks the record's generation in Redis on every request (docs/money.md).
    key_cache_ttl_seconds: float = 60.0
    # A reservation whose usage event never arrives stops holding the balance after this long;
    # keep it above the longest request the router allows.
    reservation_ttl_seconds: float = 900.0
    # How long an Idempotency-Key's stored result is replayed, counted from its first request
    # (docs/money.md). A key whose request never finishes is freed after reservation_ttl_seconds.
    idempotency_ttl_seconds: float = 24 * 3600.0
    # last_used_at is written in batches this often.
    last_used_flush_seconds: float = 5.0
    db_pool_size: int = 10
    # The console's sessions and the limits on sign-in and sign-up attempts (docs/console.md).
    console_session_ttl_seconds: float = 7 * 24 * 3600.0
    console_signin_per_email: int = 10
    console_signin_per_ip: int = 50
    console_signin_window_seconds: float = 900.0
    console_signup_per_ip: int = 20
    console_signup_window_seconds: float = 3600.0
