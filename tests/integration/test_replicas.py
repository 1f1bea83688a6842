"""Two edges, each calling its own auth replica, on one PostgreSQL, Redis and broker: rate
limits, the wallet, Idempotency-Key and revocation are exact across every replica, and
redelivering every usage event changes nothing. docs/money.md, "Tested across replicas"."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import httpx

from crossmodel.events.v1 import usage_event_pb2
from crossmodel_devstack.harness import Harness, eventually

N = 50
# Every admitted request is still running when the last of the burst is admitted, so the
# reservations of all of them are outstanding at once.
SLOW = " [sim:delay_ms=1500]"


def report(figure: str, value: Any) -> None:
    print(f"\nFIGURE {figure}: {value}")


async def admin(harness: Harness, method: str, path: str, **kw: Any) -> Any:
    async with httpx.AsyncClient(
        base_url=harness.edge_url,
        headers={"authorization": f"Bearer {harness.stack.config.admin_token}"},
        timeout=30,
    ) as http:
        resp = await http.request(method, f"/admin/v1{path}", **kw)
    assert resp.status_code < 300, resp.text
    return resp.json()


async def new_key(harness: Harness, *, credit_micros: int, **limits: Any) -> tuple[str, dict[str, Any]]:
    account = (await admin(harness, "POST", "/accounts", json={"name": "replicas"}))["id"]
    if credit_micros:
        await admin(
            harness,
            "POST",
            f"/accounts/{account}/credits",
            json={"amount_micros": credit_micros},
            headers={"idempotency-key": f"fund-{account}"},
        )
    key = await admin(harness, "POST", f"/accounts/{account}/keys", json={"name": "k", "limits": limits})
    return account, key


def chat(model: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 16, **extra}


async def post(
    http: httpx.AsyncClient,
    url: str,
    secret: str,
    body: dict[str, Any],
    path: str = "/v1/chat/completions",
    **headers: str,
) -> httpx.Response:
    return await http.post(url + path, json=body, headers={"authorization": f"Bearer {secret}", **headers})


async def charges(harness: Harness, account_id: str) -> dict[str, int]:
    rows = await harness.fetch(
        "billing",
        "SELECT request_id, amount_micros FROM ledger_entries WHERE account_id = $1 AND kind = 'charge'",
        account_id,
    )
    return {r["request_id"]: -r["amount_micros"] for r in rows}


async def logged(harness: Harness, account_id: str) -> set[str]:
    rows = await harness.fetch(
        "usage", "SELECT request_id FROM request_log WHERE account_id = $1", account_id
    )
    return {r["request_id"] for r in rows}


async def test_rpm_5_admits_exactly_5_of_50_across_two_edges(harness: Harness, model: str) -> None:
    edges = await harness.edge_urls(2)
    _, key = await new_key(harness, credit_micros=10_000_000, rpm=5)
    async with httpx.AsyncClient(timeout=30) as http:
        started = time.monotonic()
        responses = await asyncio.gather(
            *(post(http, edges[i % 2], key["secret"], chat(model, f"rpm {i}")) for i in range(N))
        )
        elapsed_ms = (time.monotonic() - started) * 1000
    statuses = [r.status_code for r in responses]
    admitted = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert (len(admitted), len(refused)) == (5, 45), statuses
    report("rpm=5, 50 concurrent over 2 edges", f"{len(admitted)} admitted, {len(refused)} refused with 429")
    assert {r.url.port for r in refused} == {httpx.URL(e).port for e in edges}
    for r in refused:
        error = r.json()["error"]
        assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
        wait_ms = int(r.headers["retry-after-ms"])
        assert int(r.headers["retry-after"]) == max(1, math.ceil(wait_ms / 1000))
        # The window frees when the oldest admitted request leaves it: 60 s after it was
        # admitted, which was during the burst.
        assert 60_000 - elapsed_ms - 100 <= wait_ms <= 60_000
        assert r.headers["x-ratelimit-limit-requests"] == "5"
        assert r.headers["x-ratelimit-remaining-requests"] == "0"
        assert r.headers["x-request-id"]


async def test_a_tiny_balance_is_never_overspent_across_replicas(harness: Harness, model: str) -> None:
    edges = await harness.edge_urls(2)
    balance = 400
    account, key = await new_key(harness, credit_micros=balance)
    async with httpx.AsyncClient(timeout=30) as http:
        responses = await asyncio.gather(
            *(post(http, edges[i % 2], key["secret"], chat(model, "tiny balance" + SLOW)) for i in range(N))
        )
    admitted = {r.headers["x-request-id"] for r in responses if r.status_code == 200}
    refused = [r for r in responses if r.status_code != 200]
    assert admitted
    assert refused
    for r in refused:
        assert r.status_code == 402, r.text
        assert r.json()["error"]["code"] == "insufficient_quota"
        assert "retry-after" not in r.headers
        assert "retry-after-ms" not in r.headers

    charged = await eventually(
        lambda: _when(charges(harness, account), lambda c: len(c) >= len(admitted)),
        what="a charge for every admitted request",
    )
    # Every admitted request charged exactly once, nothing else charged, never over the balance.
    assert set(charged) == admitted
    assert sum(charged.values()) <= balance
    assert await harness.balance(account) == balance - sum(charged.values())
    # What admission held at once never exceeded the balance either.
    events = [
        usage_event_pb2.UsageEvent.FromString(r.value)
        for r in await harness.read_usage_topic(expect=dict.fromkeys(admitted, 1))
    ]
    reserved = {e.request_id: e.reserved_micros for e in events if e.request_id in admitted}
    assert reserved.keys() == admitted
    assert all(m > 0 for m in reserved.values())
    assert sum(reserved.values()) <= balance
    report(
        "tiny balance, 50 concurrent over 2 edges",
        f"balance {balance} micros, {len(admitted)} admitted (reserved {sum(reserved.values())}), "
        f"{len(refused)} refused 402, charged {sum(charged.values())}, overspend 0",
    )


async def test_an_exhausted_balance_is_402_in_each_protocol_on_every_edge(
    harness: Harness, model: str
) -> None:
    edges = await harness.edge_urls(2)
    _, key = await new_key(harness, credit_micros=0)
    anthropic_model = next(m for m in await harness.models() if m.startswith("anthropic/"))
    async with httpx.AsyncClient(timeout=30) as http:
        for edge in edges:
            chat_r = await post(http, edge, key["secret"], chat(model, "broke"))
            assert chat_r.status_code == 402, chat_r.text
            assert chat_r.json()["error"]["type"] == "insufficient_quota"
            assert chat_r.json()["error"]["code"] == "insufficient_quota"
            responses_r = await post(
                http, edge, key["secret"], {"model": model, "input": "broke"}, path="/v1/responses"
            )
            assert responses_r.status_code == 402, responses_r.text
            assert responses_r.json()["error"]["code"] == "insufficient_quota"
            messages_r = await post(
                http,
                edge,
                key["secret"],
                chat(anthropic_model, "broke"),
                path="/v1/messages",
                **{"anthropic-version": "2023-06-01"},
            )
            assert messages_r.status_code == 402, messages_r.text
            assert messages_r.json() == {
                "type": "error",
                "error": {"type": "billing_error", "message": messages_r.json()["error"]["message"]},
            }
            for r in (chat_r, responses_r, messages_r):
                assert "retry-after" not in r.headers
                assert "retry-after-ms" not in r.headers


async def test_a_revoked_key_is_refused_on_every_edge(harness: Harness, model: str) -> None:
    edges = await harness.edge_urls(2)
    _, key = await new_key(harness, credit_micros=10_000_000)
    async with httpx.AsyncClient(timeout=30) as http:
        for edge in edges:
            assert (await post(http, edge, key["secret"], chat(model, "before"))).status_code == 200
        await admin(harness, "POST", f"/keys/{key['id']}/revoke")
        revoked_at = time.monotonic()

        async def refused(edge: str) -> float:
            async def check() -> float | None:
                r = await post(http, edge, key["secret"], chat(model, "after"))
                if r.status_code == 200:
                    return None
                assert r.status_code == 401, r.text
                assert r.json()["error"]["code"] == "invalid_api_key"
                return time.monotonic() - revoked_at

            latency: float = await eventually(
                check, timeout=10, interval=0.01, what=f"{edge} refusing the key"
            )
            return latency

        latencies = await asyncio.gather(*(refused(e) for e in edges))
    report("revocation -> 401 on each edge (ms)", [round(s * 1000, 1) for s in latencies])


async def test_one_idempotency_key_runs_once_across_replicas(harness: Harness, model: str) -> None:
    edges = await harness.edge_urls(2)
    account, key = await new_key(harness, credit_micros=10_000_000)
    body = chat(model, "idempotent across replicas" + SLOW)
    headers = {"idempotency-key": f"order-{account}"}
    async with httpx.AsyncClient(timeout=30) as http:
        first = await asyncio.gather(
            *(post(http, edges[i % 2], key["secret"], body, **headers) for i in range(10))
        )
        ran = [r for r in first if r.status_code == 200]
        waiting = [r for r in first if r.status_code == 409]
        assert (len(ran), len(waiting)) == (1, 9), [r.status_code for r in first]
        assert "idempotent-replayed" not in ran[0].headers
        for r in waiting:
            assert r.json()["error"]["code"] == "idempotency_key_in_use"
            assert r.headers["x-should-retry"] == "true"
            assert r.headers["retry-after"] == "1"

        async def replayed(edge: str) -> httpx.Response | None:
            r = await post(http, edge, key["secret"], body, **headers)
            return r if r.status_code == 200 else None

        for edge in edges:
            replay = await eventually(lambda e=edge: replayed(e), what=f"a replay from {edge}")  # type: ignore[misc]
            assert replay.headers["idempotent-replayed"] == "true"
            assert replay.content == ran[0].content
            assert replay.headers["x-request-id"] != ran[0].headers["x-request-id"]
    rid = ran[0].headers["x-request-id"]
    await eventually(
        lambda: _when(logged(harness, account), lambda ids: rid in ids), what="the request logged"
    )
    await harness.wait_consumed(expect={rid: 1})
    assert set(await charges(harness, account)) == {rid}
    assert await logged(harness, account) == {rid}


async def test_redelivering_every_event_keeps_balances_and_request_logs(harness: Harness, model: str) -> None:
    edges = await harness.edge_urls(2)
    account, key = await new_key(harness, credit_micros=10_000_000)
    async with httpx.AsyncClient(timeout=30) as http:
        responses = await asyncio.gather(
            *(
                post(http, edges[i % 2], key["secret"], chat(model, f"redeliver {i}", stream=i % 3 == 0))
                for i in range(12)
            )
        )
    ids = {r.headers["x-request-id"] for r in responses}
    assert {r.status_code for r in responses} == {200}
    await harness.wait_consumed(expect=dict.fromkeys(ids, 1))
    before = await _state(harness, account, key["secret"])
    assert set(before["charges"]) == ids

    records = await harness.read_usage_topic(expect=dict.fromkeys(ids, 1))
    await harness.produce(records)
    await harness.wait_consumed(expect=dict.fromkeys(ids, 2))
    assert await _state(harness, account, key["secret"]) == before


async def _state(harness: Harness, account: str, secret: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=harness.edge_url, timeout=10) as http:
        view = (await http.get("/v1/account", headers={"authorization": f"Bearer {secret}"})).json()
    balances = await harness.fetch("billing", "SELECT account_id, balance_micros FROM balances ORDER BY 1")
    log_rows = await harness.fetch("usage", "SELECT count(*) AS n FROM request_log")
    return {
        "charges": await charges(harness, account),
        "logged": await logged(harness, account),
        "balances": [tuple(r) for r in balances],
        "request_log_rows": log_rows[0]["n"],
        "account_view": {"balance": view["balance"], "usage": view["usage"]},
    }


async def _when(value: Any, cond: Any) -> Any:
    v = await value
    return v if cond(v) else None
