"""Webhook signatures the way Stripe signs them: header `t=<unix seconds>,v1=<hex>[,v1=…]`,
where v1 = HMAC-SHA256(secret, "<t>.<raw body>") and a timestamp older than the tolerance is
refused (https://docs.stripe.com/webhooks#verify-manually). Pure functions, no I/O."""

from __future__ import annotations

import hashlib
import hmac


class SignatureError(Exception):
    """Why a webhook delivery is not trusted; the message is safe to show the sender."""


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The header value a sender computes; tests and the development tools use it."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str | None, body: bytes, *, now: float, tolerance_s: int) -> int:
    """The signed timestamp when the header carries a valid v1 signature of exactly `body` made
    within `tolerance_s` of `now` (either side, for clock skew); else SignatureError."""
    if not secret:
        raise SignatureError("webhooks are not configured on this server")
    if not header:
        raise SignatureError("missing signature header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError("malformed signature timestamp") from None
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError("signature header needs t= and v1=")
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise SignatureError("signature does not match")
    # Checked after the MAC, so an unsigned caller cannot learn the server's clock.
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError("signature timestamp outside the tolerance (replayed or stale)")
    return timestamp
