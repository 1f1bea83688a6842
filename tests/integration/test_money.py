"""The money path through the whole system: Idempotency-Key on inference requests (replayed,
never charged twice), top-ups replayed once, TPM settled to the real tokens, `GET /v1/account`
after a response, and each key limit (spend cap, expiry, model patterns). docs/money.md."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import redis.asyncio as aioredis

from crossmodel_common.balance_state import reservations_key
from crossmodel_devstack.harness import Harness, eventually

SLOW = " [sim:delay_ms=1500]"


def report(figure: str, value: Any) -> None:
    print(f"\nFIGURE {figure}: {value}")


async def admin(harness: Harness, method: str, path: str, *, expect: int | None = None, **kw: Any) -> Any:
    async with httpx.AsyncClient(
        base_url=harness.edge_url,
        headers={"authorization": f"Bearer {harness.stack.config.admin_token}"},
        timeout=30,
    ) as http:
        resp = await http.request(method, f"/admin/v1{path}", **kw)
    if expect is None:
        assert resp.status_code < 300, resp.text
    else:
        assert resp.status_code == expect, resp.text
    return resp


async def new_key(
    harness: Harness, *, credit_micros: int = 10_000_000, **limits: Any
) -> tuple[str, dict[str, Any]]:
    account = (await admin(harness, "POST", "/accounts", json={"name": "money"})).json()["id"]
    if credit_micros:
        await admin(
            harness,
            "POST",
            f"/accounts/{account}/credits",
            json={"amount_micros": credit_micros},
            headers={"idempotency-key": f"fund-{account}"},
        )
    key = (
        await admin(harness, "POST", f"/accounts/{account}/keys", json={"name": "k", "limits": limits})
    ).json()
    return account, key


def chat(model: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 16, **extra}


async def post(
    harness: Harness,
    secret: str,
    body: dict[str, Any],
    path: str = "/v1/chat/completions",
    **headers: str,
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=harness.edge_url, timeout=30) as http:
        return await http.post(path, json=body, headers={"authorization": f"Bearer {secret}", **headers})


async def charges(harness: Harness, account_id: str) -> dict[str, int]:
    rows = await harness.fetch(
        "billing",
        "SELECT request_id, amount_micros FROM ledger_entries WHERE account_id = $1 AND kind = 'charge'",
        account_id,
    )
    return {r["request_id"]: -r["amount_micros"] for r in rows}


async def _when(value: Any, cond: Any) -> Any:
    v = await value
    return v if cond(v) else None


async def replay_of(
    harness: Harness, secret: str, body: dict[str, Any], path: str, key: str
) -> httpx.Response:
    """The replay of a finished request: the first answer may still be on its way to auth (it is
    stored after the response), which the edge answers 409 `idempotency_key_in_use`."""

    async def attempt() -> httpx.Response | None:
        r = await post(
            harness, secret, body, path, **{"idempotency-key": key, "anthropic-version": "2023-06-01"}
        )
        if r.status_code == 409 and r.headers.get("x-should-retry") == "true":
            return None
        return r

    response: httpx.Response = await eventually(attempt, what="the stored result")
    return response


async def test_idempotency_key_replays_the_stored_result_and_charges_once(
    harness: Harness, model: str
) -> None:
    account, key = await new_key(harness)
    anthropic_model = next(m for m in await harness.models() if m.startswith("anthropic/"))
    cases = [
        ("/v1/chat/completions", chat(model, "idempotent chat")),
        ("/v1/responses", {"model": model, "input": "idempotent responses", "max_output_tokens": 16}),
        ("/v1/messages", chat(anthropic_model, "idempotent messages")),
    ]
    first_ids = set()
    for path, body in cases:
        idem = f"{path}-{account}"
        headers = {"idempotency-key": idem, "anthropic-version": "2023-06-01"}
        first = await post(harness, key["secret"], body, path, **headers)
        assert first.status_code == 200, first.text
        assert "idempotent-replayed" not in first.headers
        first_ids.add(first.headers["x-request-id"])

        replay = await replay_of(harness, key["secret"], body, path, idem)
        assert replay.status_code == 200
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.content == first.content
        assert replay.headers["content-type"] == first.headers["content-type"]

        other = await post(harness, key["secret"], {**body, "max_tokens": 17}, path, **headers)
        assert other.status_code == 409, other.text
        assert other.headers["x-should-retry"] == "false"
        if path == "/v1/messages":
            assert other.json()["type"] == "error"
            assert other.json()["error"]["type"] == "invalid_request_error"
        else:
            assert other.json()["error"]["code"] == "idempotency_key_reused"
            assert other.json()["error"]["param"] == "Idempotency-Key"

    await harness.wait_consumed()
    # One charge per request that ran; the replays and conflicts ran nothing.
    assert set(await charges(harness, account)) == first_ids


async def test_idempotency_key_in_flight_streamed_and_failed(harness: Harness, model: str) -> None:
    account, key = await new_key(harness)
    body = chat(model, "slow" + SLOW)
    headers = {"idempotency-key": f"slow-{account}"}
    running = asyncio.create_task(post(harness, key["secret"], body, **headers))
    await eventually(lambda: _admitted(harness, account, running), what="the first request admitted")
    waiting = await post(harness, key["secret"], body, **headers)
    assert waiting.status_code == 409
    assert waiting.json()["error"]["code"] == "idempotency_key_in_use"
    assert waiting.headers["retry-after"] == "1"
    assert (await running).status_code == 200

    # A stream runs once; its transcript is not stored, so the key cannot be replayed.
    stream_body = chat(model, "a stream", stream=True)
    stream_key = {"idempotency-key": f"stream-{account}"}
    streamed = await post(harness, key["secret"], stream_body, **stream_key)
    assert streamed.status_code == 200
    assert streamed.headers["content-type"].startswith("text/event-stream")
    again = await replay_of(harness, key["secret"], stream_body, "/v1/chat/completions", f"stream-{account}")
    assert again.status_code == 409
    assert again.headers["x-should-retry"] == "false"
    assert "not stored" in again.json()["error"]["message"]

    # A failed request releases its key: the retry runs (and fails) again.
    failing = chat(model, "fail [sim:status=500]")
    fail_key = {"idempotency-key": f"fail-{account}"}
    assert (await post(harness, key["secret"], failing, **fail_key)).status_code == 502
    retried = await replay_of(harness, key["secret"], failing, "/v1/chat/completions", f"fail-{account}")
    assert retried.status_code == 502
    assert "idempotent-replayed" not in retried.headers


async def _admitted(harness: Harness, account: str, running: asyncio.Task[httpx.Response]) -> bool:
    """The first request holds a reservation: it was admitted and is still running."""
    assert not running.done()
    client = aioredis.Redis.from_url(harness.infra.redis.url)
    try:
        return bool(await client.hlen(reservations_key(account)))
    finally:
        await client.aclose()


async def test_a_top_up_replayed_with_its_idempotency_key_credits_once(harness: Harness) -> None:
    account = (await admin(harness, "POST", "/accounts", json={"name": "top-up"})).json()["id"]
    path = f"/accounts/{account}/credits"
    headers = {"idempotency-key": f"invoice-{account}"}
    first = await admin(harness, "POST", path, expect=201, json={"amount": "2.50"}, headers=headers)
    assert first.json()["replayed"] is False
    replays = await asyncio.gather(
        *(
            admin(harness, "POST", path, expect=200, json={"amount": "2.50"}, headers=headers)
            for _ in range(5)
        )
    )
    assert all(r.json()["replayed"] is True for r in replays)
    assert all(r.headers["idempotent-replayed"] == "true" for r in replays)
    await admin(harness, "POST", path, expect=409, json={"amount": "3.00"}, headers=headers)
    assert await harness.balance(account) == 2_500_000
    rows = await harness.fetch(
        "billing",
        "SELECT count(*) AS n FROM ledger_entries WHERE account_id = $1 AND kind = 'top_up'",
        account,
    )
    assert rows[0]["n"] == 1


async def test_tpm_counts_the_real_tokens_once_settled(harness: Harness, model: str) -> None:
    tpm = 2_000
    _, key = await new_key(harness, tpm=tpm)
    body = chat(model, "tpm settles", max_tokens=1_000)
    first = await post(harness, key["secret"], body)
    assert first.status_code == 200
    usage = first.json()["usage"]
    real = usage["prompt_tokens"] + usage["completion_tokens"]
    estimate = tpm - int(first.headers["x-ratelimit-remaining-tokens"])
    # The estimate is an upper bound: two of them do not fit in the limit, the real count does.
    assert estimate > real
    assert 2 * estimate > tpm

    async def second() -> httpx.Response | None:
        r = await post(harness, key["secret"], body)
        if r.status_code == 429:
            assert r.json()["error"]["type"] == "rate_limit_error"
            return None
        return r

    admitted = await eventually(second, what="the second request admitted once the first settled")
    assert admitted.status_code == 200
    assert int(admitted.headers["x-ratelimit-remaining-tokens"]) == tpm - real - estimate


async def test_account_reflects_settled_usage_and_balance_after_a_response(
    harness: Harness, model: str
) -> None:
    account, key = await new_key(harness)
    auth = {"authorization": f"Bearer {key['secret']}"}
    async with httpx.AsyncClient(base_url=harness.edge_url, timeout=10) as http:
        before = (await http.get("/v1/account", headers=auth)).json()
        r = await http.post("/v1/chat/completions", json=chat(model, "account view"), headers=auth)
        answered = time.monotonic()
        assert r.status_code == 200

        async def settled() -> dict[str, Any] | None:
            view: dict[str, Any] = (await http.get("/v1/account", headers=auth)).json()
            done = (
                view["usage"]["requests"] == before["usage"]["requests"] + 1
                and view["balance"]["total_charged_micros"] > before["balance"]["total_charged_micros"]
            )
            return view if done else None

        view = await eventually(
            settled, timeout=10, interval=0.02, what="GET /v1/account showing the request"
        )
        latency_ms = (time.monotonic() - answered) * 1000
    charged = await charges(harness, account)
    assert view["balance"]["total_charged_micros"] == sum(charged.values())
    assert view["balance"]["balance_micros"] == 10_000_000 - sum(charged.values())
    assert view["usage"]["cost_micros"] == sum(charged.values())
    assert view["usage"]["input_tokens"] == r.json()["usage"]["prompt_tokens"]
    report("GET /v1/account reflecting a response (ms)", round(latency_ms, 1))


async def test_a_key_spend_cap_is_enforced_per_key(harness: Harness, model: str) -> None:
    account, capped = await new_key(harness, spend_cap_micros=60)
    body = chat(model, "capped" + SLOW)
    responses = await asyncio.gather(*(post(harness, capped["secret"], body) for _ in range(10)))
    admitted = {r.headers["x-request-id"] for r in responses if r.status_code == 200}
    refused = [r for r in responses if r.status_code != 200]
    assert admitted
    assert refused
    for r in refused:
        assert r.status_code == 402
        assert r.json()["error"]["code"] == "insufficient_quota"
        assert "spend cap" in r.json()["error"]["message"]
        assert "retry-after" not in r.headers
    charged = await eventually(
        lambda: _when(charges(harness, account), lambda c: len(c) == len(admitted)),
        what="the capped key charged",
    )
    assert set(charged) == admitted
    assert sum(charged.values()) <= 60
    # The cap is the key's: another key of the same account still works.
    other = (await admin(harness, "POST", f"/accounts/{account}/keys", json={"name": "other"})).json()
    assert (await post(harness, other["secret"], chat(model, "uncapped"))).status_code == 200


async def test_key_expiry_is_enforced(harness: Harness, model: str) -> None:
    expires = datetime.now(UTC) + timedelta(seconds=2)
    _, key = await new_key(harness, expires_at=expires.isoformat())
    assert (await post(harness, key["secret"], chat(model, "before expiry"))).status_code == 200

    async def expired() -> httpx.Response | None:
        r = await post(harness, key["secret"], chat(model, "after expiry"))
        return r if r.status_code != 200 else None

    refused = await eventually(expired, timeout=15, interval=0.1, what="the key refused after its expiry")
    assert datetime.now(UTC) >= expires
    assert refused.status_code == 401
    assert "expired" in refused.json()["error"]["message"]


async def test_allowed_model_patterns_are_enforced(harness: Harness, model: str) -> None:
    _, key = await new_key(harness, allowed_models=["openai/gpt-4o*"])
    models = await harness.models()
    assert (await post(harness, key["secret"], chat("openai/gpt-4o-mini", "allowed"))).status_code == 200
    outside = next(m for m in models if not m.startswith("openai/gpt-4o"))
    refused = await post(harness, key["secret"], chat(outside, "not allowed"))
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "model_not_allowed"
    anthropic_model = next(m for m in models if m.startswith("anthropic/"))
    messages = await post(
        harness,
        key["secret"],
        chat(anthropic_model, "not allowed"),
        "/v1/messages",
        **{"anthropic-version": "2023-06-01"},
    )
    assert messages.status_code == 403
    assert messages.json()["error"]["type"] == "permission_error"
