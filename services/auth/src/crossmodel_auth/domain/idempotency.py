"""Idempotency-Key on inference requests: what a key's record can say when a request claims it.

A key is scoped to an account. The first request with a key claims it (in progress); when that
request finishes, the edge either stores its response (kept for replays until 24 hours after
the claim) or releases the key (the request failed or was cancelled, so a retry may run it
again). docs/money.md, "Idempotent inference requests"."""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

# Clients send UUIDs or their own ids; the bound keeps a hostile key from growing Redis keys.
MAX_KEY_LENGTH = 255


class ClaimOutcome(enum.Enum):
    CLAIMED = "claimed"  # this request owns the key: admit it
    REPLAY = "replay"  # the key's request finished and its result is stored
    IN_PROGRESS = "in_progress"  # the key's request still runs
    MISMATCH = "mismatch"  # the key was used with another body
    NOT_STORED = "not_stored"  # the key's request finished without a replayable result


@dataclass(frozen=True, slots=True)
class StoredResult:
    status_code: int
    content_type: str
    body: bytes
    request_id: str


@dataclass(frozen=True, slots=True)
class Claim:
    outcome: ClaimOutcome
    result: StoredResult | None = None


def key_digest(idempotency_key: str) -> str:
    """The key as it is stored: its SHA-256, so any client string makes a short, safe name."""
    return hashlib.sha256(idempotency_key.encode()).hexdigest()


def valid_key(idempotency_key: str) -> bool:
    return 0 < len(idempotency_key) <= MAX_KEY_LENGTH and idempotency_key.isprintable()
