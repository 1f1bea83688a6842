from crossmodel_common.money import Prices, cost_micros, format_micros, worst_case_micros

SONNET = Prices(
    input_per_mtok_micros=3_000_000,
    output_per_mtok_micros=15_000_000,
    cached_input_per_mtok_micros=300_000,
    cache_write_per_mtok_micros=3_750_000,
)


def test_plain_cost_is_tokens_times_price_per_million() -> None:
    # 1,000 in at $3/M = $0.003, 500 out at $15/M = $0.0075
    assert cost_micros(SONNET, input_tokens=1_000, output_tokens=500) == 3_000 + 7_500


def test_cached_and_cache_write_tokens_use_their_own_prices() -> None:
    cost = cost_micros(
        SONNET, input_tokens=10_000, output_tokens=0, cached_input_tokens=8_000, cache_write_tokens=1_000
    )
    assert cost == (1_000 * 3_000_000 + 8_000 * 300_000 + 1_000 * 3_750_000) // 1_000_000


def test_missing_cached_price_falls_back_to_input_price() -> None:
    p = Prices(input_per_mtok_micros=1_000_000, output_per_mtok_micros=2_000_000)
    assert cost_micros(p, input_tokens=100, output_tokens=0, cached_input_tokens=100) == 100


def test_rounding_is_half_up_to_a_whole_micro_unit() -> None:
    p = Prices(input_per_mtok_micros=150_000, output_per_mtok_micros=600_000)
    assert cost_micros(p, input_tokens=10, output_tokens=0) == 2  # 1.5 -> 2
    assert cost_micros(p, input_tokens=3, output_tokens=0) == 0  # 0.45 -> 0


def test_cached_tokens_never_exceed_input_tokens() -> None:
    assert cost_micros(SONNET, input_tokens=10, output_tokens=0, cached_input_tokens=50) == 3


def test_worst_case_is_never_below_any_real_cost() -> None:
    reserve = worst_case_micros(SONNET, input_tokens=1_000, max_output_tokens=1_000)
    for out in (0, 1, 999, 1_000):
        assert cost_micros(SONNET, input_tokens=1_000, output_tokens=out, cache_write_tokens=1_000) <= reserve


def test_format_micros() -> None:
    assert format_micros(12_345_678) == "12.345678"
    assert format_micros(-5) == "-0.000005"
