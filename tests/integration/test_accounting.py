"""Usage lands in billing and usage exactly once per request: the ledger and the request log
hold one row per request id, the balance falls by exactly the priced cost of the usage the
simulator reported, and redelivering every event changes nothing."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx
import openai

from crossmodel_common.context import REQUEST_ID_ATTRIBUTE
from crossmodel_common.money import MICROS, Prices, cost_micros
from crossmodel_devstack.harness import AccountKey, Harness, eventually

BURST = 24
CONCURRENCY = 8


def _micros(decimal_string: str) -> int:
    return int(Decimal(decimal_string) * MICROS)


async def catalog_prices(client: openai.AsyncOpenAI, model: str) -> Prices:
    """The prices the public API shows for `model` (GET /v1/models)."""
    listed = {m.id: m async for m in client.models.list()}
    pricing: dict[str, str] = (listed[model].model_extra or {})["pricing"]
    return Prices(
        input_per_mtok_micros=_micros(pricing["input_per_mtok"]),
        output_per_mtok_micros=_micros(pricing["output_per_mtok"]),
        cached_input_per_mtok_micros=_micros(pricing["cached_input_per_mtok"]),
        cache_write_per_mtok_micros=_micros(pricing["cache_write_per_mtok"]),
    )


async def one_request(client: openai.AsyncOpenAI, model: str, i: int) -> tuple[str, int, int, int]:
    """Request i of a burst: (request id, input tokens, output tokens, cached input tokens) as
    reported to the client. Prompts differ in length, every third streams, every fourth asks the
    simulator to report cached prompt tokens so cached prices are exercised."""
    words = " ".join(f"word{n}" for n in range(i % 7 + 1))
    marker = " [sim:cached=4]" if i % 4 == 0 else ""
    messages: Any = [{"role": "user", "content": f"burst request {i}: {words}{marker}"}]
    if i % 3 == 0:
        raw = await client.chat.completions.with_raw_response.create(
            model=model, messages=messages, stream=True, stream_options={"include_usage": True}
        )
        usage = None
        async for chunk in raw.parse():
            usage = chunk.usage or usage
    else:
        raw = await client.chat.completions.with_raw_response.create(model=model, messages=messages)
        usage = raw.parse().usage
    assert usage is not None
    cached = (usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0) or 0
    # What the simulator's documented rule says it reported: markers count as prompt words, the
    # reply repeats the prompt without them, cached tokens are capped at the prompt's.
    content = messages[0]["content"]
    prompt_tokens = 3 + 4 + len(content.split())
    reply = "You said: " + content.replace(marker, "")
    assert (usage.prompt_tokens, usage.completion_tokens, cached) == (
        prompt_tokens,
        len(reply.split()),
        min(4, prompt_tokens) if marker else 0,
    )
    return raw.headers["x-request-id"], usage.prompt_tokens, usage.completion_tokens, cached


async def burst(client: openai.AsyncOpenAI, model: str, n: int) -> list[tuple[str, int, int, int]]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def limited(i: int) -> tuple[str, int, int, int]:
        async with gate:
            return await one_request(client, model, i)

    return await asyncio.gather(*(limited(i) for i in range(n)))


async def ledger_charges(harness: Harness, account_id: str) -> list[Any]:
    return await harness.fetch(
        "billing",
        "SELECT request_id, amount_micros FROM ledger_entries WHERE account_id = $1 AND kind = 'charge'",
        account_id,
    )


async def request_log(harness: Harness, account_id: str) -> list[Any]:
    return await harness.fetch(
        "usage",
        "SELECT request_id, input_tokens, output_tokens, cost_micros FROM request_log WHERE account_id = $1",
        account_id,
    )


async def test_a_burst_is_charged_and_logged_exactly_once_per_request(
    harness: Harness, account: AccountKey, client: openai.AsyncOpenAI, model: str
) -> None:
    prices = await catalog_prices(client, model)
    start = await harness.balance(account.account_id)
    results = await burst(client, model, BURST)
    ids = [r[0] for r in results]
    assert len(set(ids)) == BURST
    costs = {
        rid: cost_micros(prices, input_tokens=i, output_tokens=o, cached_input_tokens=c)
        for rid, i, o, c in results
    }
    assert any(c for _, _, _, c in results)

    charges = await eventually(
        lambda: _when(ledger_charges(harness, account.account_id), lambda rows: len(rows) >= BURST),
        what="a ledger charge for every request",
    )
    logged = await eventually(
        lambda: _when(request_log(harness, account.account_id), lambda rows: len(rows) >= BURST),
        what="a request-log row for every request",
    )
    assert sorted(r["request_id"] for r in charges) == sorted(ids)
    assert sorted(r["request_id"] for r in logged) == sorted(ids)
    assert {r["request_id"]: -r["amount_micros"] for r in charges} == costs
    assert {r["request_id"]: (r["input_tokens"], r["output_tokens"]) for r in logged} == {
        rid: (i, o) for rid, i, o, _ in results
    }
    await eventually(
        lambda: _when(harness.balance(account.account_id), lambda b: b == start - sum(costs.values())),
        what=f"balance {start} - {sum(costs.values())}",
    )


async def _when(value: Any, cond: Any) -> Any:
    v = await value
    return v if cond(v) else None


async def test_account_endpoint_reflects_balance_and_totals(
    harness: Harness, account: AccountKey, client: openai.AsyncOpenAI, model: str
) -> None:
    prices = await catalog_prices(client, model)
    results = await burst(client, model, 5)
    cost = sum(
        cost_micros(prices, input_tokens=i, output_tokens=o, cached_input_tokens=c) for _, i, o, c in results
    )

    async def account_view() -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=harness.edge_url, timeout=10) as http:
            resp = await http.get("/v1/account", headers={"authorization": f"Bearer {account.api_key}"})
        assert resp.status_code == 200, resp.text
        assert resp.headers["x-request-id"]
        body: dict[str, Any] = resp.json()
        return body

    view = await eventually(
        lambda: _when(
            account_view(),
            lambda v: v["usage"]["requests"] == 5 and v["balance"]["total_charged_micros"] == cost,
        ),
        what="GET /v1/account showing the 5 requests",
    )
    assert view["account_id"] == account.account_id
    assert view["balance"]["balance_micros"] == await harness.balance(account.account_id)
    assert view["usage"]["input_tokens"] == sum(i for _, i, _, _ in results)
    assert view["usage"]["output_tokens"] == sum(o for _, _, o, _ in results)
    assert view["usage"]["cost_micros"] == cost
    assert view["key"]["id"] == account.key_id


async def test_redelivering_every_event_changes_nothing(
    harness: Harness, account: AccountKey, client: openai.AsyncOpenAI, model: str
) -> None:
    results = await burst(client, model, 6)
    await eventually(
        lambda: _when(ledger_charges(harness, account.account_id), lambda rows: len(rows) == len(results)),
        what="the burst charged",
    )
    await eventually(
        lambda: _when(request_log(harness, account.account_id), lambda rows: len(rows) == len(results)),
        what="the burst logged",
    )
    ids = {r[0] for r in results}
    await harness.wait_consumed(expect=dict.fromkeys(ids, 1))
    before = await snapshot(harness)

    records = await harness.read_usage_topic(expect=dict.fromkeys(ids, 1))
    assert all(dict(r.headers).get("x-request-id") for r in records)
    await harness.produce(records)
    await harness.wait_consumed(expect=dict.fromkeys(ids, 2))

    assert await snapshot(harness) == before
    # Both consumers really saw the duplicates: a second CONSUMER span per request and service.

    def processed_twice() -> bool:
        seen: dict[tuple[str, str], int] = {}
        for s in harness.receiver.spans(lambda s: s.kind == "CONSUMER"):
            key = (s.service, str(s.attributes.get(REQUEST_ID_ATTRIBUTE)))
            seen[key] = seen.get(key, 0) + 1
        return all(
            seen.get((f"crossmodel-{svc}", rid), 0) >= 2 for svc in ("billing", "usage") for rid in ids
        )

    await eventually(processed_twice, what="the redelivered events processed by billing and usage")


async def snapshot(harness: Harness) -> dict[str, Any]:
    """Row counts and balances: everything a duplicate event could change."""
    ledger = await harness.fetch("billing", "SELECT count(*) AS n FROM ledger_entries")
    balances = await harness.fetch(
        "billing", "SELECT account_id, balance_micros FROM balances ORDER BY account_id"
    )
    log = await harness.fetch("usage", "SELECT count(*) AS n FROM request_log")
    daily = await harness.fetch(
        "usage",
        "SELECT account_id, sum(requests) AS r, sum(cost_micros) AS c FROM usage_daily"
        " GROUP BY account_id ORDER BY account_id",
    )
    return {
        "ledger_rows": ledger[0]["n"],
        "balances": [tuple(r) for r in balances],
        "request_log_rows": log[0]["n"],
        "daily": [tuple(r) for r in daily],
    }
