from __future__ import annotations

import random
from datetime import date

import pytest

from crossmodel_usage.domain.queries import (
    DAY_MS,
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    Cursor,
    QueryError,
    RequestFilter,
    TimeRange,
    TotalsPlan,
    decode_page_token,
    encode_page_token,
    page_size,
    parse_day,
    parse_status,
    plan_totals,
    time_range,
)
from crossmodel_usage.domain.records import EPOCH, Status

D = 20_777 * DAY_MS  # 2026-11-20T00:00:00Z


def test_zero_means_unbounded_and_bad_ranges_are_refused() -> None:
    assert time_range(0, 0) == TimeRange(None, None)
    assert time_range(5, 0) == TimeRange(5, None)
    with pytest.raises(QueryError, match="from_unix_ms is after"):
        time_range(10, 5)
    with pytest.raises(QueryError, match="to_unix_ms"):
        time_range(0, -1)


def test_whole_days_come_from_the_aggregates_and_partial_days_from_the_log() -> None:
    day = date(2026, 11, 20)
    next_day = date(2026, 11, 21)
    assert plan_totals(TimeRange()) == TotalsPlan(days=(None, None))
    assert plan_totals(TimeRange(D, D + DAY_MS)) == TotalsPlan(days=(day, next_day))
    assert plan_totals(TimeRange(D - 5, D + DAY_MS + 7)) == TotalsPlan(
        days=(day, next_day), log_ranges=(TimeRange(D - 5, D), TimeRange(D + DAY_MS, D + DAY_MS + 7))
    )
    assert plan_totals(TimeRange(D + 1, D + 9)) == TotalsPlan(
        days=None, log_ranges=(TimeRange(D + 1, D + 9),)
    )
    assert plan_totals(TimeRange(D + 1, None)) == TotalsPlan(
        days=(next_day, None), log_ranges=(TimeRange(D + 1, D + DAY_MS),)
    )
    assert plan_totals(TimeRange(None, D + 3)) == TotalsPlan(
        days=(None, day), log_ranges=(TimeRange(D, D + 3),)
    )
    assert plan_totals(TimeRange(D + 4, D + 4)) == TotalsPlan(days=None)


def _counted(plan: TotalsPlan, t: int) -> int:
    """How many times the plan counts an event that started at `t`."""
    n = 0
    if plan.days is not None:
        first, end = plan.days
        day = (EPOCH.date()).fromordinal(EPOCH.date().toordinal() + t // DAY_MS)
        n += (first is None or day >= first) and (end is None or day < end)
    for r in plan.log_ranges:
        n += (r.from_ms is None or t >= r.from_ms) and (r.to_ms is None or t < r.to_ms)
    return n


def test_every_plan_counts_each_instant_of_its_range_exactly_once() -> None:
    rng = random.Random(20261120)
    points = [D + k for k in (-2 * DAY_MS, -DAY_MS, -1, 0, 1, DAY_MS - 1, DAY_MS, DAY_MS + 1, 3 * DAY_MS)]
    for _ in range(500):
        bounds = sorted(
            rng.choice([0, rng.randrange(D - 3 * DAY_MS, D + 4 * DAY_MS), rng.choice(points)])
            for _ in range(2)
        )
        lo, hi = bounds[0], bounds[1]
        if rng.random() < 0.3:
            lo, hi = hi, 0  # unbounded above
        span = time_range(lo, hi)
        plan = plan_totals(span)
        samples = [
            *points,
            lo - 1,
            lo,
            lo + 1,
            hi - 1,
            hi,
            hi + 1,
            *(rng.randrange(D - 4 * DAY_MS, D + 5 * DAY_MS) for _ in range(20)),
        ]
        for t in samples:
            inside = (span.from_ms is None or t >= span.from_ms) and (span.to_ms is None or t < span.to_ms)
            assert _counted(plan, t) == int(inside), (span, plan, t)


def test_page_tokens_round_trip_and_only_fit_the_query_that_made_them() -> None:
    f = RequestFilter(account_id="acct_1", model="m", span=TimeRange(1, 2))
    cursor = Cursor(D + 17, "req_01abc")
    token = encode_page_token(f, cursor)
    assert token.isascii()
    assert "=" not in token
    assert decode_page_token(f, token) == cursor
    assert decode_page_token(f, "") is None
    with pytest.raises(QueryError, match="different filters"):
        decode_page_token(RequestFilter(account_id="acct_1", model="other", span=TimeRange(1, 2)), token)
    with pytest.raises(QueryError, match="different filters"):
        decode_page_token(RequestFilter(account_id="acct_2", model="m", span=TimeRange(1, 2)), token)
    for bad in ("!!", "abc", token[:5], "B" + token[1:], token + "*"):
        with pytest.raises(QueryError):
            decode_page_token(f, bad)


def test_page_sizes_default_and_cap() -> None:
    assert page_size(0) == DEFAULT_PAGE_SIZE
    assert page_size(7) == 7
    assert page_size(MAX_PAGE_SIZE + 1) == MAX_PAGE_SIZE
    with pytest.raises(QueryError):
        page_size(-1)


def test_days_and_statuses_are_parsed_strictly() -> None:
    assert parse_day("2026-11-20", "from_day") == date(2026, 11, 20)
    assert parse_day("", "from_day") is None
    for bad in ("2026-11-31", "20261120", "2026-1-2", "2026-11-20T00:00"):
        with pytest.raises(QueryError, match="from_day"):
            parse_day(bad, "from_day")
    assert parse_status("failed") is Status.FAILED
    assert parse_status("") is None
    with pytest.raises(QueryError):
        parse_status("unspecified")
