"""The console over HTTP: sessions, CSRF, account isolation, keys, top-ups, usage pages and the
payment webhook, against the real auth, billing and usage services."""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from crossmodel.auth.v1 import auth_pb2
from crossmodel.events.v1 import usage_event_pb2 as ev
from crossmodel_common.ids import new_request_id, new_ulid
from crossmodel_edge.console import signatures
from crossmodel_usage.domain.records import normalize
from crossmodel_usage.wire import record_from_event

from ..conftest import serve
from .conftest import (
    PASSWORD,
    SIGNIN_PER_EMAIL,
    WEBHOOK_SECRET,
    Browser,
    Services,
    attempt_of,
    console_settings,
    csrf_of,
    sign_up,
)

PAGES = [
    "/console/keys",
    "/console/usage",
    "/console/requests",
    "/console/requests/req_x",
    "/console/requests.csv",
    "/console/balance",
    "/console/models",
    "/console/keys/key_x",
]
POSTS = [
    "/console/keys",
    "/console/keys/key_x/rename",
    "/console/keys/key_x/limits",
    "/console/keys/key_x/revoke",
    "/console/balance/top-up",
    "/console/signout",
]


def _key_ids(html: str) -> list[str]:
    return sorted(set(re.findall(r'href="/console/keys/(key_[0-9a-z]+)"', html)))


async def _create_key(b: Browser, name: str = "backend", **limits: str) -> tuple[str, str]:
    await b.get("/console/keys")
    resp = await b.post("/console/keys", {"name": name, **limits})
    assert resp.status_code == 201, resp.text
    secret = re.search(r'id="new-secret" class="mono">(cm-[^<]+)<', resp.text)
    assert secret
    key_id = re.search(r'href="/console/keys/(key_[0-9a-z]+)">' + re.escape(name) + "<", resp.text)
    assert key_id
    return key_id.group(1), secret.group(1)


# -- without a session ---------------------------------------------------------------------------


async def test_pages_without_a_session_redirect_to_sign_in(
    new_browser: Callable[[], httpx.AsyncClient],
) -> None:
    client = new_browser()
    for path in PAGES:
        resp = await client.get(path)
        assert resp.status_code == 303, path
        assert resp.headers["location"].startswith("/console/signin?next=/console/"), path
    # A forged or stale cookie is no session either.
    client.cookies.set("cm_session", "cms_" + "x" * 43, path="/console")
    resp = await client.get("/console/keys")
    assert resp.status_code == 303


async def test_posts_without_a_session_are_refused(new_browser: Callable[[], httpx.AsyncClient]) -> None:
    client = new_browser()
    for path in POSTS:
        resp = await client.post(path, data={"name": "x", "csrf_token": "whatever", "amount": "10"})
        assert resp.status_code == 401, path
        assert "Sign in again" in resp.text


async def test_sign_in_page_redirects_back_only_inside_the_console(
    new_browser: Callable[[], httpx.AsyncClient],
) -> None:
    client = new_browser()
    page = await client.get("/console/signin", params={"next": "https://evil.example/"})
    assert 'name="next" value="/console/keys"' in page.text
    page = await client.get("/console/signin", params={"next": "//evil.example/console/"})
    assert 'name="next" value="/console/keys"' in page.text


# -- sign-up, sign-in, sign-out --------------------------------------------------------------------


async def test_sign_up_sets_a_hardened_session_cookie(new_browser: Callable[[], httpx.AsyncClient]) -> None:
    client = new_browser()
    b = Browser(client, f"u-{new_ulid()}@example.com")
    await b.get("/console/signup")
    resp = await b.post(
        "/console/signup", {"email": b.email, "password": PASSWORD, "password_again": PASSWORD}
    )
    assert resp.status_code == 303
    cookie = next(
        v for k, v in resp.headers.multi_items() if k == "set-cookie" and v.startswith("cm_session=")
    )
    attrs = [a.strip().lower() for a in cookie.split(";")]
    assert "httponly" in attrs
    assert "samesite=lax" in attrs
    assert "path=/console" in attrs
    assert "secure" not in attrs  # plain http here; https gets Secure (test below)
    keys = await b.get("/console/keys")
    assert keys.status_code == 200
    assert b.email in keys.text
    for name, value in (
        ("content-security-policy", "script-src 'self'"),
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
    ):
        assert value in keys.headers[name]


