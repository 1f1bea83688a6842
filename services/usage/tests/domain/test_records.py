from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime

import pytest

from crossmodel_usage.domain.records import (
    MAX_ERROR_MESSAGE_CHARS,
    MAX_TOKENS,
    InvalidRecord,
    Status,
    UsageRecord,
    normalize,
    to_datetime,
    to_unix_ms,
)

T = 1_795_132_800_000 + 5  # 2026-11-20T00:00:00.005Z


def _record(**changes: object) -> UsageRecord:
    base = UsageRecord(request_id="req_1", account_id="acct_1", started_at_ms=T, input_tokens=3)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_a_valid_record_is_kept_as_it_is() -> None:
    record = _record(finished_at_ms=T + 10, latency_ms=10, error_message="boom")
    assert normalize(record) == record


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"request_id": ""}, "request_id is empty"),
        ({"account_id": ""}, "account_id is empty"),
        ({"request_id": "r" * 256}, "request_id is longer"),
        ({"account_id": "a\x00b"}, "account_id contains NUL"),
        ({"input_tokens": -1}, "input_tokens=-1"),
        ({"output_tokens": MAX_TOKENS + 1}, "output_tokens="),
        ({"cost_micros": -5}, "cost_micros=-5"),
        ({"started_at_ms": -1}, "not a valid time"),
        ({"started_at_ms": 10**17}, "not a valid time"),
    ],
)
def test_records_that_can_never_be_stored_are_refused(changes: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidRecord, match=reason):
        normalize(_record(**changes))


def test_a_record_without_a_start_time_is_placed_at_its_finish_then_at_the_fallback() -> None:
    assert normalize(_record(started_at_ms=0, finished_at_ms=T + 7)).started_at_ms == T + 7
    assert normalize(_record(started_at_ms=0), fallback_time_ms=T + 9).started_at_ms == T + 9
    with pytest.raises(InvalidRecord):
        normalize(_record(started_at_ms=0))


def test_text_is_made_storable_rather_than_refused() -> None:
    record = normalize(
        _record(error_message="x\x00" * MAX_ERROR_MESSAGE_CHARS, end_user="u" * 1000, latency_ms=-3)
    )
    assert "\x00" not in record.error_message
    assert len(record.error_message) == MAX_ERROR_MESSAGE_CHARS
    assert len(record.end_user) == 255
    assert record.latency_ms == 0


def test_the_day_is_the_utc_day_of_the_start_and_errors_are_failures_only() -> None:
    assert _record(started_at_ms=T - 10).day == date(2026, 11, 19)
    assert _record().day == date(2026, 11, 20)
    assert _record(status=Status.FAILED).is_error
    assert not _record(status=Status.CANCELLED).is_error


def test_milliseconds_survive_the_round_trip_through_datetime() -> None:
    for ms in (1, T, 253_402_300_799_999, 1_700_000_000_123):
        assert to_unix_ms(to_datetime(ms)) == ms
    assert to_datetime(T) == datetime(2026, 11, 20, 0, 0, 0, 5000, tzinfo=UTC)
