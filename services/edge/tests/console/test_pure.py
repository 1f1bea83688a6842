"""The console's pure parts: webhook signatures, form parsing, money display, charts, CSV."""

from __future__ import annotations

from datetime import date

import pytest

from crossmodel.events.v1 import usage_event_pb2 as ev
from crossmodel.usage.v1 import usage_pb2
from crossmodel_edge.console import forms, payments, signatures, views

SECRET = "whsec_test"
BODY = b'{"id":"evt_1"}'


def test_signature_round_trip_and_refusals() -> None:
    header = signatures.sign(SECRET, BODY, 1_000)
    assert signatures.verify(SECRET, header, BODY, now=1_100, tolerance_s=300) == 1_000
    # Several v1 values (a secret being rolled): any one matching is enough.
    rolled = header.replace("v1=", "v1=00,v1=")
    assert signatures.verify(SECRET, rolled, BODY, now=1_000, tolerance_s=300) == 1_000
    refusals = {
        "no secret configured": ("", header, BODY, 1_000),
        "no header": (SECRET, None, BODY, 1_000),
        "other body": (SECRET, header, BODY + b" ", 1_000),
        "other secret": ("whsec_other", header, BODY, 1_000),
        "too old": (SECRET, header, BODY, 1_301),
        "too new": (SECRET, header, BODY, 699),
        "no timestamp": (SECRET, header.split(",", 1)[1], BODY, 1_000),
        "bad timestamp": (SECRET, "t=x," + header.split(",", 1)[1], BODY, 1_000),
    }
    for name, (secret, hdr, body, now) in refusals.items():
        with pytest.raises(signatures.SignatureError):
            signatures.verify(secret, hdr, body, now=now, tolerance_s=300)
        assert name


def test_paid_events_become_credits_in_micros() -> None:
    body = (
        b'{"id":"evt_9","type":"checkout.session.completed","data":{"object":'
        b'{"client_reference_id":"acct_1","amount_total":2599,"currency":"usd","payment_status":"paid"}}}'
    )
    paid = payments.parse_event(body)
    assert paid == payments.PaidEvent("evt_9", "acct_1", 25_990_000, "USD")
    assert payments.parse_event(b'{"id":"evt_2","type":"invoice.paid"}') is None
    for bad in (b"[]", b'{"type":"checkout.session.completed"}', b"nope"):
        with pytest.raises(payments.EventError):
            payments.parse_event(bad)
    negative = body.replace(b"2599", b"-5")
    with pytest.raises(payments.EventError):
        payments.parse_event(negative)


def test_limits_form() -> None:
    today = date(2026, 11, 25)
    got = forms.limits(
        {
            "rpm": "1,000",
            "tpm": "",
            "allowed_models": "openai/*\nanthropic/*, ",
            "spend_cap": "$12.5",
            "expires_on": "2026-12-01",
        },
        today=today,
    )
    assert got == forms.LimitsInput(1000, 0, ("openai/*", "anthropic/*"), 12_500_000, 1_796_083_200_000)
    for form, field in (
        ({"rpm": "-1"}, "rpm"),
        ({"tpm": "1.5"}, "tpm"),
        ({"spend_cap": "abc"}, "spend_cap"),
        ({"spend_cap": "0.0000001"}, "spend_cap"),
        ({"expires_on": "2026-11-25"}, "expires_on"),
        ({"expires_on": "2026-02-30"}, "expires_on"),
    ):
        with pytest.raises(forms.FormError) as err:
            forms.limits(form, today=today)
        assert err.value.field == field


def test_money_and_periods() -> None:
    assert forms.money(12_500_000) == "12.50"
    assert forms.money(123) == "0.000123"
    assert forms.money(-4_500) == "-0.0045"
    assert forms.money(0) == "0.00"
    p = forms.period({}, today=date(2026, 11, 25))
    assert (p.start, p.end) == (date(2026, 11, 12), date(2026, 11, 25))
    assert len(p.days) == 14
    with pytest.raises(forms.FormError):
        forms.period({"from": "2020-01-01", "to": "2026-01-01"}, today=date(2026, 11, 25))
    assert forms.safe_next("/console/usage?key=1") == "/console/usage?key=1"
    for bad in ("https://evil.example/", "//evil.example", "/console\\evil", "/elsewhere"):
        assert forms.safe_next(bad) == "/console/keys"


def test_usage_view_sums_days_and_models() -> None:
    period = forms.Period(date(2026, 11, 24), date(2026, 11, 25))
    rows = [
        usage_pb2.DailyUsage(
            day="2026-11-24",
            key_id="k",
            model="a/x",
            totals=usage_pb2.Totals(requests=2, input_tokens=10, output_tokens=5, cost_micros=300),
        ),
        usage_pb2.DailyUsage(
            day="2026-11-25",
            key_id="k",
            model="b/y",
            totals=usage_pb2.Totals(requests=1, input_tokens=7, output_tokens=1, cost_micros=900, errors=1),
        ),
    ]
    view = views.usage_view(rows, period)
    assert (view.total.requests, view.total.tokens, view.total.cost_micros, view.total.errors) == (
        3,
        23,
        1_200,
        1,
    )
    assert [m for m, _, _ in view.per_model] == ["b/y", "a/x"]
    assert [w for _, _, w in view.per_model] == [100, 33]
    assert "Input tokens: 10" in view.tokens_chart
    assert (
        "<script"
        not in views.usage_view(
            [usage_pb2.DailyUsage(day="2026-11-25", model="<script>", totals=usage_pb2.Totals(requests=1))],
            period,
        ).tokens_chart
    )


def test_csv_neutralises_formulas() -> None:
    row = views.csv_rows(
        [ev.UsageEvent(request_id="req_1", error_message="=SUM(A1)", key_name="+x", status=2)]
    )
    assert "'=SUM(A1)" in row
    assert "'+x" in row
    assert ",failed," in row