async def test_cookies_are_secure_over_https(
    services: Services, broker: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    settings = console_settings(services, broker, tmp_path_factory.mktemp("spool"))
    async with serve(settings) as running, httpx.AsyncClient(base_url=running.url) as client:
        # What uvicorn reports behind a TLS-terminating proxy it trusts (loopback by default).
        resp = await client.get("/console/signin", headers={"x-forwarded-proto": "https"})
        cookie = resp.headers["set-cookie"].lower()
        assert "; secure" in cookie


async def test_sign_in_and_sign_out(alice: Browser, new_browser: Callable[[], httpx.AsyncClient]) -> None:
    b = Browser(new_browser(), alice.email)
    page = await b.get("/console/signin?next=/console/usage")
    wrong = await b.post(
        "/console/signin", {"email": b.email, "password": "not the password", "next": "/console/usage"}
    )
    assert wrong.status_code == 401
    assert "Wrong email or password." in wrong.text
    assert page.status_code == 200
    ok = await b.post(
        "/console/signin", {"email": b.email.upper(), "password": PASSWORD, "next": "/console/usage"}
    )
    assert ok.status_code == 303
    assert ok.headers["location"] == "/console/usage"
    assert (await b.get("/console/usage")).status_code == 200
    token = b.client.cookies["cm_session"]
    out = await b.post("/console/signout")
    assert out.status_code == 303
    assert (await b.get("/console/keys")).status_code == 303
    # The session is gone at auth, not only the cookie in this browser.
    stale = new_browser()
    stale.cookies.set("cm_session", token, path="/console")
    assert (await stale.get("/console/keys")).status_code == 303
    # alice's own session is untouched by another session's sign-out.
    assert (await alice.get("/console/keys")).status_code == 200


async def test_sign_in_forms_need_their_own_csrf_token(
    alice: Browser, new_browser: Callable[[], httpx.AsyncClient]
) -> None:
    b = Browser(new_browser(), alice.email)
    await b.get("/console/signin")
    missing = await b.post("/console/signin", {"email": b.email, "password": PASSWORD}, csrf=False)
    forged = await b.post("/console/signin", {"email": b.email, "password": PASSWORD, "csrf_token": "x" * 43})
    assert missing.status_code == forged.status_code == 403
    # A page of another site posting the form: the browser sends its Origin.
    cross = await b.client.post(
        "/console/signin",
        data={"email": b.email, "password": PASSWORD, "csrf_token": b.csrf},
        headers={"origin": "https://evil.example"},
    )
    assert cross.status_code == 403
    assert "cm_session" not in b.client.cookies


async def test_sign_in_attempts_are_rate_limited(
    alice: Browser, new_browser: Callable[[], httpx.AsyncClient]
) -> None:
    b = Browser(new_browser(), alice.email)
    await b.get("/console/signin")
    for _ in range(SIGNIN_PER_EMAIL):
        resp = await b.post("/console/signin", {"email": b.email, "password": "wrong password!!"})
        assert resp.status_code == 401
    limited = await b.post("/console/signin", {"email": b.email, "password": PASSWORD})
    assert limited.status_code == 429
    assert "Too many sign-in attempts" in limited.text
    assert int(limited.headers["retry-after"]) > 0
    assert "cm_session" not in b.client.cookies


async def test_sign_up_errors_are_clear(alice: Browser, new_browser: Callable[[], httpx.AsyncClient]) -> None:
    b = Browser(new_browser())
    await b.get("/console/signup")
    taken = await b.post(
        "/console/signup", {"email": alice.email, "password": PASSWORD, "password_again": PASSWORD}
    )
    assert taken.status_code == 409
    assert "exists already" in taken.text
    short = await b.post(
        "/console/signup", {"email": "x@example.com", "password": "short", "password_again": "short"}
    )
    assert short.status_code == 400
    assert "at least 10 characters" in short.text
    differ = await b.post(
        "/console/signup", {"email": "y@example.com", "password": PASSWORD, "password_again": "other"}
    )
    assert differ.status_code == 400
    assert "differ" in differ.text


# -- CSRF on every state change --------------------------------------------------------------------


async def test_state_changes_without_the_sessions_csrf_token_are_refused(
    alice: Browser, bob: Browser
) -> None:
    key_id, _ = await _create_key(alice, "csrf-target")
    before = (await alice.get("/console/keys")).text
    attempts: list[tuple[str, dict[str, str]]] = [
        ("/console/keys", {"name": "sneaky"}),
        (f"/console/keys/{key_id}/rename", {"name": "renamed"}),
        (f"/console/keys/{key_id}/limits", {"rpm": "1"}),
        (f"/console/keys/{key_id}/revoke", {}),
        ("/console/balance/top-up", {"amount": "10", "attempt_id": new_ulid()}),
        ("/console/signout", {}),
    ]
    for path, data in attempts:
        missing = await alice.client.post(path, data=data)
        forged = await alice.client.post(path, data={**data, "csrf_token": "A" * 43})
        # Bob's real token is bound to Bob's session, not to Alice's.
        other = await alice.client.post(path, data={**data, "csrf_token": bob.csrf})
        cross = await alice.client.post(
            path, data={**data, "csrf_token": alice.csrf}, headers={"origin": "https://evil.example"}
        )
        for resp in (missing, forged, other, cross):
            assert resp.status_code == 403, (path, resp.status_code)
    after = await alice.get("/console/keys")
    assert after.status_code == 200  # still signed in: the forged sign-out did nothing
    assert _key_ids(after.text) == _key_ids(before)
    assert "sneaky" not in after.text
    assert "renamed" not in after.text
    assert "revoked" not in after.text
    balance = await alice.get("/console/balance")
    assert 'id="balance">0.00 USD' in balance.text


# -- keys ----------------------------------------------------------------------------------------


async def test_create_rename_limit_and_revoke_a_key(alice: Browser, services: Services) -> None:
    key_id, secret = await _create_key(alice, "prod", rpm="60", allowed_models="openai/*, anthropic/*")
    auth = services.auth()
    seen = await auth.IntrospectKey(auth_pb2.IntrospectKeyRequest(api_key=secret))
    assert seen.decision == auth_pb2.DECISION_ALLOWED
    assert seen.key.id == key_id
    assert list(seen.key.limits.allowed_models) == ["openai/*", "anthropic/*"]
    assert seen.key.limits.rpm == 60
    # The secret is shown once: never again on any page.
    for path in ("/console/keys", f"/console/keys/{key_id}"):
        assert secret not in (await alice.get(path)).text
    assert secret[-4:] in (await alice.get("/console/keys")).text  # the redacted form

    page = await alice.get(f"/console/keys/{key_id}")
    assert page.status_code == 200
    renamed = await alice.post(f"/console/keys/{key_id}/rename", {"name": "prod-eu"})
    assert renamed.status_code == 303
    assert "Key renamed." in (await alice.get(renamed.headers["location"])).text
    tomorrow = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 3 * 86400))
    limits = await alice.post(
        f"/console/keys/{key_id}/limits",
        {"rpm": "5", "tpm": "10,000", "spend_cap": "2.50", "allowed_models": "", "expires_on": tomorrow},
    )
    assert limits.status_code == 303
    key = (await auth.GetKey(auth_pb2.GetKeyRequest(key_id=key_id))).key
    assert key.name == "prod-eu"
    assert (key.limits.rpm, key.limits.tpm, key.limits.spend_cap_micros) == (5, 10_000, 2_500_000)
    assert list(key.limits.allowed_models) == []
    assert time.strftime("%Y-%m-%d", time.gmtime(key.limits.expires_at_unix_ms / 1000)) == tomorrow

    bad = await alice.post(f"/console/keys/{key_id}/limits", {"rpm": "lots"})
    assert bad.status_code == 400
    assert "Requests per minute must be a whole number" in bad.text
    past = await alice.post(f"/console/keys/{key_id}/limits", {"expires_on": "2020-01-01"})
    assert past.status_code == 400
    assert "must be in the future" in past.text

    revoked = await alice.post(f"/console/keys/{key_id}/revoke")
    assert revoked.status_code == 303
    assert "Key revoked." in (await alice.get(revoked.headers["location"])).text
    after = await auth.IntrospectKey(auth_pb2.IntrospectKeyRequest(api_key=secret))
    assert after.decision == auth_pb2.DECISION_KEY_REVOKED


