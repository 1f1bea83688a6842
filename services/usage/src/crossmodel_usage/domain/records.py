"""One finished request as the usage service keeps it, and the rules a record must meet before
it is stored.

A record that breaks a rule can never be stored (retrying would block its partition forever), so
validation runs before any database work and its failure sends the event to the dead-letter
topic. Free-text fields are cut to a bounded size instead of being refused, because a billable
request must not be dropped from the log for a long error message.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# 9999-12-31T23:59:59.999Z: the last instant PostgreSQL, Python and the day arithmetic all handle.
MAX_UNIX_MS = 253_402_300_799_999
# No single request comes near these; anything above is corrupt and would poison the aggregates
# (a bigint sum overflows at 9.2e18).
MAX_TOKENS = 10**12
MAX_MICROS = 10**15
MAX_DURATION_MS = 10**10
# Identifiers are indexed: a btree entry must stay well under PostgreSQL's ~2.7 kB limit.
MAX_ID_CHARS = 255
MAX_ERROR_MESSAGE_CHARS = 8192


class Status(StrEnum):
    UNSPECIFIED = "unspecified"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class InvalidRecord(ValueError):
    """The record can never be stored."""


@dataclass(frozen=True, slots=True)
class UsageRecord:
    request_id: str
    account_id: str
    key_id: str = ""
    key_name: str = ""
    model: str = ""
    provider: str = ""
    deployment: str = ""
    upstream_model: str = ""
    protocol: str = ""
    stream: bool = False
    status: Status = Status.UNSPECIFIED
    http_status: int = 0
    error_type: str = ""
    error_message: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    input_price_per_mtok_micros: int = 0
    output_price_per_mtok_micros: int = 0
    cached_input_price_per_mtok_micros: int = 0
    cache_write_price_per_mtok_micros: int = 0
    cost_micros: int = 0
    reserved_micros: int = 0
    reserved_tokens: int = 0
    started_at_ms: int = 0
    finished_at_ms: int = 0
    latency_ms: int = 0
    upstream_latency_ms: int = 0
    ttft_ms: int = 0
    finish_reason: str = ""
    end_user: str = ""
    usage_estimated: bool = False

    @property
    def is_error(self) -> bool:
        """Counted in `errors`: the request failed. A cancelled request (the client went away)
        is not an error of the gateway."""
        return self.status is Status.FAILED

    @property
    def day(self) -> date:
        """The UTC day the request started: the day its usage is aggregated under."""
        return to_datetime(self.started_at_ms).date()


# Amounts that feed the aggregates or money: refused when out of range.
_COUNTED = (
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "reserved_tokens",
)
_MONEY = (
    "input_price_per_mtok_micros",
    "output_price_per_mtok_micros",
    "cached_input_price_per_mtok_micros",
    "cache_write_price_per_mtok_micros",
    "cost_micros",
    "reserved_micros",
)
# Durations are informational: clamped into range rather than refused.
_DURATIONS = ("latency_ms", "upstream_latency_ms", "ttft_ms")
_SHORT_TEXT = (
    "key_id",
    "key_name",
    "model",
    "provider",
    "deployment",
    "upstream_model",
    "protocol",
    "error_type",
    "finish_reason",
    "end_user",
)


def _clean(text: str, limit: int) -> str:
    # PostgreSQL text cannot hold NUL.
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    return text[:limit]


def _check_id(name: str, value: str) -> None:
    if not value:
        raise InvalidRecord(f"{name} is empty")
    if len(value) > MAX_ID_CHARS:
        raise InvalidRecord(f"{name} is longer than {MAX_ID_CHARS} characters")
    if "\x00" in value:
        raise InvalidRecord(f"{name} contains NUL")


def normalize(record: UsageRecord, *, fallback_time_ms: int = 0) -> UsageRecord:
    """Check `record` and return it ready to store, or raise InvalidRecord.

    A record without a start time is placed at its finish time, else at `fallback_time_ms`
    (the broker's timestamp of the event), so that its usage still lands on a day."""
    _check_id("request_id", record.request_id)
    _check_id("account_id", record.account_id)
    for name in (*_COUNTED, *_MONEY):
        value: int = getattr(record, name)
        bound = MAX_TOKENS if name in _COUNTED else MAX_MICROS
        if not 0 <= value <= bound:
            raise InvalidRecord(f"{name}={value} is outside 0..{bound}")
    started = record.started_at_ms or record.finished_at_ms or fallback_time_ms
    if not 0 < started <= MAX_UNIX_MS:
        raise InvalidRecord(f"started_at={record.started_at_ms} is not a valid time")
    finished = record.finished_at_ms
    if not 0 <= finished <= MAX_UNIX_MS:
        finished = 0
    changes: dict[str, object] = {"started_at_ms": started, "finished_at_ms": finished}
    for name in _DURATIONS:
        changes[name] = min(max(getattr(record, name), 0), MAX_DURATION_MS)
    for name in _SHORT_TEXT:
        changes[name] = _clean(getattr(record, name), MAX_ID_CHARS)
    changes["error_message"] = _clean(record.error_message, MAX_ERROR_MESSAGE_CHARS)
    return dataclasses.replace(record, **changes)  # type: ignore[arg-type]


def to_datetime(unix_ms: int) -> datetime:
    # Integer arithmetic: float seconds would round some milliseconds.
    return EPOCH + timedelta(milliseconds=unix_ms)


def to_unix_ms(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)
