"""Money is integer micro-units (1e-6 of the account currency); prices are per million tokens.

One function prices usage, so the cost shown to the user equals the cost charged.
"""

from __future__ import annotations

from dataclasses import dataclass

MICROS = 1_000_000
TOKENS_PER_PRICE_UNIT = 1_000_000


@dataclass(frozen=True, slots=True)
class Prices:
    input_per_mtok_micros: int
    output_per_mtok_micros: int
    cached_input_per_mtok_micros: int = 0
    cache_write_per_mtok_micros: int = 0
    reasoning_per_mtok_micros: int = 0  # 0 = reasoning billed at the output price


def cost_micros(
    prices: Prices,
    *,
    input_tokens: int,
    output_tokens: int,
    cached_input_tokens: int = 0,
    cache_write_tokens: int = 0,
    reasoning_tokens: int = 0,
) -> int:
    """Cost of one request, rounded half up to a whole micro-unit.

    `input_tokens` counts every prompt token (cached and cache writes included) and
    `output_tokens` every completion token (reasoning included), as OpenAI reports them; the
    cached and cache-write parts are priced at their own rates where the catalog has one.
    """
    cached = min(max(cached_input_tokens, 0), input_tokens)
    writes = min(max(cache_write_tokens, 0), input_tokens - cached)
    plain_in = input_tokens - cached - writes
    cached_price = prices.cached_input_per_mtok_micros or prices.input_per_mtok_micros
    write_price = prices.cache_write_per_mtok_micros or prices.input_per_mtok_micros
    reasoning = min(max(reasoning_tokens, 0), output_tokens)
    reasoning_price = prices.reasoning_per_mtok_micros or prices.output_per_mtok_micros
    scaled = (
        plain_in * prices.input_per_mtok_micros
        + cached * cached_price
        + writes * write_price
        + (output_tokens - reasoning) * prices.output_per_mtok_micros
        + reasoning * reasoning_price
    )
    return (scaled + TOKENS_PER_PRICE_UNIT // 2) // TOKENS_PER_PRICE_UNIT


def worst_case_micros(prices: Prices, *, input_tokens: int, max_output_tokens: int) -> int:
    """What admission reserves: every input token uncached, every output token at the higher
    of the output and reasoning prices, rounded up."""
    out_price = max(prices.output_per_mtok_micros, prices.reasoning_per_mtok_micros)
    in_price = max(prices.input_per_mtok_micros, prices.cache_write_per_mtok_micros)
    scaled = input_tokens * in_price + max_output_tokens * out_price
    return -(-scaled // TOKENS_PER_PRICE_UNIT)


def format_micros(amount: int) -> str:
    """12345678 -> '12.345678'."""
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), MICROS)
    return f"{sign}{whole}.{frac:06d}"