async def test_create_key_needs_a_name(alice: Browser) -> None:
    await alice.get("/console/keys")
    resp = await alice.post("/console/keys", {"name": "  "})
    assert resp.status_code == 400
    assert "Give the key a name" in resp.text


async def test_another_accounts_key_is_not_found(alice: Browser, bob: Browser, services: Services) -> None:
    key_id, secret = await _create_key(alice, "alice-only")
    assert (await bob.get(f"/console/keys/{key_id}")).status_code == 404
    await bob.get("/console/keys")
    for path, data in (
        (f"/console/keys/{key_id}/rename", {"name": "bob was here"}),
        (f"/console/keys/{key_id}/limits", {"rpm": "1"}),
        (f"/console/keys/{key_id}/revoke", {}),
    ):
        resp = await bob.post(path, data)
        assert resp.status_code == 404, path
    assert (await bob.get(f"/console/usage?key={key_id}")).status_code == 404
    assert key_id not in (await bob.get("/console/keys")).text
    key = (await services.auth().IntrospectKey(auth_pb2.IntrospectKeyRequest(api_key=secret))).key
    assert key.name == "alice-only"
    assert key.status == auth_pb2.KEY_STATUS_ACTIVE
    assert key.limits.rpm == 0


# -- usage, request log, export ----------------------------------------------------------------------


