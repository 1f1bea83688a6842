"""Plain-text output: aligned tables and key/value blocks, readable in a terminal and stable
enough to grep."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

# Columns whose values are numbers or amounts: aligned right.
_NUMERIC = {
    "REQUESTS",
    "INPUT",
    "OUTPUT",
    "CACHED",
    "COST",
    "ERRORS",
    "AMOUNT",
    "BALANCE",
    "RPM",
    "TPM",
    "SPEND CAP",
    "HTTP",
    "LATENCY MS",
}


def cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    return str(value)


def when(value: str | None) -> str:
    """'2026-11-20T12:00:00.123000Z' -> '2026-11-20 12:00:00Z'."""
    if not value:
        return "-"
    text = value.replace("T", " ")
    if "." in text:
        head, _, tail = text.partition(".")
        zone = tail.lstrip("0123456789")
        text = head + zone
    return text.replace("+00:00", "Z")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    cells = [[cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(value))

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(widths[i]) if headers[i] in _NUMERIC else v.ljust(widths[i]) for i, v in enumerate(values)
        ]
        return "  ".join(parts).rstrip()

    out = [line(list(headers))]
    out += [line(row) for row in cells]
    return "\n".join(out)


def fields(pairs: Sequence[tuple[str, Any]]) -> str:
    width = max(len(k) for k, _ in pairs)
    return "\n".join(f"{k.ljust(width)}  {cell(v)}" for k, v in pairs)


def money(amount: str, currency: str = "") -> str:
    return f"{amount} {currency}".strip()
