"""Rules of the admin API that need no I/O: the admin token check, money as decimal text,
times, partial key-limit updates, ledger page tokens and the CSV rows of the usage export.

Money convention (docs/admin.md): every amount travels as integer micro-units (`*_micros`) and,
in responses, also as a decimal string with six places (`"5.000000"`). Requests may give either
form; a decimal with more than six places is refused rather than rounded.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hmac
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation

import orjson

from crossmodel.auth.v1 import auth_pb2
from crossmodel.billing.v1 import billing_pb2
from crossmodel.events.v1 import usage_event_pb2
from crossmodel.usage.v1 import usage_pb2
from crossmodel_common.money import MICROS, format_micros

# Amounts fit a signed 64-bit integer of micro-units with room to add them up.
MAX_MICROS = 10**15


class AdminInputError(ValueError):
    """A value of the request is unusable; `param` names it."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def token_matches(authorization: str | None, expected: str) -> bool:
    """`Authorization: Bearer <token>` against the configured token, in constant time."""
    if not authorization or not expected:
        return False
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), expected.encode())


# -- money --------------------------------------------------------------------------------------


def parse_amount(text: str, param: str) -> int:
    """'10.50' -> 10_500_000 micro-units; at most six decimal places, no exponent tricks."""
    raw = text.strip()
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise AdminInputError(f"{param} must be a decimal number like 10.50, not {text!r}", param) from None
    if not value.is_finite() or "e" in raw.lower():
        raise AdminInputError(f"{param} must be a plain decimal number like 10.50", param)
    micros = value * MICROS
    if micros != micros.to_integral_value():
        raise AdminInputError(f"{param} has more than six decimal places", param)
    result = int(micros)
    if abs(result) > MAX_MICROS:
        raise AdminInputError(f"{param} is too large", param)
    return result


def amount_micros(amount: str | None, micros: int | None, param: str = "amount") -> int:
    """Exactly one of the decimal and the micro-unit forms."""
    if (amount is None) == (micros is None):
        raise AdminInputError(f"give exactly one of {param} (decimal) and {param}_micros (integer)", param)
    if micros is not None:
        if abs(micros) > MAX_MICROS:
            raise AdminInputError(f"{param}_micros is too large", f"{param}_micros")
        return micros
    assert amount is not None
    return parse_amount(amount, param)


def money(micros: int) -> str:
    return format_micros(micros)


# -- times --------------------------------------------------------------------------------------


def from_ms(ms: int) -> datetime | None:
    """Unix milliseconds -> an aware UTC datetime; 0 (the wire's "unset") -> None."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC) if ms else None


def to_ms(value: datetime) -> int:
    """An aware datetime, or a naive one taken as UTC, -> unix milliseconds."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def day_range(first: date | None, last: date | None) -> tuple[int, int]:
    """Inclusive UTC days -> the half-open [from_ms, to_ms) the usage service takes; 0 = open."""
    if first and last and first > last:
        raise AdminInputError("from must not be after to", "from")
    start = to_ms(datetime(first.year, first.month, first.day, tzinfo=UTC)) if first else 0
    end = 0
    if last:
        after = last + timedelta(days=1)
        end = to_ms(datetime(after.year, after.month, after.day, tzinfo=UTC))
    return start, end


def time_bounds(start: datetime | None, end: datetime | None) -> tuple[int, int]:
    from_value = to_ms(start) if start else 0
    to_value = to_ms(end) if end else 0
    if from_value < 0 or to_value < 0:
        raise AdminInputError("times before 1970 are not supported", "from" if from_value < 0 else "to")
    if from_value and to_value and from_value > to_value:
        raise AdminInputError("from must not be after to", "from")
    return from_value, to_value


# -- key limits ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LimitsChange:
    """A partial update: fields not in `given` keep their value; a None value clears the limit."""

    given: frozenset[str]
    rpm: int | None = None
    tpm: int | None = None
    allowed_models: Sequence[str] | None = None
    spend_cap_micros: int | None = None
    expires_at_ms: int | None = None


def apply_limits(current: auth_pb2.KeyLimits, change: LimitsChange, now_ms: int) -> auth_pb2.KeyLimits:
    merged = auth_pb2.KeyLimits()
    merged.CopyFrom(current)
    if "rpm" in change.given:
        merged.rpm = change.rpm or 0
    if "tpm" in change.given:
        merged.tpm = change.tpm or 0
    if "allowed_models" in change.given:
        del merged.allowed_models[:]
        merged.allowed_models.extend(check_patterns(change.allowed_models or ()))
    if "spend_cap_micros" in change.given:
        merged.spend_cap_micros = change.spend_cap_micros or 0
    if "expires_at_ms" in change.given:
        merged.expires_at_unix_ms = check_expiry(change.expires_at_ms, now_ms)
    return merged


def check_patterns(patterns: Iterable[str]) -> list[str]:
    out = [p.strip() for p in patterns]
    if any(not p for p in out):
        raise AdminInputError("allowed_models must not contain empty patterns", "limits.allowed_models")
    return out


def check_expiry(expires_at_ms: int | None, now_ms: int) -> int:
    if expires_at_ms is None:
        return 0
    if expires_at_ms <= now_ms:
        raise AdminInputError("expires_at must be in the future (revoke a key to stop it now)", "expires_at")
    return expires_at_ms


def check_cap(micros: int | None) -> int:
    if micros is not None and micros < 0:
        raise AdminInputError("spend_cap must not be negative", "limits.spend_cap")
    return micros or 0