async def _log_requests(services: Services, account_id: str, key_id: str) -> list[ev.UsageEvent]:
    now = int(time.time() * 1000)
    events = []
    for i, (model, status) in enumerate(
        [
            ("openai/gpt-4o-mini", ev.REQUEST_STATUS_SUCCEEDED),
            ("openai/gpt-4o-mini", ev.REQUEST_STATUS_SUCCEEDED),
            ("anthropic/claude-sonnet-4.6", ev.REQUEST_STATUS_FAILED),
        ]
    ):
        e = ev.UsageEvent(
            request_id=new_request_id(),
            account_id=account_id,
            key_id=key_id,
            key_name="logged",
            model=model,
            provider=model.split("/")[0],
            upstream_model=model.split("/")[1],
            protocol="openai.chat",
            status=status,
            http_status=200 if status == ev.REQUEST_STATUS_SUCCEEDED else 502,
            error_type="" if status == ev.REQUEST_STATUS_SUCCEEDED else "upstream_error",
            error_message="" if status == ev.REQUEST_STATUS_SUCCEEDED else "=cmd|' /C calc'!A0 upstream down",
            input_tokens=100 + i,
            output_tokens=20 + i,
            cost_micros=1_500 * (i + 1),
            started_at_unix_ms=now - 60_000 + i,
            finished_at_unix_ms=now - 59_000 + i,
            latency_ms=1_000,
            upstream_latency_ms=900,
        )
        assert await services.usage.record(normalize(record_from_event(e)))
        events.append(e)
    return events


async def _account_of(b: Browser, services: Services) -> str:
    _, secret = await _create_key(b, f"k-{new_ulid()[-6:]}")
    seen = await services.auth().IntrospectKey(auth_pb2.IntrospectKeyRequest(api_key=secret))
    return str(seen.key.account_id)


