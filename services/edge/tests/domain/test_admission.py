"""The admission estimate is an upper bound of what a request can cost."""

from __future__ import annotations

import orjson

from crossmodel_common.money import Prices, cost_micros
from crossmodel_edge.domain.admission import (
    DEFAULT_MAX_OUTPUT_TOKENS,
    IMAGE_TOKENS_MAX,
    admission_for,
    estimate_input_tokens,
    max_output_tokens,
)
from crossmodel_edge.domain.catalog import ModelInfo

PRICES = Prices(input_per_mtok_micros=3_000_000, output_per_mtok_micros=15_000_000)


def model(context_window: int = 200_000, max_out: int = 64_000) -> ModelInfo:
    return ModelInfo("anthropic/x", "anthropic", "X", context_window, max_out, (), PRICES, 0)


def test_body_length_bounds_text_tokens_and_the_context_window_caps_it() -> None:
    body = orjson.dumps({"model": "a/b", "messages": [{"role": "user", "content": "hello " * 100}]})
    assert estimate_input_tokens(body, 200_000) == len(body)
    assert estimate_input_tokens(body, 100) == 100
    assert estimate_input_tokens(body, 0) == len(body)


def test_image_urls_add_an_image_each() -> None:
    body = orjson.dumps(
        {
            "model": "a/b",
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/i.png"}}]}
            ],
        }
    )
    assert estimate_input_tokens(body, 1_000_000) == len(body) + IMAGE_TOKENS_MAX


def test_output_limit_from_the_request_capped_by_the_model() -> None:
    assert max_output_tokens(100, model()) == 100
    assert max_output_tokens(1_000_000, model()) == 64_000
    assert max_output_tokens(None, model()) == 64_000
    assert max_output_tokens(None, model(max_out=0)) == DEFAULT_MAX_OUTPUT_TOKENS
    assert max_output_tokens(123_456, model(max_out=0)) == 123_456


def test_every_choice_may_reach_the_output_limit() -> None:
    body = b'{"model":"openai/x","n":3,"max_tokens":500,"messages":[]}'
    one, three = admission_for(body, 500, model()), admission_for(body, 500, model(), choices=3)
    assert three.max_output_tokens == 3 * one.max_output_tokens == 1500
    assert three.reserve_micros == -(-(len(body) * 3_000_000 + 1500 * 15_000_000) // 1_000_000)


def test_reserve_covers_any_real_usage_within_the_bounds() -> None:
    body = b'{"model":"anthropic/x","max_tokens":500,"messages":[{"role":"user","content":"hi"}]}'
    a = admission_for(body, 500, model())
    assert (a.estimated_input_tokens, a.max_output_tokens) == (len(body), 500)
    worst_real = cost_micros(PRICES, input_tokens=len(body), output_tokens=500)
    assert a.reserve_micros >= worst_real
    assert a.reserve_micros == -(-(len(body) * 3_000_000 + 500 * 15_000_000) // 1_000_000)
