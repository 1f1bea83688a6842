"""What the usage pages show, computed from the usage service's answers. No I/O."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from markupsafe import Markup

from crossmodel.events.v1 import usage_event_pb2
from crossmodel.usage.v1 import usage_pb2
from crossmodel_edge.console import charts, forms
from crossmodel_edge.domain.admin import spreadsheet_safe

STATUS_NAMES: dict[int, str] = {
    usage_event_pb2.REQUEST_STATUS_SUCCEEDED: "succeeded",
    usage_event_pb2.REQUEST_STATUS_FAILED: "failed",
    usage_event_pb2.REQUEST_STATUS_CANCELLED: "cancelled",
}


@dataclass(slots=True)
class Sums:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_micros: int = 0
    errors: int = 0

    def add(self, t: usage_pb2.Totals) -> None:
        self.requests += t.requests
        self.input_tokens += t.input_tokens
        self.output_tokens += t.output_tokens
        self.cost_micros += t.cost_micros
        self.errors += t.errors

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(slots=True)
class UsageView:
    total: Sums
    per_model: list[tuple[str, Sums, int]]  # model, sums, bar width in percent of the largest cost
    tokens_chart: Markup
    cost_chart: Markup
    requests_chart: Markup


def usage_view(rows: Iterable[usage_pb2.DailyUsage], period: forms.Period) -> UsageView:
    days = [d.isoformat() for d in period.days]
    per_day = {d: Sums() for d in days}
    per_model: dict[str, Sums] = {}
    total = Sums()
    for row in rows:
        if row.day in per_day:
            per_day[row.day].add(row.totals)
        per_model.setdefault(row.model, Sums()).add(row.totals)
        total.add(row.totals)
    ordered = sorted(per_model.items(), key=lambda kv: (-kv[1].cost_micros, -kv[1].tokens, kv[0]))
    top_cost = max((s.cost_micros for _, s in ordered), default=0) or 1
    top_tokens = max((s.tokens for _, s in ordered), default=0) or 1
    bars = [
        (m, s, round(100 * (s.cost_micros / top_cost if top_cost > 1 else s.tokens / top_tokens)))
        for m, s in ordered
    ]
    tokens_chart = charts.stacked_bars(
        "Tokens per day",
        days,
        [
            charts.Series("Input tokens", "s-in", [per_day[d].input_tokens for d in days]),
            charts.Series("Output tokens", "s-out", [per_day[d].output_tokens for d in days]),
        ],
        fmt=forms.number,
    )
    cost_chart = charts.stacked_bars(
        "Cost per day",
        days,
        [charts.Series("Cost", "s-cost", [per_day[d].cost_micros for d in days])],
        fmt=forms.money,
    )
    requests_chart = charts.stacked_bars(
        "Requests per day",
        days,
        [
            charts.Series(
                "Succeeded or cancelled", "s-ok", [per_day[d].requests - per_day[d].errors for d in days]
            ),
            charts.Series("Failed", "s-err", [per_day[d].errors for d in days]),
        ],
        fmt=forms.number,
    )
    return UsageView(total, bars, tokens_chart, cost_chart, requests_chart)


def status_name(status: int) -> str:
    return STATUS_NAMES.get(status, "unknown")


CSV_COLUMNS = (
    "request_id",
    "started_at",
    "key_id",
    "key_name",
    "model",
    "provider",
    "upstream_model",
    "protocol",
    "stream",
    "status",
    "http_status",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "reasoning_tokens",
    "cost",
    "latency_ms",
    "ttft_ms",
    "error_type",
    "error_message",
)


def csv_header() -> str:
    buf = io.StringIO()
    csv.writer(buf).writerow(CSV_COLUMNS)
    return buf.getvalue()


def csv_rows(events: Sequence[usage_event_pb2.UsageEvent]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    for e in events:
        started = datetime.fromtimestamp(e.started_at_unix_ms / 1000, tz=UTC).isoformat(
            timespec="milliseconds"
        )
        writer.writerow(
            [
                spreadsheet_safe(e.request_id),
                started,
                spreadsheet_safe(e.key_id),
                spreadsheet_safe(e.key_name),
                spreadsheet_safe(e.model),
                spreadsheet_safe(e.provider),
                spreadsheet_safe(e.upstream_model),
                spreadsheet_safe(e.protocol),
                "true" if e.stream else "false",
                status_name(e.status),
                e.http_status,
                e.input_tokens,
                e.output_tokens,
                e.cached_input_tokens,
                e.reasoning_tokens,
                forms.money(e.cost_micros),
                e.latency_ms,
                e.ttft_ms,
                spreadsheet_safe(e.error_type),
                spreadsheet_safe(e.error_message),
            ]
        )
    return buf.getvalue()