async def test_request_log_detail_and_isolation(alice: Browser, bob: Browser, services: Services) -> None:
    account = await _account_of(alice, services)
    events = await _log_requests(services, account, "key_logged")
    failed = events[2]

    log = await alice.get("/console/requests")
    assert log.status_code == 200
    for e in events:
        assert e.request_id in log.text
    found = await alice.get("/console/requests", params={"request_id": failed.request_id})
    assert failed.request_id in found.text
    assert events[0].request_id not in found.text
    only_failed = await alice.get("/console/requests", params={"status": "failed"})
    assert failed.request_id in only_failed.text
    assert events[0].request_id not in only_failed.text
    by_model = await alice.get("/console/requests", params={"model": "openai/gpt-4o-mini"})
    assert events[0].request_id in by_model.text
    assert failed.request_id not in by_model.text
    bad_status = await alice.get("/console/requests", params={"status": "exploded"})
    assert "Status is one of" in bad_status.text

    detail = await alice.get(f"/console/requests/{failed.request_id}")
    assert detail.status_code == 200
    for text in ("anthropic/claude-sonnet-4.6", "upstream_error", "upstream down", "1,000 ms", "0.0045"):
        assert text in detail.text

    # Bob cannot see Alice's requests, not even by id.
    assert (await bob.get(f"/console/requests/{failed.request_id}")).status_code == 404
    bob_log = await bob.get("/console/requests", params={"request_id": failed.request_id})
    assert f'href="/console/requests/{failed.request_id}"' not in bob_log.text
    assert "No requests match" in bob_log.text
    bob_csv = await bob.get("/console/requests.csv")
    assert failed.request_id not in bob_csv.text

    exported = await alice.get("/console/requests.csv")
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    assert "attachment" in exported.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert {r["request_id"] for r in rows} == {e.request_id for e in events}
    row = next(r for r in rows if r["request_id"] == failed.request_id)
    assert row["status"] == "failed"
    assert row["cost"] == "0.0045"
    assert row["error_message"].startswith("'=")  # neutralised for spreadsheets
    filtered = list(
        csv.DictReader(io.StringIO((await alice.get("/console/requests.csv?status=failed")).text))
    )
    assert [r["request_id"] for r in filtered] == [failed.request_id]


async def test_usage_page_charts_the_period(alice: Browser, services: Services) -> None:
    account = await _account_of(alice, services)
    events = await _log_requests(services, account, "key_logged")
    page = await alice.get("/console/usage")
    assert page.status_code == 200
    assert 'id="total-requests">3<' in page.text
    assert page.text.count('<svg class="chart"') == 3
    assert "openai/gpt-4o-mini" in page.text
    assert "anthropic/claude-sonnet-4.6" in page.text
    total_in = sum(e.input_tokens for e in events)
    assert f"Input tokens: {total_in:,}" in page.text  # the day's tooltip
    empty = await alice.get("/console/usage", params={"from": "2020-01-01", "to": "2020-01-31"})
    assert 'id="total-requests">0<' in empty.text
    assert "No usage in this period" in empty.text
    reversed_period = await alice.get("/console/usage", params={"from": "2020-02-01", "to": "2020-01-01"})
    assert "after its end" in reversed_period.text


async def test_models_page_lists_the_catalog_with_snippets(alice: Browser) -> None:
    page = await alice.get("/console/models")
    assert page.status_code == 200
    for text in (
        "openai/gpt-4o-mini",
        "Claude Sonnet 4.6",
        "128,000",
        "0.15",
        "from openai import OpenAI",
        "import anthropic",
        "curl ",
        "/v1/chat/completions",
    ):
        assert text in page.text


async def test_unknown_console_pages_are_html_404(alice: Browser) -> None:
    resp = await alice.get("/console/nope")
    assert resp.status_code == 404
    assert "Page not found" in resp.text
    assert (await alice.get("/console/static/nope.css")).status_code == 404
    css = await alice.get("/console/static/console.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")


# -- top-ups ------------------------------------------------------------------------------------------


async def test_dev_top_up_credits_once_per_form(alice: Browser) -> None:
    page = await alice.get("/console/balance")
    attempt = attempt_of(page.text)
    first = await alice.post("/console/balance/top-up", {"amount": "25", "attempt_id": attempt})
    assert first.status_code == 303
    again = await alice.post("/console/balance/top-up", {"amount": "25", "attempt_id": attempt})
    assert again.status_code == 303
    page = await alice.get("/console/balance")
    assert 'id="balance">25.00 USD' in page.text
    assert "Top-up (development payment provider)" in page.text
    too_small = await alice.post(
        "/console/balance/top-up", {"amount": "0.10", "attempt_id": attempt_of(page.text)}
    )
    assert too_small.status_code == 400
    assert "smallest top-up" in too_small.text


# -- payment webhook ----------------------------------------------------------------------------------