# -- ledger pages -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LedgerCursor:
    """Where the next ledger page starts. The ledger RPC pages by a millisecond bound and entries
    can share a millisecond (a burst of charges), so the next page asks a little past the last
    entry shown and drops, by id, the entries near that bound that were already shown. Billing
    derives milliseconds from microsecond timestamps through a float, so "near" is one
    millisecond either way."""

    last_ms: int = 0
    seen: tuple[tuple[str, int], ...] = ()  # (entry id, created_at_unix_ms)


def encode_ledger_cursor(cursor: LedgerCursor) -> str:
    raw = orjson.dumps({"b": cursor.last_ms, "s": [list(s) for s in cursor.seen]})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_ledger_cursor(token: str) -> LedgerCursor:
    if not token:
        return LedgerCursor()
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        last = int(data["b"])
        seen = tuple((str(i), int(ms)) for i, ms in data["s"])
    except (binascii.Error, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise AdminInputError("page_token is not a token this API returned", "page_token") from None
    if last <= 0:
        raise AdminInputError("page_token is not a token this API returned", "page_token")
    return LedgerCursor(last, seen)


def ledger_request(cursor: LedgerCursor, limit: int) -> tuple[int, int]:
    """(before_unix_ms, limit) to ask billing for, so that `limit` unseen entries and one more
    (to know whether there is a next page) can come back."""
    if not cursor.last_ms:
        return 0, limit + 1
    return cursor.last_ms + 2, limit + len(cursor.seen) + 1


def ledger_page(
    entries: Sequence[billing_pb2.LedgerEntry], cursor: LedgerCursor, limit: int
) -> tuple[list[billing_pb2.LedgerEntry], str]:
    """The page (newest first) and the token of the next one ('' on the last page)."""
    seen = {i for i, _ in cursor.seen}
    fresh = [e for e in entries if e.id not in seen]
    page = fresh[:limit]
    if len(fresh) <= limit or not page:
        return page, ""
    last_ms = page[-1].created_at_unix_ms
    near = [*cursor.seen, *((e.id, e.created_at_unix_ms) for e in page)]
    keep = tuple((i, ms) for i, ms in near if ms >= last_ms - 1)
    return page, encode_ledger_cursor(LedgerCursor(last_ms, keep))


# -- usage --------------------------------------------------------------------------------------


def sum_totals(days: Iterable[usage_pb2.DailyUsage]) -> usage_pb2.Totals:
    total = usage_pb2.Totals()
    for d in days:
        t = d.totals
        total.requests += t.requests
        total.input_tokens += t.input_tokens
        total.output_tokens += t.output_tokens
        total.cached_input_tokens += t.cached_input_tokens
        total.reasoning_tokens += t.reasoning_tokens
        total.cost_micros += t.cost_micros
        total.errors += t.errors
    return total


def status_name(status: int) -> str:
    name: str = usage_event_pb2.RequestStatus.Name(status)  # type: ignore[arg-type]
    return name.removeprefix("REQUEST_STATUS_").lower()


def key_status_name(status: int) -> str:
    name: str = auth_pb2.KeyStatus.Name(status)  # type: ignore[arg-type]
    return name.removeprefix("KEY_STATUS_").lower()


def entry_kind_name(kind: int) -> str:
    name: str = billing_pb2.EntryKind.Name(kind)  # type: ignore[arg-type]
    return name.removeprefix("ENTRY_KIND_").lower()


CSV_COLUMNS = (
    "request_id",
    "started_at",
    "finished_at",
    "status",
    "http_status",
    "key_id",
    "key_name",
    "model",
    "provider",
    "upstream_model",
    "protocol",
    "stream",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_micros",
    "cost",
    "latency_ms",
    "ttft_ms",
    "finish_reason",
    "error_type",
    "error_message",
    "end_user",
)

# A cell starting with one of these is a formula to spreadsheet programs; text the client
# controls (end user, error messages) must not run as one (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


def _iso(ms: int) -> str:
    dt = from_ms(ms)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z") if dt else ""


def csv_header() -> str:
    return _csv([list(CSV_COLUMNS)])


def csv_rows(events: Iterable[usage_event_pb2.UsageEvent]) -> str:
    rows = [
        [
            spreadsheet_safe(e.request_id),
            _iso(e.started_at_unix_ms),
            _iso(e.finished_at_unix_ms),
            status_name(e.status),
            str(e.http_status),
            spreadsheet_safe(e.key_id),
            spreadsheet_safe(e.key_name),
            spreadsheet_safe(e.model),
            spreadsheet_safe(e.provider),
            spreadsheet_safe(e.upstream_model),
            spreadsheet_safe(e.protocol),
            "true" if e.stream else "false",
            str(e.input_tokens),
            str(e.output_tokens),
            str(e.cached_input_tokens),
            str(e.cache_write_tokens),
            str(e.reasoning_tokens),
            str(e.cost_micros),
            money(e.cost_micros),
            str(e.latency_ms),
            str(e.ttft_ms),
            spreadsheet_safe(e.finish_reason),
            spreadsheet_safe(e.error_type),
            spreadsheet_safe(e.error_message),
            spreadsheet_safe(e.end_user),
        ]
        for e in events
    ]
    return _csv(rows)


def _csv(rows: list[list[str]]) -> str:
    out = io.StringIO()
    # RFC 4180 line endings.
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue()
