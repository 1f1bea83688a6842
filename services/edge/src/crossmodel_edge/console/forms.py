"""What the console's forms and query strings mean: parsing and formatting, no I/O."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation

from crossmodel_common.money import MICROS, format_micros

MAX_NAME = 100
MAX_TOP_UP_MICROS = 10_000 * MICROS
MIN_TOP_UP_MICROS = 1 * MICROS
MAX_RANGE_DAYS = 366
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
STATUSES = ("succeeded", "failed", "cancelled")


class FormError(ValueError):
    """A field the user has to fix; the message is shown next to the form."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class LimitsInput:
    rpm: int
    tpm: int
    allowed_models: tuple[str, ...]
    spend_cap_micros: int
    expires_at_ms: int


def _text(form: Mapping[str, str], name: str) -> str:
    return str(form.get(name, "")).strip()


def key_name(form: Mapping[str, str]) -> str:
    name = _text(form, "name")
    if not name:
        raise FormError("Give the key a name, e.g. the app or environment that uses it.", "name")
    if len(name) > MAX_NAME:
        raise FormError(f"The name is longer than {MAX_NAME} characters.", "name")
    return name


def _count(form: Mapping[str, str], name: str, label: str) -> int:
    raw = _text(form, name).replace(",", "").replace("_", "")
    if not raw:
        return 0
    if not raw.isdigit():
        raise FormError(f"{label} must be a whole number (empty or 0 for no limit).", name)
    value = int(raw)
    if value > 10**12:
        raise FormError(f"{label} is too large.", name)
    return value


def parse_amount(raw: str, field: str) -> int:
    """A decimal amount of the account currency ('12.50') in micro-units."""
    raw = raw.strip().lstrip("$").replace(",", "")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise FormError("Enter an amount like 25 or 12.50.", field) from None
    if not value.is_finite() or value < 0:
        raise FormError("Enter an amount like 25 or 12.50.", field)
    micros = value * MICROS
    if micros != micros.to_integral_value():
        raise FormError("Amounts have at most six decimal places.", field)
    return int(micros)


def limits(form: Mapping[str, str], *, today: date) -> LimitsInput:
    models = tuple(p.strip() for p in re.split(r"[,\s]+", _text(form, "allowed_models")) if p.strip())
    for pattern in models:
        if len(pattern) > 200:
            raise FormError("A model pattern is longer than 200 characters.", "allowed_models")
    cap_raw = _text(form, "spend_cap")
    cap = parse_amount(cap_raw, "spend_cap") if cap_raw else 0
    expires_raw = _text(form, "expires_on")
    expires_ms = 0
    if expires_raw:
        day = parse_day(expires_raw, "expires_on")
        if day <= today:
            raise FormError("The expiry date must be in the future.", "expires_on")
        expires_ms = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
    return LimitsInput(
        rpm=_count(form, "rpm", "Requests per minute"),
        tpm=_count(form, "tpm", "Tokens per minute"),
        allowed_models=models,
        spend_cap_micros=cap,
        expires_at_ms=expires_ms,
    )


def top_up_amount(form: Mapping[str, str]) -> int:
    micros = parse_amount(_text(form, "amount"), "amount")
    if micros < MIN_TOP_UP_MICROS:
        raise FormError(f"The smallest top-up is {money(MIN_TOP_UP_MICROS)}.", "amount")
    if micros > MAX_TOP_UP_MICROS:
        raise FormError(f"The largest top-up is {money(MAX_TOP_UP_MICROS)}.", "amount")
    return micros


def parse_day(raw: str, field: str) -> date:
    if not _DAY.match(raw):
        raise FormError("Dates are YYYY-MM-DD.", field)
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise FormError("That date does not exist.", field) from None


@dataclass(frozen=True, slots=True)
class Period:
    start: date
    end: date  # inclusive

    @property
    def days(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range((self.end - self.start).days + 1)]

    def bounds_ms(self) -> tuple[int, int]:
        start = datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC)
        end = datetime(self.end.year, self.end.month, self.end.day, tzinfo=UTC) + timedelta(days=1)
        return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def period(query: Mapping[str, str], *, today: date, default_days: int = 14) -> Period:
    """`from`/`to` (inclusive, UTC days) of the usage pages; the last `default_days` days by default."""
    start_raw, end_raw = _text(query, "from"), _text(query, "to")
    end = parse_day(end_raw, "to") if end_raw else today
    start = parse_day(start_raw, "from") if start_raw else end - timedelta(days=default_days - 1)
    if start > end:
        raise FormError("The start of the period is after its end.", "from")
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise FormError(f"Choose a period of at most {MAX_RANGE_DAYS} days.", "from")
    return Period(start, end)


def status_filter(query: Mapping[str, str]) -> str:
    status = _text(query, "status")
    if status and status not in STATUSES:
        raise FormError("Status is one of succeeded, failed, cancelled.", "status")
    return status


def money(micros: int) -> str:
    """12.5 -> '12.50'; sub-cent amounts keep their digits: 0.000123."""
    text = format_micros(micros)
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0")
    return f"{whole}.{frac.ljust(2, '0')}"


def number(value: int) -> str:
    return f"{value:,}"


def when(ms: int) -> str:
    if not ms:
        return "—"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def day_of(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d") if ms else ""


def safe_next(raw: str) -> str:
    """Where to go after signing in: only a path inside the console (no open redirect)."""
    if raw.startswith("/console/") and not raw.startswith("//") and "\\" not in raw and "\n" not in raw:
        return raw
    return "/console/keys"