def _event(account_id: str, *, cents: int = 1_250, event_id: str | None = None, **obj: Any) -> bytes:
    body = {
        "id": event_id or f"evt_{new_ulid()}",
        "type": "checkout.session.completed",
        "created": int(time.time()),
        "data": {
            "object": {
                "client_reference_id": account_id,
                "amount_total": cents,
                "currency": "usd",
                "payment_status": "paid",
                **obj,
            }
        },
    }
    return orjson.dumps(body)


async def _deliver(client: httpx.AsyncClient, body: bytes, header: str | None) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if header is not None:
        headers["stripe-signature"] = header
    return await client.post("/console/webhooks/payments", content=body, headers=headers)


async def test_signed_payment_webhook_credits_once(
    alice: Browser, services: Services, new_browser: Callable[[], httpx.AsyncClient]
) -> None:
    account = await _account_of(alice, services)
    provider = new_browser()
    body = _event(account, cents=1_250)
    ok = await _deliver(provider, body, signatures.sign(WEBHOOK_SECRET, body, int(time.time())))
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"received": True, "credited": True, "replayed": False}
    # The provider redelivers the same event (a retry, or a replay of a captured request inside
    # the tolerance): the event id is the idempotency key, nothing more is credited.
    replay = await _deliver(provider, body, signatures.sign(WEBHOOK_SECRET, body, int(time.time())))
    assert replay.status_code == 200
    assert replay.json()["replayed"] is True
    page = await alice.get("/console/balance")
    assert 'id="balance">12.50 USD' in page.text


async def test_payment_webhook_refuses_bad_signatures(
    alice: Browser, services: Services, new_browser: Callable[[], httpx.AsyncClient]
) -> None:
    account = await _account_of(alice, services)
    provider = new_browser()
    body = _event(account)
    now = int(time.time())
    tampered = body.replace(b"1250", b"9999")
    cases = {
        "unsigned": (body, None),
        "wrong secret": (body, signatures.sign("whsec_wrong", body, now)),
        "tampered body": (tampered, signatures.sign(WEBHOOK_SECRET, body, now)),
        "stale": (body, signatures.sign(WEBHOOK_SECRET, body, now - 3600)),
        "from the future": (body, signatures.sign(WEBHOOK_SECRET, body, now + 3600)),
        "garbage": (body, "t=abc,v1=zz"),
        "no v1": (body, f"t={now}"),
    }
    for name, (payload, header) in cases.items():
        resp = await _deliver(provider, payload, header)
        assert resp.status_code == 400, name
        assert "error" in resp.json(), name
    page = await alice.get("/console/balance")
    assert 'id="balance">0.00 USD' in page.text


async def test_payment_webhook_event_checks(
    alice: Browser, services: Services, new_browser: Callable[[], httpx.AsyncClient]
) -> None:
    account = await _account_of(alice, services)
    provider = new_browser()
    now = int(time.time())

    async def send(body: bytes) -> httpx.Response:
        return await _deliver(provider, body, signatures.sign(WEBHOOK_SECRET, body, now))

    unpaid = await send(_event(account, payment_status="unpaid"))
    assert unpaid.json() == {"received": True, "credited": False}
    other_type = orjson.dumps({"id": f"evt_{new_ulid()}", "type": "customer.created", "data": {"object": {}}})
    assert (await send(other_type)).json()["credited"] is False
    unknown = await send(_event("acct_nobody"))
    assert unknown.status_code == 400
    euros = await send(_event(account, currency="eur"))
    assert euros.status_code == 400
    assert "USD" in euros.json()["error"]
    assert (await send(b"not json")).status_code == 400
    event_id = f"evt_{new_ulid()}"
    assert (await send(_event(account, cents=500, event_id=event_id))).status_code == 200
    conflict = await send(_event(account, cents=700, event_id=event_id))
    assert conflict.status_code == 409
    page = await alice.get("/console/balance")
    assert 'id="balance">5.00 USD' in page.text


async def test_new_accounts_are_separate(
    new_browser: Callable[[], httpx.AsyncClient], services: Services
) -> None:
    a = await sign_up(new_browser())
    b = await sign_up(new_browser())
    assert await _account_of(a, services) != await _account_of(b, services)
    assert csrf_of((await a.get("/console/keys")).text) != csrf_of((await b.get("/console/keys")).text)
