"""The edge over real HTTP against fake auth/router servicers and a real broker."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import grpc
import httpx
import orjson
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from crossmodel.auth.v1 import auth_pb2
from crossmodel.events.v1 import usage_event_pb2 as ev
from crossmodel_common.money import Prices, worst_case_micros
from crossmodel_edge.middleware import EdgeMiddleware
from crossmodel_edge.routes import inference
from crossmodel_protocols.sse import SSEDecoder

from .conftest import (
    BROKE_KEY,
    COMPLETION,
    GOOD_KEY,
    IN_TOKENS,
    MINI,
    OUT_TOKENS,
    RATE_LIMITED_KEY,
    REVOKED_KEY,
    SCOPED_KEY,
    SONNET,
    STREAM_CHUNKS,
    TPM_KEY,
    UNKNOWN_KEY,
    Stack,
    eventually,
)


def chat(content: str = "hi", model: str = MINI, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def post(stack: Stack, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.edge.url, timeout=30) as http:
        if isinstance(body, bytes):
            return await http.post("/v1/chat/completions", content=body, headers=headers or bearer(GOOD_KEY))
        return await http.post("/v1/chat/completions", json=body, headers=headers or bearer(GOOD_KEY))


def openai_error(resp: httpx.Response) -> dict[str, Any]:
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    assert resp.headers["content-type"].startswith("application/json")
    return dict(body["error"])


def request_id(resp: httpx.Response) -> str:
    rid = resp.headers["x-request-id"]
    assert rid.startswith("req_")
    return rid


async def one_event(stack: Stack, rid: str) -> tuple[ev.UsageEvent, dict[str, bytes], bytes]:
    await eventually(lambda: len(stack.events.for_request(rid)) >= 1)
    found = stack.events.for_request(rid)
    assert len(found) == 1
    return found[0]


# -- success ----------------------------------------------------------------------------------


async def test_completion_returns_the_router_json_untouched_with_headers(stack: Stack) -> None:
    raw = orjson.dumps(chat(max_tokens=100, user="user-77"))
    resp = await post(stack, raw, {**bearer(GOOD_KEY), "content-type": "application/json"})
    assert resp.status_code == 200
    assert resp.content == COMPLETION
    assert resp.headers["content-type"] == "application/json"
    assert resp.headers["x-upstream-request-id"] == "up_1"
    assert resp.headers["content-length"] == str(len(COMPLETION))
    assert resp.headers["x-ratelimit-limit-requests"] == "60"
    assert resp.headers["x-ratelimit-remaining-requests"] == "59"
    assert resp.headers["x-ratelimit-reset-requests"] == "1s"
    assert "x-ratelimit-limit-tokens" not in resp.headers
    rid = request_id(resp)

    auths = [(r, seen) for r, seen in stack.backends.auth.authorize if r.request_id == rid]
    assert len(auths) == 1
    areq, seen_rid = auths[0]
    assert seen_rid == rid, "x-request-id travels as gRPC metadata"
    assert areq.api_key == GOOD_KEY
    assert areq.model == MINI
    assert areq.max_output_tokens == 100
    assert areq.estimated_input_tokens == len(raw)
    prices = Prices(150_000, 600_000, 75_000)
    assert areq.reserve_micros == worst_case_micros(prices, input_tokens=len(raw), max_output_tokens=100)

    routes = [(r, seen) for r, seen in stack.backends.router.routes if r.request_id == rid]
    assert len(routes) == 1
    rreq, seen_rid = routes[0]
    assert seen_rid == rid
    assert rreq.body == raw, "the body reaches the router byte for byte"
    assert rreq.account_id == "acct_1"
    assert rreq.key_id == "key_good"
    assert rreq.coalesce_frames

    event, headers, key = await one_event(stack, rid)
    assert key == b"acct_1"
    assert headers["x-request-id"] == rid.encode()
    assert headers["traceparent"].startswith(b"00-")
    assert event.account_id == "acct_1"
    assert event.key_id == "key_good"
    assert event.key_name == "default"
    assert event.model == MINI
    assert event.provider == "openai"
    assert event.deployment == "openai-primary"
    assert event.upstream_model == "gpt-4o-mini"
    assert event.protocol == "openai.chat"
    assert event.stream is False
    assert event.status == ev.REQUEST_STATUS_SUCCEEDED
    assert event.http_status == 200
    assert (event.input_tokens, event.output_tokens) == (IN_TOKENS, OUT_TOKENS)
    assert event.input_price_per_mtok_micros == 150_000
    assert event.output_price_per_mtok_micros == 600_000
    assert event.cost_micros > 0
    assert event.reserved_micros == areq.reserve_micros
    assert event.reserved_tokens == 0
    assert event.end_user == "user-77"
    assert event.finish_reason == "stop"
    assert event.upstream_latency_ms == 42
    assert event.started_at_unix_ms <= event.finished_at_unix_ms
    assert event.latency_ms >= 0
    assert not event.error_type
    assert not event.usage_estimated


@pytest.mark.parametrize("stream", [False, True])
async def test_separate_head_chunk_and_usage_frames_give_the_same_answer(stack: Stack, stream: bool) -> None:
    """A router that does not coalesce frames (sends head, chunks and usage apart) is read the
    same way."""
    answers = []
    for text in ("hello", "separate-frames"):
        resp = await post(stack, orjson.dumps(chat(text, stream=stream)), bearer(GOOD_KEY))
        assert resp.status_code == 200
        event, _, _ = await one_event(stack, request_id(resp))
        assert event.status == ev.REQUEST_STATUS_SUCCEEDED
        answers.append(
            (
                resp.content,
                resp.headers["content-type"],
                resp.headers["x-upstream-request-id"],
                event.input_tokens,
                event.output_tokens,
                event.cost_micros,
                event.deployment,
            )
        )
    assert answers[0] == answers[1]
    assert answers[0][0] == (b"".join(STREAM_CHUNKS) if stream else COMPLETION)


async def test_a_complete_answer_is_sent_without_waiting_for_the_end_of_the_call(
    stack: Stack, spans: InMemorySpanExporter
) -> None:
    """A non-streamed answer that came with its usage in one frame is the whole answer: the
    client gets it before the router's call has ended, and the call still ends normally (not
    cancelled, its CLIENT span OK) and is billed once."""
    router = stack.backends.router
    router.release.clear()
    resp = await post(stack, orjson.dumps(chat("hold-after-answer")), bearer(GOOD_KEY))
    rid = request_id(resp)
    assert resp.status_code == 200
    assert resp.content == COMPLETION
    assert rid not in router.finished, "the router's call was still open when the client had the answer"
    router.release.set()
    await eventually(lambda: rid in router.finished)
    event, _, _ = await one_event(stack, rid)
    assert event.status == ev.REQUEST_STATUS_SUCCEEDED
    assert (event.input_tokens, event.output_tokens) == (IN_TOKENS, OUT_TOKENS)

    def route_client_spans() -> list[Any]:
        return [
            s
            for s in spans.get_finished_spans()
            if s.kind is SpanKind.CLIENT
            and s.name.endswith("RouterService/Route")
            and (s.attributes or {}).get("crossmodel.request_id") == rid
        ]

    await eventually(lambda: len(route_client_spans()) == 1)
    assert (route_client_spans()[0].attributes or {})["rpc.grpc.status_code"] == grpc.StatusCode.OK.value[0]
    assert rid not in router.cancelled


async def test_stream_passes_the_router_chunks_through_byte_for_byte(stack: Stack) -> None:
    async with (
        httpx.AsyncClient(base_url=stack.edge.url, timeout=30) as http,
        http.stream("POST", "/v1/chat/completions", json=chat(stream=True), headers=bearer(GOOD_KEY)) as resp,
    ):
        body = b"".join([c async for c in resp.aiter_raw()])
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/event-stream"
    assert resp.headers["cache-control"] == "no-cache"
    assert resp.headers["x-upstream-request-id"] == "up_1"
    assert body == b"".join(STREAM_CHUNKS)
    events = SSEDecoder().feed(body)
    assert events[-1].data == b"[DONE]"
    rid = request_id(resp)
    event, _, _ = await one_event(stack, rid)
    assert event.stream is True
    assert event.status == ev.REQUEST_STATUS_SUCCEEDED
    assert event.output_tokens == OUT_TOKENS
    assert event.ttft_ms >= 0


async def test_x_api_key_header_authenticates_too(stack: Stack) -> None:
    resp = await post(stack, chat(), {"x-api-key": GOOD_KEY})
    assert resp.status_code == 200


async def test_settle_reports_the_real_tokens_for_keys_with_a_tpm_limit(stack: Stack) -> None:
    resp = await post(stack, chat(max_tokens=50), bearer(TPM_KEY))
    assert resp.status_code == 200
    rid = request_id(resp)
    assert resp.headers["x-ratelimit-limit-tokens"] == "100000"
    assert resp.headers["x-ratelimit-reset-tokens"] == "1m1.5s"
    await eventually(lambda: any(s.request_id == rid for s in stack.backends.auth.settle))
    (settle,) = [s for s in stack.backends.auth.settle if s.request_id == rid]
    assert settle.key_id == "key_tpm0"
    assert settle.actual_tokens == IN_TOKENS + OUT_TOKENS
    event, _, _ = await one_event(stack, rid)
    assert settle.reserved_tokens == event.reserved_tokens > 0


# -- errors before admission --------------------------------------------------------------------


async def test_missing_key_is_401_without_calling_auth(stack: Stack) -> None:
    before = len(stack.backends.auth.authorize) + len(stack.backends.auth.introspect)
    resp = await post(stack, chat(), {"content-type": "application/json"})
    assert resp.status_code == 401
    err = openai_error(resp)
    assert err["type"] == "invalid_request_error"
    assert err["code"] == "invalid_api_key"
    request_id(resp)
    assert len(stack.backends.auth.authorize) + len(stack.backends.auth.introspect) == before


@pytest.mark.parametrize("key", [UNKNOWN_KEY, "cm-short", "sk-not-ours-at-all-0123456789", REVOKED_KEY])
async def test_bad_keys_are_401(stack: Stack, key: str) -> None:
    resp = await post(stack, chat(), bearer(key))
    assert resp.status_code == 401
    assert openai_error(resp)["code"] == "invalid_api_key"
    assert key not in resp.text
    request_id(resp)


async def test_unknown_model_is_404_after_the_key_check(stack: Stack) -> None:
    resp = await post(stack, chat(model="nope/not-a-model"))
    assert resp.status_code == 404
    err = openai_error(resp)
    assert err["code"] == "model_not_found"
    assert err["param"] == "model"
    request_id(resp)
    bad = await post(stack, chat(model="nope/not-a-model"), bearer(UNKNOWN_KEY))
    assert bad.status_code == 401


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b'{"model": "x", "messages": [', None),
        (b"", None),
        (b"[1, 2]", None),
        (b'{"messages": []}', "model"),
        (orjson.dumps(chat(stream="yes")), "stream"),
        (orjson.dumps(chat(max_tokens=-1)), "max_tokens"),
        (b'{"model": "\xff"}', None),
    ],
)
async def test_malformed_bodies_are_400(stack: Stack, body: bytes, param: str | None) -> None:
    resp = await post(stack, body)
    assert resp.status_code == 400
    err = openai_error(resp)
    assert err["type"] == "invalid_request_error"
    assert err["param"] == param
    request_id(resp)


async def test_malformed_body_with_a_bad_key_is_401(stack: Stack) -> None:
    resp = await post(stack, b"{not json", bearer(UNKNOWN_KEY))
    assert resp.status_code == 401


async def test_oversized_body_is_413(stack: Stack) -> None:
    resp = await post(stack, chat("x" * 5000))
    assert resp.status_code == 413
    err = openai_error(resp)
    assert err["code"] == "request_too_large"
    request_id(resp)


async def test_unknown_path_answers_in_openai_shape(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.edge.url) as http:
        resp = await http.post("/v1/nothing-here", json={})
        wrong_method = await http.get("/v1/chat/completions")
    assert resp.status_code == 404
    openai_error(resp)
    request_id(resp)
    assert wrong_method.status_code == 405
    openai_error(wrong_method)
    request_id(wrong_method)


# -- admission refusals -----------------------------------------------------------------------


async def test_rate_limited_is_429_with_retry_after(stack: Stack) -> None:
    resp = await post(stack, chat(), bearer(RATE_LIMITED_KEY))
    assert resp.status_code == 429
    err = openai_error(resp)
    assert err["type"] == "rate_limit_error"
    assert err["code"] == "rate_limit_exceeded"
    assert resp.headers["retry-after"] == "2"
    assert resp.headers["retry-after-ms"] == "1500"
    assert resp.headers["x-ratelimit-limit-requests"] == "1"
    assert resp.headers["x-ratelimit-remaining-requests"] == "0"
    request_id(resp)


async def test_insufficient_balance_is_402_without_retry_after(stack: Stack) -> None:
    resp = await post(stack, chat(), bearer(BROKE_KEY))
    assert resp.status_code == 402
    err = openai_error(resp)
    assert err["code"] == "insufficient_quota"
    assert "retry-after" not in resp.headers
    request_id(resp)


async def test_model_outside_the_key_scope_is_403(stack: Stack) -> None:
    resp = await post(stack, chat(model=SONNET), bearer(SCOPED_KEY))
    assert resp.status_code == 403
    assert openai_error(resp)["code"] == "model_not_allowed"
    ok = await post(stack, chat(model=MINI), bearer(SCOPED_KEY))
    assert ok.status_code == 200


async def test_refusals_publish_no_event(stack: Stack) -> None:
    resp = await post(stack, chat(), bearer(BROKE_KEY))
    rid = request_id(resp)
    ok = await post(stack, chat())
    await one_event(stack, request_id(ok))
    assert stack.events.for_request(rid) == []


# -- failures after admission ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("marker", "status", "etype", "code", "error_type"),
    [
        ("fail-before", 502, "server_error", "upstream_error", "upstream_error"),
        ("upstream-429", 429, "rate_limit_error", "rate_limit_exceeded", "rate_limited"),
        ("upstream-timeout", 504, "timeout_error", "timeout", "timeout"),
        ("no-messages", 400, "invalid_request_error", None, "invalid_request"),
    ],
)
async def test_router_errors_before_the_first_chunk_keep_their_status(
    stack: Stack, marker: str, status: int, etype: str, code: str | None, error_type: str
) -> None:
    resp = await post(stack, chat(marker, stream=True))
    assert resp.status_code == status
    err = openai_error(resp)
    assert (err["type"], err["code"]) == (etype, code)
    if status == 429:
        assert resp.headers["retry-after"] == "3"
    rid = request_id(resp)
    event, _, _ = await one_event(stack, rid)
    assert event.status == ev.REQUEST_STATUS_FAILED
    assert event.http_status == status
    assert event.error_type == error_type
    assert event.reserved_micros > 0, "billing needs the reservation to release it"
    if marker == "fail-before":
        assert event.input_tokens == IN_TOKENS, "usage sent after the error frame is kept"


async def test_error_after_the_first_chunk_ends_the_stream_with_an_error_event(stack: Stack) -> None:
    async with (
        httpx.AsyncClient(base_url=stack.edge.url, timeout=30) as http,
        http.stream(
            "POST", "/v1/chat/completions", json=chat("fail-after", stream=True), headers=bearer(GOOD_KEY)
        ) as resp,
    ):
        body = b"".join([c async for c in resp.aiter_raw()])
    assert resp.status_code == 200
    assert body.startswith(STREAM_CHUNKS[0] + STREAM_CHUNKS[1])
    events = SSEDecoder().feed(body)
    assert len(events) == 3
    last = orjson.loads(events[-1].data)
    assert last == {
        "error": {
            "message": "upstream connection dropped",
            "type": "server_error",
            "param": None,
            "code": "upstream_error",
        }
    }
    event, _, _ = await one_event(stack, request_id(resp))
    assert event.status == ev.REQUEST_STATUS_FAILED
    assert event.error_type == "upstream_error"
    assert event.output_tokens == OUT_TOKENS


async def test_router_dying_mid_stream_ends_the_stream_with_an_error_event(stack: Stack) -> None:
    async with (
        httpx.AsyncClient(base_url=stack.edge.url, timeout=30) as http,
        http.stream(
            "POST", "/v1/chat/completions", json=chat("abort-after", stream=True), headers=bearer(GOOD_KEY)
        ) as resp,
    ):
        body = b"".join([c async for c in resp.aiter_raw()])
    events = SSEDecoder().feed(body)
    assert orjson.loads(events[-1].data)["error"]["type"] == "server_error"
    event, _, _ = await one_event(stack, request_id(resp))
    assert event.status == ev.REQUEST_STATUS_FAILED
    assert event.usage_estimated, "no usage frame came: the tokens relayed are estimated"
    assert event.output_tokens == 1


async def test_client_disconnect_cancels_the_route_call(stack: Stack) -> None:
    router = stack.backends.router
    router.slow_started.clear()
    async with (
        httpx.AsyncClient(base_url=stack.edge.url, timeout=30) as http,
        http.stream(
            "POST", "/v1/chat/completions", json=chat("slow", stream=True), headers=bearer(GOOD_KEY)
        ) as resp,
    ):
        rid = request_id(resp)
        async for _ in resp.aiter_raw():
            break
        await eventually(router.slow_started.is_set)
    await eventually(lambda: rid in router.cancelled)
    event, _, _ = await one_event(stack, rid)
    assert event.status == ev.REQUEST_STATUS_CANCELLED
    assert event.http_status == 499


async def test_client_leaving_a_non_streamed_request_cancels_the_route_call(stack: Stack) -> None:
    router = stack.backends.router
    router.slow_started.clear()
    before = len(router.routes)
    async with httpx.AsyncClient(base_url=stack.edge.url, timeout=30) as http:
        pending = asyncio.ensure_future(
            http.post("/v1/chat/completions", json=chat("slow"), headers=bearer(GOOD_KEY))
        )
        await eventually(router.slow_started.is_set)
        pending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pending
    await eventually(lambda: len(router.routes) > before)
    rid = router.routes[before][0].request_id
    await eventually(lambda: rid in router.cancelled)
    event, _, _ = await one_event(stack, rid)
    assert event.status == ev.REQUEST_STATUS_CANCELLED
    assert (event.input_tokens, event.output_tokens, event.cost_micros) == (0, 0, 0)


async def test_concurrent_streams_each_get_their_own_bytes_and_one_event(stack: Stack) -> None:
    async def one(http: httpx.AsyncClient) -> tuple[str, bytes]:
        async with http.stream(
            "POST", "/v1/chat/completions", json=chat(stream=True), headers=bearer(GOOD_KEY)
        ) as resp:
            return request_id(resp), b"".join([c async for c in resp.aiter_raw()])

    async with httpx.AsyncClient(base_url=stack.edge.url, timeout=30) as http:
        results = await asyncio.gather(*(one(http) for _ in range(40)))
    assert len({rid for rid, _ in results}) == 40
    assert all(body == b"".join(STREAM_CHUNKS) for _, body in results)
    for rid, _ in results:
        await one_event(stack, rid)


# -- models, account, probes ------------------------------------------------------------------


async def test_models_list_in_openai_shape(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.edge.url) as http:
        resp = await http.get("/v1/models", headers=bearer(GOOD_KEY))
        scoped = await http.get("/v1/models", headers=bearer(SCOPED_KEY))
        anon = await http.get("/v1/models")
    assert resp.status_code == 200
    body = resp.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == [SONNET, MINI]
    mini = body["data"][1]
    assert mini["object"] == "model"
    assert mini["owned_by"] == "openai"
    assert mini["created"] == 1_721_172_741
    assert mini["context_window"] == 128_000
    assert mini["pricing"]["input_per_mtok"] == "0.150000"
    assert [m["id"] for m in scoped.json()["data"]] == [MINI]
    assert anon.status_code == 401
    request_id(resp)


async def test_one_model(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.edge.url) as http:
        resp = await http.get(f"/v1/models/{MINI}", headers=bearer(GOOD_KEY))
        missing = await http.get("/v1/models/openai/nope", headers=bearer(GOOD_KEY))
        out_of_scope = await http.get(f"/v1/models/{SONNET}", headers=bearer(SCOPED_KEY))
    assert resp.status_code == 200
    assert resp.json()["id"] == MINI
    assert missing.status_code == 404
    assert openai_error(missing)["code"] == "model_not_found"
    assert out_of_scope.status_code == 404


async def test_a_model_id_without_its_vendor_is_model_not_found(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.edge.url) as http:
        bare = await http.get("/v1/models/gpt-4o-mini", headers=bearer(GOOD_KEY))
        anthropic = await http.get(
            "/v1/models/claude-sonnet-4-6", headers={"x-api-key": GOOD_KEY, "anthropic-version": "2023-06-01"}
        )
        unauthenticated = await http.get("/v1/models/gpt-4o-mini")
        elsewhere = await http.get("/v1/nowhere", headers={"anthropic-version": "2023-06-01"})
    assert bare.status_code == 404
    assert openai_error(bare)["code"] == "model_not_found"
    assert "vendor/model" in openai_error(bare)["message"]
    assert anthropic.status_code == 404
    assert anthropic.json()["type"] == "error"
    assert anthropic.json()["error"]["type"] == "not_found_error"
    assert anthropic.headers["request-id"] == request_id(anthropic)
    assert unauthenticated.status_code == 401
    assert elsewhere.status_code == 404
    assert elsewhere.json()["error"]["type"] == "not_found_error"


async def test_models_are_served_from_the_cache(stack: Stack) -> None:
    before = stack.backends.router.list_calls
    async with httpx.AsyncClient(base_url=stack.edge.url) as http:
        for _ in range(5):
            assert (await http.get("/v1/models", headers=bearer(GOOD_KEY))).status_code == 200
    assert stack.backends.router.list_calls == before


async def test_account(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.edge.url) as http:
        resp = await http.get("/v1/account", headers={"x-api-key": TPM_KEY})
        bad = await http.get("/v1/account", headers=bearer(UNKNOWN_KEY))
    assert resp.status_code == 200
    body = resp.json()
    assert body["account_id"] == "acct_1"
    assert body["balance"] == {
        "currency": "USD",
        "balance_micros": 4_250_000,
        "balance": "4.250000",
        "total_charged_micros": 750_000,
        "total_credited_micros": 5_000_000,
    }
    usage = body["usage"]
    assert (usage["requests"], usage["input_tokens"], usage["output_tokens"], usage["cost_micros"]) == (
        3,
        36,
        6,
        9,
    )
    key = body["key"]
    assert key["id"] == "key_tpm0"
    assert key["name"] == "tpm"
    assert key["status"] == "active"
    assert key["limits"]["rpm"] == 60
    assert key["limits"]["tpm"] == 100_000
    assert TPM_KEY not in resp.text
    assert bad.status_code == 401
    request_id(bad)


async def test_anthropic_paths_answer_in_anthropic_shape_with_request_id(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.edge.url) as http:
        resp = await http.post("/v1/messages/not-a-route", json={})
    assert resp.status_code == 404
    assert resp.json()["type"] == "error"
    assert resp.json()["error"]["type"] == "not_found_error"
    assert resp.headers["request-id"] == request_id(resp)


async def test_openapi_page_lists_the_public_api(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.edge.url) as http:
        resp = await http.get("/openapi.json")
    assert resp.status_code == 200
    paths = resp.json()["paths"]
    assert {"/v1/chat/completions", "/v1/models", "/v1/models/{vendor}/{model}", "/v1/account"} <= set(paths)


async def test_probes(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.edge.url) as http:
        live = await http.get("/healthz")
        ready = await http.get("/readyz")
    assert live.status_code == 200
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"auth": True, "router": True, "catalog": True}
    request_id(live)


def test_decisions_cover_every_refusal() -> None:
    from crossmodel_edge.domain.failures import refusal
    from crossmodel_edge.domain.idempotency import DECISIONS

    # Idempotency-Key decisions are answered by the idempotency module (tests/domain).
    statuses = {
        auth_pb2.Decision.Name(d): refusal(d).status
        for d in auth_pb2.Decision.values()
        if d > auth_pb2.DECISION_ALLOWED and d not in DECISIONS
    }
    assert statuses == {
        "DECISION_INVALID_KEY": 401,
        "DECISION_KEY_REVOKED": 401,
        "DECISION_KEY_EXPIRED": 401,
        "DECISION_MODEL_NOT_ALLOWED": 403,
        "DECISION_RATE_LIMITED_REQUESTS": 429,
        "DECISION_RATE_LIMITED_TOKENS": 429,
        "DECISION_INSUFFICIENT_BALANCE": 402,
        "DECISION_SPEND_CAP_EXCEEDED": 402,
        "DECISION_ACCOUNT_DISABLED": 403,
    }


async def test_inference_endpoints_are_called_by_the_middleware_directly(stack: Stack) -> None:
    (middleware,) = [m for m in stack.edge.app.user_middleware if m.cls is EdgeMiddleware]
    direct = middleware.kwargs["direct"]
    assert set(direct) == inference.DIRECT_PATHS
    assert direct["/v1/chat/completions"].endpoint is inference.chat_completions
    assert direct["/v1/messages"].route.path == "/v1/messages"
