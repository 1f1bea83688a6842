"""Rate-limit headers from the admission's limiter state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from crossmodel.auth.v1 import auth_pb2


def _duration(ms: int) -> str:
    """OpenAI's reset format: `17ms`, `1s`, `6m0s`, `1h2m3.5s`."""
    if ms < 1000:
        return f"{max(ms, 0)}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    out = f"{hours}h" if hours else ""
    if hours or minutes:
        out += f"{minutes}m"
    return f"{out}{seconds}s"


def openai_headers(state: auth_pb2.RateLimitState) -> list[tuple[str, str]]:
    """`x-ratelimit-{limit,remaining,reset}-{requests,tokens}`; a limit of 0 (unlimited)
    sends none of its three headers."""
    out: list[tuple[str, str]] = []
    if state.limit_requests > 0:
        out += [
            ("x-ratelimit-limit-requests", str(state.limit_requests)),
            ("x-ratelimit-remaining-requests", str(max(state.remaining_requests, 0))),
            ("x-ratelimit-reset-requests", _duration(state.reset_requests_ms)),
        ]
    if state.limit_tokens > 0:
        out += [
            ("x-ratelimit-limit-tokens", str(state.limit_tokens)),
            ("x-ratelimit-remaining-tokens", str(max(state.remaining_tokens, 0))),
            ("x-ratelimit-reset-tokens", _duration(state.reset_tokens_ms)),
        ]
    return out


def anthropic_headers(state: auth_pb2.RateLimitState, now: datetime) -> list[tuple[str, str]]:
    """`anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`, reset as RFC 3339."""

    def at(ms: int) -> str:
        return (
            (now + timedelta(milliseconds=max(ms, 0)))
            .astimezone(UTC)
            .isoformat(timespec="seconds")
            .replace("+00:00", "Z")
        )

    out: list[tuple[str, str]] = []
    if state.limit_requests > 0:
        out += [
            ("anthropic-ratelimit-requests-limit", str(state.limit_requests)),
            ("anthropic-ratelimit-requests-remaining", str(max(state.remaining_requests, 0))),
            ("anthropic-ratelimit-requests-reset", at(state.reset_requests_ms)),
        ]
    if state.limit_tokens > 0:
        out += [
            ("anthropic-ratelimit-tokens-limit", str(state.limit_tokens)),
            ("anthropic-ratelimit-tokens-remaining", str(max(state.remaining_tokens, 0))),
            ("anthropic-ratelimit-tokens-reset", at(state.reset_tokens_ms)),
        ]
    return out
