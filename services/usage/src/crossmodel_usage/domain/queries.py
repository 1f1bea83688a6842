"""What the read API asks for and the rules for answering it: time ranges, how totals are split
between the daily aggregates and the request log, page sizes and page tokens.

Every time range is half-open, [from, to), on the time a request started; 0 means unbounded on
that side.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass, field
from datetime import date, timedelta

from crossmodel_usage.domain.records import EPOCH, MAX_UNIX_MS, Status

DAY_MS = 86_400_000
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

_STATUS_FILTERS = {"succeeded": Status.SUCCEEDED, "failed": Status.FAILED, "cancelled": Status.CANCELLED}


class QueryError(ValueError):
    """The query is malformed; the message says which argument and why."""


class Unavailable(RuntimeError):
    """The usage store cannot be reached now; the same query may succeed later."""


def require(value: str, name: str) -> str:
    if not value:
        raise QueryError(f"{name} is required")
    return value


@dataclass(frozen=True, slots=True)
class Totals:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0
    cost_micros: int = 0
    errors: int = 0


@dataclass(frozen=True, slots=True)
class DailyUsage:
    day: date
    key_id: str
    model: str
    totals: Totals


@dataclass(frozen=True, slots=True)
class TimeRange:
    """[from_ms, to_ms) in unix milliseconds; None is unbounded."""

    from_ms: int | None = None
    to_ms: int | None = None


def time_range(from_ms: int, to_ms: int) -> TimeRange:
    """The range of a request's `from_unix_ms`/`to_unix_ms`, where 0 means unbounded."""
    for name, value in (("from_unix_ms", from_ms), ("to_unix_ms", to_ms)):
        if not 0 <= value <= MAX_UNIX_MS:
            raise QueryError(f"{name} must be between 0 and {MAX_UNIX_MS}")
    if from_ms and to_ms and from_ms > to_ms:
        raise QueryError("from_unix_ms is after to_unix_ms")
    return TimeRange(from_ms or None, to_ms or None)


@dataclass(frozen=True, slots=True)
class TotalsPlan:
    """Where totals come from: whole UTC days from the aggregates (`days` is [first, end) with
    None unbounded, or absent when no whole day is covered) and the partial days at either
    end from the request log."""

    days: tuple[date | None, date | None] | None
    log_ranges: tuple[TimeRange, ...] = field(default=())


def _day(day_index: int) -> date:
    return (EPOCH + timedelta(days=day_index)).date()


def plan_totals(span: TimeRange) -> TotalsPlan:
    """Split `span` so that whole days are read from the aggregates and only the partial days
    at its ends are summed from the request log. Both sides use the start time's UTC day, so
    the split is exact."""
    lo, hi = span.from_ms, span.to_ms
    first = None if lo is None else -(-lo // DAY_MS)  # first whole day at or after `lo`
    end = None if hi is None else hi // DAY_MS  # first day not wholly before `hi`
    if first is not None and end is not None and first >= end:
        return TotalsPlan(days=None, log_ranges=(span,) if lo != hi else ())
    ranges: list[TimeRange] = []
    if lo is not None and first is not None and lo % DAY_MS:
        ranges.append(TimeRange(lo, first * DAY_MS))
    if hi is not None and end is not None and hi % DAY_MS:
        ranges.append(TimeRange(end * DAY_MS, hi))
    days = (None if first is None else _day(first), None if end is None else _day(end))
    return TotalsPlan(days=days, log_ranges=tuple(ranges))


def parse_day(text: str, name: str) -> date | None:
    """`YYYY-MM-DD`, or None for an empty string."""
    if not text:
        return None
    try:
        if len(text) != 10:
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise QueryError(f"{name} must be a day as YYYY-MM-DD") from None


def parse_status(text: str) -> Status | None:
    if not text:
        return None
    try:
        return _STATUS_FILTERS[text]
    except KeyError:
        raise QueryError(f"status must be one of {', '.join(_STATUS_FILTERS)} or empty") from None


def page_size(limit: int) -> int:
    """0 asks for the default; sizes above the maximum are served at the maximum."""
    if limit < 0:
        raise QueryError("limit must not be negative")
    return min(limit or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


@dataclass(frozen=True, slots=True)
class RequestFilter:
    """ListRequests: the requests of one account, newest first, narrowed by every set field."""

    account_id: str
    key_id: str = ""
    model: str = ""
    status: Status | None = None
    request_id: str = ""
    span: TimeRange = TimeRange()

    def fingerprint(self) -> bytes:
        """Identifies the filter inside a page token, so that a token is only accepted for the
        query that produced it."""
        parts = (
            self.account_id,
            self.key_id,
            self.model,
            self.status or "",
            self.request_id,
            str(self.span.from_ms or 0),
            str(self.span.to_ms or 0),
        )
        return hashlib.sha256("\x1f".join(parts).encode()).digest()[:8]


@dataclass(frozen=True, slots=True)
class Cursor:
    """The last request of a page; the next page starts strictly after it in the order
    (started_at DESC, request_id DESC)."""

    started_at_ms: int
    request_id: str


_TOKEN_VERSION = 1
_TOKEN_HEAD = struct.Struct(">B8sq")


def encode_page_token(request_filter: RequestFilter, cursor: Cursor) -> str:
    raw = _TOKEN_HEAD.pack(_TOKEN_VERSION, request_filter.fingerprint(), cursor.started_at_ms)
    return base64.urlsafe_b64encode(raw + cursor.request_id.encode()).rstrip(b"=").decode()


def decode_page_token(request_filter: RequestFilter, token: str) -> Cursor | None:
    """The cursor in `token` (None for an empty token); QueryError when the token is malformed
    or was issued for different filters."""
    if not token:
        return None
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
        version, fingerprint, started_at_ms = _TOKEN_HEAD.unpack_from(raw)
        request_id = raw[_TOKEN_HEAD.size :].decode()
    except (binascii.Error, struct.error, UnicodeDecodeError, ValueError):
        raise QueryError("page_token is not valid") from None
    if version != _TOKEN_VERSION or not request_id:
        raise QueryError("page_token is not valid")
    if fingerprint != request_filter.fingerprint():
        raise QueryError("page_token was issued for different filters")
    return Cursor(started_at_ms, request_id)
