"""Rate-limit headers in OpenAI's and Anthropic's formats."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crossmodel.auth.v1 import auth_pb2
from crossmodel_edge.domain.ratelimit import _duration, anthropic_headers, openai_headers


@pytest.mark.parametrize(
    ("ms", "text"),
    [(0, "0ms"), (17, "17ms"), (1000, "1s"), (1500, "1.5s"), (360_000, "6m0s"), (3_723_500, "1h2m3.5s")],
)
def test_openai_durations(ms: int, text: str) -> None:
    assert _duration(ms) == text


def test_openai_headers_only_for_limited_dimensions() -> None:
    state = auth_pb2.RateLimitState(limit_requests=60, remaining_requests=0, reset_requests_ms=20)
    assert openai_headers(state) == [
        ("x-ratelimit-limit-requests", "60"),
        ("x-ratelimit-remaining-requests", "0"),
        ("x-ratelimit-reset-requests", "20ms"),
    ]
    assert openai_headers(auth_pb2.RateLimitState()) == []


def test_anthropic_headers_reset_as_rfc3339() -> None:
    state = auth_pb2.RateLimitState(
        limit_requests=50,
        remaining_requests=49,
        reset_requests_ms=1_200,
        limit_tokens=1000,
        remaining_tokens=-5,
    )
    now = datetime(2026, 11, 25, 20, 0, 0, tzinfo=UTC)
    assert dict(anthropic_headers(state, now)) == {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-requests-reset": "2026-11-25T20:00:01Z",
        "anthropic-ratelimit-tokens-limit": "1000",
        "anthropic-ratelimit-tokens-remaining": "0",
        "anthropic-ratelimit-tokens-reset": "2026-11-25T20:00:00Z",
    }
