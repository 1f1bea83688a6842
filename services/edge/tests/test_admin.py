"""The admin API over real HTTP, against the real auth, billing and usage services in-process
(their own servicers and domain code on freshly migrated PostgreSQL databases and the real
Redis) and a real broker for the edge's producer."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from crossmodel.auth.v1 import auth_pb2, auth_pb2_grpc
from crossmodel.events.v1 import usage_event_pb2 as ev
from crossmodel_common.ids import new_request_id, new_ulid
from crossmodel_devstack.backends import Backends, backends
from crossmodel_devstack.broker import TansuBroker, free_port
from crossmodel_edge.config import Settings
from crossmodel_edge.routes import admin as admin_routes
from crossmodel_usage.domain.records import normalize
from crossmodel_usage.wire import record_from_event

from .conftest import RunningEdge, eventually, serve

TOKEN = "cm-admin-" + new_ulid()


@pytest.fixture(scope="module")
async def services() -> AsyncIterator[Backends]:
    async with backends("cm_edge_admin") as running:
        yield running


def _settings(services: Backends, broker: TansuBroker, spool: Path, token: str) -> Settings:
    return Settings(
        auth_target=services.auth_target,
        # The admin API never calls the router; nothing listens here.
        router_target=f"127.0.0.1:{free_port()}",
        billing_target=services.billing_target,
        usage_target=services.usage_target,
        kafka_bootstrap=broker.bootstrap,
        usage_topic="usage.v1.edge-admin-tests",
        spool_dir=spool,
        port=free_port(),
        admin_token=token,  # type: ignore[arg-type]  # pydantic turns it into a SecretStr
    )


@pytest.fixture(scope="module")
async def edge(
    services: Backends, broker: TansuBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningEdge]:
    async with serve(_settings(services, broker, tmp_path_factory.mktemp("spool"), TOKEN)) as running:
        yield running


@pytest.fixture
async def http(edge: RunningEdge) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=edge.url + "/admin/v1", headers={"authorization": f"Bearer {TOKEN}"}, timeout=30
    ) as client:
        yield client


def error_of(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    assert resp.headers["x-request-id"].startswith("req_")
    return dict(body["error"])


async def new_account(http: httpx.AsyncClient, name: str = "acme") -> str:
    resp = await http.post("/accounts", json={"name": name})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


async def credit(
    http: httpx.AsyncClient, account: str, body: dict[str, Any], key: str | None = None
) -> httpx.Response:
    return await http.post(
        f"/accounts/{account}/credits", json=body, headers={"idempotency-key": key or new_ulid()}
    )


# -- the admin token ----------------------------------------------------------------------------


async def test_no_token_or_a_wrong_one_is_401_before_the_body_is_read(edge: RunningEdge) -> None:
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as raw:
        attempts = [
            {},
            {"authorization": "Bearer wrong"},
            {"authorization": f"Bearer {TOKEN}x"},
            {"authorization": f"Basic {TOKEN}"},
            {"authorization": TOKEN},
        ]
        for headers in attempts:
            resp = await raw.get("/admin/v1/accounts", headers=headers)
            err = error_of(resp, 401)
            assert err["code"] == "invalid_admin_token"
            assert resp.headers["www-authenticate"].startswith("Bearer")
            assert TOKEN not in resp.text
            assert resp.headers["cache-control"] == "no-store"
        # A malformed body does not tell a caller without the token anything either.
        resp = await raw.post(
            "/admin/v1/accounts", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert error_of(resp, 401)["code"] == "invalid_admin_token"
        resp = await raw.get("/admin/v1/accounts", headers={"authorization": f"bearer {TOKEN}"})
        assert resp.status_code == 200
        assert resp.headers["cache-control"] == "no-store"


async def test_without_a_configured_token_the_admin_api_is_off(
    services: Backends, broker: TansuBroker, tmp_path: Path
) -> None:
    async with (
        serve(_settings(services, broker, tmp_path, "")) as off,
        httpx.AsyncClient(base_url=off.url, timeout=30) as raw,
    ):
        for headers in ({}, {"authorization": "Bearer"}, {"authorization": f"Bearer {TOKEN}"}):
            resp = await raw.get("/admin/v1/accounts", headers=headers)
            assert error_of(resp, 404)["code"] == "admin_api_disabled"
        assert (await raw.get("/healthz")).status_code == 200


async def test_the_openapi_page_documents_the_admin_api(edge: RunningEdge) -> None:
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as raw:
        spec = (await raw.get("/openapi.json")).json()
        assert (await raw.get("/docs")).status_code == 200
    paths = spec["paths"]
    for path in (
        "/admin/v1/accounts",
        "/admin/v1/accounts/{account_id}/credits",
        "/admin/v1/accounts/{account_id}/keys",
        "/admin/v1/keys/{key_id}",
        "/admin/v1/accounts/{account_id}/requests.csv",
    ):
        assert path in paths
    assert spec["components"]["securitySchemes"]["AdminToken"]["scheme"] == "bearer"
    credit_op = paths["/admin/v1/accounts/{account_id}/credits"]["post"]
    assert {p["name"]: p["required"] for p in credit_op["parameters"]}["Idempotency-Key"] is True
    assert credit_op["security"] == [{"AdminToken": []}]


# -- accounts -----------------------------------------------------------------------------------


async def test_accounts_are_created_listed_page_by_page_and_shown_with_their_balance(
    http: httpx.AsyncClient,
) -> None:
    created = [await new_account(http, f"list-{i}") for i in range(3)]
    seen: list[str] = []
    token = ""
    while True:
        resp = await http.get("/accounts", params={"limit": 2, "page_token": token})
        assert resp.status_code == 200
        page = resp.json()
        assert page["object"] == "list"
        assert len(page["data"]) <= 2
        seen += [a["id"] for a in page["data"]]
        token = page["next_page_token"]
        if not token:
            break
    assert len(seen) == len(set(seen))
    assert set(created) <= set(seen)

    shown = (await http.get(f"/accounts/{created[0]}")).json()
    assert shown["id"] == created[0]
    assert shown["name"] == "list-0"
    assert shown["disabled"] is False
    assert datetime.fromisoformat(shown["created_at"]).tzinfo is not None
    assert shown["balance"]["balance_micros"] == 0
    assert shown["balance"]["balance"] == "0.000000"
    assert shown["balance"]["currency"] == "USD"


async def test_unknown_accounts_and_keys_are_404(http: httpx.AsyncClient) -> None:
    missing = "acct_" + new_ulid()
    for method, path, body in [
        ("GET", f"/accounts/{missing}", None),
        ("GET", f"/accounts/{missing}/balance", None),
        ("GET", f"/accounts/{missing}/ledger", None),
        ("GET", f"/accounts/{missing}/keys", None),
        ("POST", f"/accounts/{missing}/keys", {"name": "k"}),
        ("GET", f"/accounts/{missing}/usage", None),
        ("GET", f"/accounts/{missing}/requests", None),
        ("GET", f"/accounts/{missing}/requests.csv", None),
        ("GET", "/keys/key_" + new_ulid(), None),
        ("PATCH", "/keys/key_" + new_ulid(), {"name": "x"}),
        ("POST", f"/keys/key_{new_ulid()}/revoke", None),
        ("GET", "/requests/" + new_request_id(), None),
    ]:
        resp = await http.request(method, path, json=body)
        assert error_of(resp, 404)["code"] == "not_found", path
    resp = await credit(http, missing, {"amount": "1.00"})
    assert error_of(resp, 404)["code"] == "not_found"


async def test_account_validation(http: httpx.AsyncClient) -> None:
    for body in ({}, {"name": ""}, {"name": "x", "extra": 1}, {"name": 5}):
        err = error_of(await http.post("/accounts", json=body), 400)
        assert err["type"] == "invalid_request_error"
    err = error_of(await http.get("/accounts", params={"limit": 0}), 400)
    assert err["param"] == "limit"


# -- money --------------------------------------------------------------------------------------


async def test_a_replayed_top_up_credits_once_and_returns_the_same_entry(http: httpx.AsyncClient) -> None:
    account = await new_account(http)
    first = await credit(http, account, {"amount": "10.50", "description": "invoice 7"}, key="topup-1")
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["replayed"] is False
    assert body["balance_micros"] == 10_500_000
    assert body["balance"] == "10.500000"
    entry = body["entry"]
    assert entry["kind"] == "top_up"
    assert entry["amount_micros"] == 10_500_000
    assert entry["amount"] == "10.500000"
    assert entry["idempotency_key"] == "topup-1"
    assert entry["description"] == "invoice 7"
    assert "idempotent-replayed" not in first.headers

    # Sequential and concurrent replays: nothing more is credited, the first entry comes back.
    replays = [await credit(http, account, {"amount_micros": 10_500_000}, key="topup-1")]
    replays += await asyncio.gather(
        *(credit(http, account, {"amount": "10.5"}, key="topup-1") for _ in range(10))
    )
    for resp in replays:
        assert resp.status_code == 200, resp.text
        assert resp.headers["idempotent-replayed"] == "true"
        assert resp.json()["replayed"] is True
        assert resp.json()["entry"]["id"] == entry["id"]

    balance = (await http.get(f"/accounts/{account}/balance")).json()
    assert balance["balance_micros"] == 10_500_000
    assert balance["total_credited_micros"] == 10_500_000
    ledger = (await http.get(f"/accounts/{account}/ledger")).json()["data"]
    assert [e["id"] for e in ledger] == [entry["id"]]

    # The same key for another amount is a client bug: refused, not silently answered.
    err = error_of(await credit(http, account, {"amount": "20.00"}, key="topup-1"), 409)
    assert err["code"] == "conflict"
    assert (await http.get(f"/accounts/{account}/balance")).json()["balance_micros"] == 10_500_000


async def test_many_distinct_top_ups_at_once_all_land(http: httpx.AsyncClient) -> None:
    account = await new_account(http)
    results = await asyncio.gather(*(credit(http, account, {"amount": "0.25"}) for _ in range(12)))
    assert all(r.status_code == 201 for r in results)
    assert (await http.get(f"/accounts/{account}/balance")).json()["balance"] == "3.000000"


async def test_credit_validation(http: httpx.AsyncClient) -> None:
    account = await new_account(http)
    resp = await http.post(f"/accounts/{account}/credits", json={"amount": "1.00"})
    assert error_of(resp, 400)["param"] == "Idempotency-Key"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"amount": "1.0000001"}, "amount"),
        ({"amount": "abc"}, "amount"),
        ({"amount": "1e3"}, "amount"),
        ({"amount": "NaN"}, "amount"),
        ({"amount": "-5.00"}, "amount"),
        ({"amount": "0"}, "amount"),
        ({}, "amount"),
        ({"amount": "1.00", "amount_micros": 1_000_000}, "amount"),
        ({"amount_micros": 10**18}, "amount_micros"),
    ]
    for body, param in cases:
        err = error_of(await credit(http, account, body), 400)
        assert err["param"] == param, (body, err)
    err = error_of(await credit(http, account, {"amount": "1", "colour": "red"}), 400)
    assert err["param"] == "colour"
    assert (await http.get(f"/accounts/{account}/balance")).json()["balance_micros"] == 0


async def test_adjustments_take_either_sign_and_need_a_reason(http: httpx.AsyncClient) -> None:
    account = await new_account(http)
    await credit(http, account, {"amount": "5.00"})
    path = f"/accounts/{account}/adjustments"
    resp = await http.post(
        path, json={"amount": "-2.25", "description": "refund"}, headers={"idempotency-key": "adj-1"}
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["entry"]["kind"] == "adjustment"
    assert resp.json()["entry"]["amount"] == "-2.250000"
    assert resp.json()["balance"] == "2.750000"
    again = await http.post(
        path, json={"amount": "-2.25", "description": "refund"}, headers={"idempotency-key": "adj-1"}
    )
    assert again.status_code == 200
    assert again.json()["balance_micros"] == 2_750_000
    err = error_of(await http.post(path, json={"amount": "1.00"}, headers={"idempotency-key": "a2"}), 400)
    assert err["param"] == "description"
    zero = await http.post(path, json={"amount": "0", "description": "x"}, headers={"idempotency-key": "a3"})
    assert error_of(zero, 400)["param"] == "amount"


async def test_the_ledger_pages_newest_first_without_gaps_or_repeats(http: httpx.AsyncClient) -> None:
    account = await new_account(http)
    made = await asyncio.gather(*(credit(http, account, {"amount_micros": 1_000 + i}) for i in range(9)))
    ids = {r.json()["entry"]["id"] for r in made}
    seen: list[dict[str, Any]] = []
    token: str | None = ""
    pages = 0
    while token is not None:
        resp = await http.get(f"/accounts/{account}/ledger", params={"limit": 4, "page_token": token})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        seen += body["data"]
        token = body["next_page_token"]
        pages += 1
    assert pages == 3
    assert [e["id"] for e in seen if e["id"] in ids] == [e["id"] for e in seen]
    assert sorted(e["id"] for e in seen) == sorted(ids)
    times = [e["created_at"] for e in seen]
    assert times == sorted(times, reverse=True)
    # Concurrent credits commit in any order; the last to commit saw the whole sum.
    assert max(e["balance_after_micros"] for e in seen) == sum(1_000 + i for i in range(9))
    err = error_of(await http.get(f"/accounts/{account}/ledger", params={"page_token": "nope"}), 400)
    assert err["param"] == "page_token"


# -- keys ---------------------------------------------------------------------------------------


async def test_key_lifecycle(services: Backends, edge: RunningEdge, http: httpx.AsyncClient) -> None:
    account = await new_account(http)
    await credit(http, account, {"amount": "1.00"})
    expires = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    resp = await http.post(
        f"/accounts/{account}/keys",
        json={
            "name": "ci",
            "limits": {
                "rpm": 5,
                "tpm": 1000,
                "allowed_models": ["openai/*"],
                "spend_cap": "2.50",
                "expires_at": expires.isoformat(),
            },
        },
    )
    assert resp.status_code == 201, resp.text
    created = resp.json()
    secret = created["secret"]
    assert secret.startswith("cm-")
    assert len(secret) >= 35
    assert created["redacted"] == "cm-…" + secret[-4:]
    assert created["status"] == "active"
    assert created["last_used_at"] is None
    assert created["limits"] == {
        "rpm": 5,
        "tpm": 1000,
        "allowed_models": ["openai/*"],
        "spend_cap_micros": 2_500_000,
        "spend_cap": "2.500000",
        "expires_at": expires.isoformat().replace("+00:00", "Z"),
    }
    key_id = created["id"]

    listed = (await http.get(f"/accounts/{account}/keys")).json()["data"]
    assert [k["id"] for k in listed] == [key_id]
    assert "secret" not in listed[0]
    assert secret not in (await http.get(f"/accounts/{account}/keys")).text
    shown = (await http.get(f"/keys/{key_id}")).json()
    assert "secret" not in shown
    assert shown["limits"] == created["limits"]

    # The secret works at the API, and an admitted request is recorded as the key's last use.
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as api:
        me = await api.get("/v1/account", headers={"authorization": f"Bearer {secret}"})
        assert me.status_code == 200, me.text
        assert me.json()["key"]["id"] == key_id
    async with grpc.aio.insecure_channel(services.auth_target) as channel:
        admitted = await auth_pb2_grpc.AuthServiceStub(channel).Authorize(
            auth_pb2.AuthorizeRequest(
                request_id=new_request_id(), api_key=secret, model="openai/gpt-4o-mini"
            ),
            timeout=10,
        )
    assert admitted.decision == auth_pb2.DECISION_ALLOWED, admitted

    patched = await http.patch(
        f"/keys/{key_id}", json={"name": "ci-2", "limits": {"rpm": None, "allowed_models": ["anthropic/*"]}}
    )
    assert patched.status_code == 200, patched.text
    limits = patched.json()["limits"]
    assert patched.json()["name"] == "ci-2"
    assert limits["rpm"] is None, "null removes the limit"
    assert limits["tpm"] == 1000, "a field left out keeps its value"
    assert limits["allowed_models"] == ["anthropic/*"]
    assert limits["spend_cap_micros"] == 2_500_000
    capped = await http.patch(f"/keys/{key_id}", json={"limits": {"spend_cap_micros": 7, "expires_at": None}})
    assert capped.json()["limits"]["spend_cap"] == "0.000007"
    assert capped.json()["limits"]["expires_at"] is None
    assert capped.json()["name"] == "ci-2"

    revoked = await http.post(f"/keys/{key_id}/revoke")
    assert revoked.status_code == 200
    assert revoked.json()["status"] == "revoked"
    assert revoked.json()["revoked_at"] is not None
    assert (await http.post(f"/keys/{key_id}/revoke")).json()["revoked_at"] == revoked.json()["revoked_at"]
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as api:
        me = await api.get("/v1/account", headers={"authorization": f"Bearer {secret}"})
        assert me.status_code == 401
    err = error_of(await http.patch(f"/keys/{key_id}", json={"name": "again"}), 409)
    assert err["code"] == "conflict"
    assert (await http.get(f"/accounts/{account}/keys")).json()["data"][0]["status"] == "revoked"

    async def last_used() -> bool:
        return (await http.get(f"/keys/{key_id}")).json()["last_used_at"] is not None

    await eventually(last_used)


async def test_key_validation(http: httpx.AsyncClient) -> None:
    account = await new_account(http)
    path = f"/accounts/{account}/keys"
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "k", "limits": {"rpm": -1}}, "limits.rpm"),
        ({"name": "k", "limits": {"tpm": "many"}}, "limits.tpm"),
        ({"name": "k", "limits": {"expires_at": past}}, "expires_at"),
        ({"name": "k", "limits": {"expires_at": "next week"}}, "limits.expires_at"),
        ({"name": "k", "limits": {"spend_cap": "1.5", "spend_cap_micros": 1}}, "limits"),
        ({"name": "k", "limits": {"spend_cap": "-1"}}, "limits.spend_cap"),
        ({"name": "k", "limits": {"spend_cap": "0.0000001"}}, "limits.spend_cap"),
        ({"name": "k", "limits": {"allowed_models": ["openai/*", " "]}}, "limits.allowed_models"),
        ({"name": "k", "limits": {"burst": 3}}, "limits.burst"),
    ]
    for body, param in cases:
        err = error_of(await http.post(path, json=body), 400)
        assert err["param"] == param, (body, err)
    assert (await http.get(path)).json()["data"] == []

    key_id = (await http.post(path, json={"name": "k"})).json()["id"]
    err = error_of(await http.patch(f"/keys/{key_id}", json={}), 400)
    assert err["param"] == "name"
    err = error_of(await http.patch(f"/keys/{key_id}", json={"limits": {"expires_at": past}}), 400)
    assert err["param"] == "expires_at"
    unlimited = (await http.get(f"/keys/{key_id}")).json()["limits"]
    assert unlimited == {
        "rpm": None,
        "tpm": None,
        "allowed_models": [],
        "spend_cap_micros": None,
        "spend_cap": None,
        "expires_at": None,
    }


# -- usage --------------------------------------------------------------------------------------

DAY1 = datetime(2026, 11, 20, tzinfo=UTC)
DAY1_MS = int(DAY1.timestamp() * 1000)
HOUR_MS = 3_600_000


@pytest.fixture
async def logged(services: Backends, http: httpx.AsyncClient) -> tuple[str, list[ev.UsageEvent]]:
    """An account with six requests in the real request log: two days, two keys, two models,
    one failure, one with a formula-like end user."""
    account = await new_account(http, "usage")

    def event(i: int, **fields: Any) -> ev.UsageEvent:
        values: dict[str, Any] = {
            "request_id": new_request_id(),
            "account_id": account,
            "key_id": "key_a",
            "key_name": "alpha",
            "model": "openai/gpt-4o-mini",
            "provider": "openai",
            "upstream_model": "gpt-4o-mini",
            "protocol": "openai.chat",
            "status": ev.REQUEST_STATUS_SUCCEEDED,
            "http_status": 200,
            "input_tokens": 100 + i,
            "output_tokens": 10 + i,
            "cost_micros": 1_000 * (i + 1),
            "started_at_unix_ms": DAY1_MS + i * HOUR_MS,
            "finished_at_unix_ms": DAY1_MS + i * HOUR_MS + 500,
            "latency_ms": 500,
        }
        values.update(fields)
        return ev.UsageEvent(**values)

    day2 = DAY1_MS + 24 * HOUR_MS
    events = [
        event(0),
        event(1, key_id="key_b", key_name="beta"),
        event(2, model="anthropic/claude-sonnet-4.6", provider="anthropic"),
        event(
            3,
            status=ev.REQUEST_STATUS_FAILED,
            http_status=502,
            error_type="upstream_error",
            error_message='upstream said "no", twice',
        ),
        event(4, started_at_unix_ms=day2 + HOUR_MS, finished_at_unix_ms=day2 + HOUR_MS + 5),
        event(5, started_at_unix_ms=day2 + 2 * HOUR_MS, end_user='=HYPERLINK("http://x")', key_id="key_b"),
    ]
    for e in events:
        assert await services.usage.record(normalize(record_from_event(e)))
    return account, events


async def test_usage_totals_and_daily_rows(http: httpx.AsyncClient, logged: tuple[str, list[Any]]) -> None:
    account, events = logged
    body = (await http.get(f"/accounts/{account}/usage")).json()
    assert body["totals"]["requests"] == 6
    assert body["totals"]["errors"] == 1
    assert body["totals"]["cost_micros"] == sum(e.cost_micros for e in events)
    assert body["totals"]["cost"] == "0.021000"
    assert body["totals"]["input_tokens"] == sum(e.input_tokens for e in events)
    rows = {(d["day"], d["key_id"], d["model"]): d["requests"] for d in body["daily"]}
    assert rows == {
        ("2026-11-20", "key_a", "anthropic/claude-sonnet-4.6"): 1,
        ("2026-11-20", "key_a", "openai/gpt-4o-mini"): 2,
        ("2026-11-20", "key_b", "openai/gpt-4o-mini"): 1,
        ("2026-11-21", "key_a", "openai/gpt-4o-mini"): 1,
        ("2026-11-21", "key_b", "openai/gpt-4o-mini"): 1,
    }

    by_key = (await http.get(f"/accounts/{account}/usage", params={"key_id": "key_b"})).json()
    assert by_key["totals"]["requests"] == 2
    assert by_key["totals"]["cost_micros"] == 2_000 + 6_000
    by_model = (
        await http.get(f"/accounts/{account}/usage", params={"model": "anthropic/claude-sonnet-4.6"})
    ).json()
    assert by_model["totals"]["requests"] == 1
    assert by_model["totals"]["cost_micros"] == 3_000
    one_day = (
        await http.get(f"/accounts/{account}/usage", params={"from": "2026-11-21", "to": "2026-11-21"})
    ).json()
    assert one_day["totals"]["requests"] == 2
    assert {d["day"] for d in one_day["daily"]} == {"2026-11-21"}
    err = error_of(
        await http.get(f"/accounts/{account}/usage", params={"from": "2026-11-22", "to": "2026-11-21"}), 400
    )
    assert err["param"] == "from"
    err = error_of(await http.get(f"/accounts/{account}/usage", params={"from": "yesterday"}), 400)
    assert err["param"] == "from"


async def test_request_log_search(http: httpx.AsyncClient, logged: tuple[str, list[Any]]) -> None:
    account, events = logged
    path = f"/accounts/{account}/requests"

    async def ids(**params: Any) -> list[str]:
        resp = await http.get(path, params=params)
        assert resp.status_code == 200, resp.text
        return [r["request_id"] for r in resp.json()["data"]]

    newest_first = [e.request_id for e in reversed(events)]
    assert await ids() == newest_first
    assert await ids(request_id=events[2].request_id) == [events[2].request_id]
    assert await ids(key_id="key_b") == [events[5].request_id, events[1].request_id]
    assert await ids(model="anthropic/claude-sonnet-4.6") == [events[2].request_id]
    assert await ids(status="failed") == [events[3].request_id]
    start = datetime.fromtimestamp((DAY1_MS + HOUR_MS) / 1000, tz=UTC).isoformat()
    end = datetime.fromtimestamp((DAY1_MS + 3 * HOUR_MS) / 1000, tz=UTC).isoformat()
    assert await ids(**{"from": start, "to": end}) == [events[2].request_id, events[1].request_id]

    walked: list[str] = []
    token = ""
    while True:
        page = (await http.get(path, params={"limit": 4, "page_token": token})).json()
        walked += [r["request_id"] for r in page["data"]]
        token = page["next_page_token"]
        if not token:
            break
    assert walked == newest_first

    failed = (await http.get(path, params={"status": "failed"})).json()["data"][0]
    assert failed["status"] == "failed"
    assert failed["http_status"] == 502
    assert failed["error_type"] == "upstream_error"
    assert failed["cost"] == "0.004000"
    one = await http.get(f"/requests/{events[3].request_id}")
    assert one.json() == failed

    assert error_of(await http.get(path, params={"status": "lost"}), 400)["param"] == "status"
    err = error_of(await http.get(path, params={"from": end, "to": start}), 400)
    assert err["param"] == "from"
    err = error_of(await http.get(path, params={"page_token": "garbage"}), 400)
    assert err["param"] == "page_token"


async def test_csv_export_streams_every_page(
    http: httpx.AsyncClient, logged: tuple[str, list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    account, events = logged
    # Small pages, so the export walks several of them.
    monkeypatch.setattr(admin_routes, "EXPORT_PAGE", 2)
    resp = await http.get(f"/accounts/{account}/requests.csv")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/csv")
    assert resp.headers["content-disposition"] == f'attachment; filename="requests-{account}.csv"'
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert [r["request_id"] for r in rows] == [e.request_id for e in reversed(events)]
    by_id = {r["request_id"]: r for r in rows}
    failed = by_id[events[3].request_id]
    assert failed["status"] == "failed"
    assert failed["error_message"] == 'upstream said "no", twice'
    assert failed["cost_micros"] == "4000"
    assert failed["cost"] == "0.004000"
    assert failed["started_at"] == "2026-11-20T03:00:00.000Z"
    assert by_id[events[5].request_id]["end_user"] == '\'=HYPERLINK("http://x")'

    filtered = await http.get(f"/accounts/{account}/requests.csv", params={"key_id": "key_b"})
    assert [r["request_id"] for r in csv.DictReader(io.StringIO(filtered.text))] == [
        events[5].request_id,
        events[1].request_id,
    ]
    err = error_of(await http.get(f"/accounts/{account}/requests.csv", params={"status": "x"}), 400)
    assert err["param"] == "status"
