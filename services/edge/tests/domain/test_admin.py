"""The admin API's pure rules: token check, money text, day ranges, ledger page cursors, CSV."""

from __future__ import annotations

import csv
import io
import random
from datetime import date

import pytest

from crossmodel.billing.v1 import billing_pb2
from crossmodel.events.v1 import usage_event_pb2 as ev
from crossmodel_edge.domain.admin import (
    AdminInputError,
    LedgerCursor,
    amount_micros,
    csv_header,
    csv_rows,
    day_range,
    decode_ledger_cursor,
    encode_ledger_cursor,
    ledger_page,
    ledger_request,
    parse_amount,
    token_matches,
)


def test_token_matches_only_the_bearer_token() -> None:
    assert token_matches("Bearer s3cret", "s3cret")
    assert token_matches("bearer s3cret", "s3cret")
    assert not token_matches("Bearer s3cre", "s3cret")
    assert not token_matches("Basic s3cret", "s3cret")
    assert not token_matches("s3cret", "s3cret")
    assert not token_matches(None, "s3cret")
    assert not token_matches("Bearer ", "")
    assert not token_matches("Bearer ünïcode", "s3cret")


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("10.50", 10_500_000),
        ("0.000001", 1),
        ("-2.25", -2_250_000),
        (" 3 ", 3_000_000),
        ("1.000000", 1_000_000),
    ],
)
def test_amounts_as_decimal_text(text: str, micros: int) -> None:
    assert parse_amount(text, "amount") == micros


@pytest.mark.parametrize("text", ["1.0000001", "abc", "1e3", "NaN", "Infinity", "", "1,50", "1" + "0" * 10])
def test_amounts_that_are_refused(text: str) -> None:
    with pytest.raises(AdminInputError) as exc:
        parse_amount(text, "amount")
    assert exc.value.param == "amount"


def test_exactly_one_form_of_an_amount() -> None:
    assert amount_micros(None, 5) == 5
    assert amount_micros("5", None) == 5_000_000
    for amount, micros in (("5", 5), (None, None)):
        with pytest.raises(AdminInputError):
            amount_micros(amount, micros)


def test_inclusive_days_become_a_half_open_range() -> None:
    start, end = day_range(date(2026, 11, 20), date(2026, 11, 21))
    assert start == 1_795_132_800_000
    assert end == start + 2 * 86_400_000
    assert day_range(None, None) == (0, 0)
    with pytest.raises(AdminInputError):
        day_range(date(2026, 11, 21), date(2026, 11, 20))


def _billing(
    entries: list[billing_pb2.LedgerEntry], before_ms: int, limit: int
) -> list[billing_pb2.LedgerEntry]:
    """ListLedger as billing answers it: newest first, strictly before the bound."""
    rows = sorted(entries, key=lambda e: (e.created_at_unix_ms, e.id), reverse=True)
    if before_ms:
        rows = [e for e in rows if e.created_at_unix_ms < before_ms]
    return rows[:limit]


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 50])
def test_ledger_pages_never_repeat_or_skip_entries_sharing_a_millisecond(limit: int) -> None:
    rng = random.Random(limit)
    # Bursts: many entries in a few milliseconds, some milliseconds apart.
    entries = [
        billing_pb2.LedgerEntry(
            id=f"le_{i:04d}", created_at_unix_ms=1_000 + rng.choice([0, 0, 0, 1, 2, 5, 9])
        )
        for i in range(40)
    ]
    seen: list[str] = []
    cursor = LedgerCursor()
    for _ in range(100):
        before, ask = ledger_request(cursor, limit)
        page, token = ledger_page(_billing(entries, before, ask), cursor, limit)
        assert len(page) <= limit
        seen += [e.id for e in page]
        if not token:
            break
        cursor = decode_ledger_cursor(token)
    assert len(seen) == len(set(seen))
    assert sorted(seen) == sorted(e.id for e in entries)
    assert seen == [e.id for e in _billing(entries, 0, 1000)]


def test_ledger_tokens_round_trip_and_reject_garbage() -> None:
    cursor = LedgerCursor(1_700_000_000_000, (("le_1", 1_700_000_000_000),))
    assert decode_ledger_cursor(encode_ledger_cursor(cursor)) == cursor
    for bad in ("garbage", "e30", encode_ledger_cursor(LedgerCursor(0, ()))):
        with pytest.raises(AdminInputError):
            decode_ledger_cursor(bad)


def test_csv_quotes_and_defuses_formulas() -> None:
    text = csv_header() + csv_rows(
        [
            ev.UsageEvent(
                request_id="req_1",
                status=ev.REQUEST_STATUS_FAILED,
                error_message='said "no", twice',
                end_user="=1+1",
                model="-x",
                cost_micros=1_500,
                started_at_unix_ms=1_795_132_800_123,
            )
        ]
    )
    assert text.endswith("\r\n")
    (row,) = csv.DictReader(io.StringIO(text))
    assert row["error_message"] == 'said "no", twice'
    assert row["end_user"] == "'=1+1"
    assert row["model"] == "'-x"
    assert row["status"] == "failed"
    assert row["cost"] == "0.001500"
    assert row["started_at"] == "2026-11-20T00:00:00.123Z"
    assert row["finished_at"] == ""
