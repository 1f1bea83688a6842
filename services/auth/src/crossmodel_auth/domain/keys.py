"""Accounts and API keys as plain values, and the rules that need no I/O."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import Enum
from fnmatch import fnmatchcase

from crossmodel_auth.domain.errors import InvalidArgument

KEY_PREFIX = "cm-"
# new_api_key() makes 48 characters after the prefix; anything far off that cannot be a key and
# is refused before hashing or any lookup.
_MIN_SECRET_LEN, _MAX_SECRET_LEN = 20, 200


class KeyStatus(Enum):
    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class KeyLimits:
    rpm: int = 0  # 0 = unlimited
    tpm: int = 0  # 0 = unlimited
    allowed_models: tuple[str, ...] = ()  # glob patterns; empty = every model
    spend_cap_micros: int = 0  # lifetime; 0 = none
    expires_at_ms: int = 0  # 0 = never


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    name: str
    created_at_ms: int
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    account_id: str
    name: str
    last4: str
    limits: KeyLimits = field(default_factory=KeyLimits)
    created_at_ms: int = 0
    last_used_at_ms: int = 0
    revoked_at_ms: int = 0
    # Bumped by every update or revocation; admission compares it with the copy in Redis, so a
    # cached record that is out of date is noticed on the very next request on every replica.
    generation: int = 1
    account_disabled: bool = False

    def status(self, now_ms: int) -> KeyStatus:
        if self.revoked_at_ms:
            return KeyStatus.REVOKED
        if self.limits.expires_at_ms and now_ms >= self.limits.expires_at_ms:
            return KeyStatus.EXPIRED
        return KeyStatus.ACTIVE

    @property
    def redacted(self) -> str:
        return redact(self.last4)


def hash_secret(secret: str) -> bytes:
    """SHA-256 of the secret. Keys carry 288 random bits, so a fast hash is as safe as a slow
    one here (no dictionary to try) and keeps the lookup cheap; docs/money.md explains."""
    return hashlib.sha256(secret.encode()).digest()


def plausible_secret(secret: str) -> bool:
    return secret.startswith(KEY_PREFIX) and _MIN_SECRET_LEN <= len(secret) <= _MAX_SECRET_LEN


def redact(last4: str) -> str:
    return f"{KEY_PREFIX}…{last4}"


def model_allowed(patterns: tuple[str, ...], model: str) -> bool:
    return not patterns or any(fnmatchcase(model, p) for p in patterns)


def validate_limits(limits: KeyLimits) -> None:
    for name in ("rpm", "tpm", "spend_cap_micros", "expires_at_ms"):
        if getattr(limits, name) < 0:
            raise InvalidArgument(f"limits.{name} must not be negative")
    for pattern in limits.allowed_models:
        if not pattern.strip():
            raise InvalidArgument("limits.allowed_models must not contain empty patterns")
