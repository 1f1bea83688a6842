"""RouterService end to end in-process: a real gRPC server, the real upstream client and the
provider simulator on free ports."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import grpc
import orjson
import pytest
from aiohttp import web

from crossmodel.router.v1 import router_pb2, router_pb2_grpc
from crossmodel_common.money import Prices, cost_micros
from crossmodel_protocols.sse import SSEDecoder
from crossmodel_router.domain.catalog import Catalog, parse_catalog
from crossmodel_simulator.script import expected_completion

RouterFactory = Callable[..., Awaitable[router_pb2_grpc.RouterServiceStub]]
ServeApp = Callable[[web.Application], Awaitable[str]]  # the serve_app fixture (conftest)


def custom_catalog(providers: dict[str, Any], models: dict[str, Any]) -> Catalog:
    return parse_catalog({"providers": providers, "models": models}, {})


CHAT = router_pb2.PROTOCOL_OPENAI_CHAT
MODEL = "openai/gpt-4o-mini"


@dataclass
class Result:
    heads: list[router_pb2.Head] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    usages: list[router_pb2.Usage] = field(default_factory=list)
    errors: list[router_pb2.RouteError] = field(default_factory=list)
    order: list[str] = field(default_factory=list)
    messages: int = 0

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    @property
    def usage(self) -> router_pb2.Usage:
        return self.usages[-1]

    def events(self) -> list[bytes]:
        dec = SSEDecoder()
        return [e.data for e in [*dec.feed(self.body), *dec.flush()]]


async def route(
    stub: router_pb2_grpc.RouterServiceStub,
    body: dict[str, Any] | bytes,
    *,
    timeout: float = 20,
    coalesce: bool = False,
) -> Result:
    """The frames in the order they mean, whether or not the router packed them (`coalesce`)."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    out = Result()
    async for frame in stub.Route(
        router_pb2.RouteRequest(request_id="req_test", protocol=CHAT, body=raw, coalesce_frames=coalesce),
        timeout=timeout,
    ):
        out.messages += 1
        if frame.HasField("lead_head"):
            out.order.append("head")
            out.heads.append(frame.lead_head)
        kind = frame.WhichOneof("frame")
        out.order.append(kind or "")
        if frame.HasField("trailing_usage"):
            out.order.append("usage")
            out.usages.append(frame.trailing_usage)
        if kind == "head":
            out.heads.append(frame.head)
        elif kind == "chunk":
            out.chunks.append(frame.chunk)
        elif kind == "usage":
            out.usages.append(frame.usage)
        elif kind == "error":
            out.errors.append(frame.error)
    return out


def chat(text: str, *, model: str = MODEL, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


async def sim_stats(simulator_url: str) -> dict[str, int]:
    async with aiohttp.ClientSession() as s, s.get(simulator_url + "/_sim/stats") as r:
        data: dict[str, int] = await r.json()
        return data


GPT_4O_MINI = Prices(
    input_per_mtok_micros=150_000, output_per_mtok_micros=600_000, cached_input_per_mtok_micros=75_000
)


# ------------------------------------------------------------------------------ success


@pytest.mark.parametrize("passthrough", [True, False])
async def test_plain_completion(
    start_router: RouterFactory, packaged_catalog: Catalog, passthrough: bool
) -> None:
    stub = await start_router(packaged_catalog, passthrough=passthrough)
    body = chat("what is two plus two [sim:cached=4]", user="end-user-1")
    res = await route(stub, body)
    exp = expected_completion(body)
    assert res.order == ["head", "chunk", "usage"]
    assert res.heads[0].status_code == 200
    assert res.heads[0].content_type == "application/json"
    answer = orjson.loads(res.body)
    assert answer["object"] == "chat.completion"
    assert answer["id"].startswith("chatcmpl-")
    assert answer["model"] == MODEL
    assert answer["choices"][0]["message"]["content"] == exp.text
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["usage"]["prompt_tokens"] == exp.prompt_tokens
    u = res.usage
    assert (u.model, u.provider, u.deployment, u.upstream_model) == (
        MODEL,
        "openai",
        "openai/gpt-4o-mini",
        "gpt-4o-mini",
    )
    assert u.input_tokens == exp.prompt_tokens
    assert u.output_tokens == exp.completion_tokens
    assert u.cached_input_tokens == 4
    assert not u.usage_estimated
    assert u.finish_reason == "end_turn"
    assert u.end_user == "end-user-1"
    assert u.price.input_per_mtok_micros == 150_000
    assert u.price.cached_input_per_mtok_micros == 75_000
    assert u.cost_micros == cost_micros(
        GPT_4O_MINI,
        input_tokens=exp.prompt_tokens,
        output_tokens=exp.completion_tokens,
        cached_input_tokens=4,
    )
    assert u.upstream_request_id.startswith("req_")


@pytest.mark.parametrize("passthrough", [True, False])
@pytest.mark.parametrize("include_usage", [True, False])
async def test_streamed_completion(
    start_router: RouterFactory, packaged_catalog: Catalog, passthrough: bool, include_usage: bool
) -> None:
    stub = await start_router(packaged_catalog, passthrough=passthrough)
    extra: dict[str, Any] = {"stream": True}
    if include_usage:
        extra["stream_options"] = {"include_usage": True}
    body = chat("tell me a story", **extra)
    res = await route(stub, body)
    exp = expected_completion(body)
    assert res.order[0] == "head"
    assert res.order[-1] == "usage"
    assert res.heads[0].content_type == "text/event-stream"
    events = res.events()
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert {c["model"] for c in chunks} == {MODEL}
    assert len({c["id"] for c in chunks}) == 1
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == exp.text
    finishes = [
        c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]
    ]
    assert finishes == ["stop"]
    if include_usage:
        assert chunks[-1]["choices"] == []
        assert chunks[-1]["usage"]["completion_tokens"] == exp.completion_tokens
        assert all(c["usage"] is None for c in chunks[:-1])
    else:
        assert all("usage" not in c for c in chunks)
    u = res.usage
    assert (u.input_tokens, u.output_tokens) == (exp.prompt_tokens, exp.completion_tokens)
    assert not u.usage_estimated
    assert u.finish_reason == "end_turn"
    assert u.ttft_ms <= u.upstream_latency_ms


@pytest.mark.parametrize("passthrough", [True, False])
async def test_coalesced_complete_answer_is_one_message(
    start_router: RouterFactory, packaged_catalog: Catalog, passthrough: bool
) -> None:
    stub = await start_router(packaged_catalog, passthrough=passthrough)
    body = chat("what is two plus two [sim:cached=4]")
    separate = await route(stub, body)
    packed = await route(stub, body, coalesce=True)
    assert separate.messages == 3
    assert packed.messages == 1
    assert packed.order == separate.order == ["head", "chunk", "usage"]
    assert packed.heads == separate.heads
    assert orjson.loads(packed.body)["choices"] == orjson.loads(separate.body)["choices"]
    for u in (packed.usage, separate.usage):
        u.upstream_latency_ms = u.ttft_ms = 0
        u.upstream_request_id = ""
    assert packed.usage == separate.usage


@pytest.mark.parametrize("passthrough", [True, False])
async def test_coalesced_stream_sends_the_head_with_its_first_chunk(
    start_router: RouterFactory, packaged_catalog: Catalog, passthrough: bool
) -> None:
    stub = await start_router(packaged_catalog, passthrough=passthrough)
    body = chat("tell me a story", stream=True)
    separate = await route(stub, body)
    packed = await route(stub, body, coalesce=True)
    assert packed.heads == separate.heads
    assert packed.heads[0].content_type == "text/event-stream"
    assert packed.order[:2] == ["head", "chunk"]
    assert packed.order[-1] == "usage"
    # Only the head was packed: every chunk of a stream goes out as it comes.
    assert packed.messages == len(packed.order) - 1
    assert len(packed.events()) == len(separate.events())
    assert packed.events()[-1] == b"[DONE]"
    assert packed.usage.output_tokens == separate.usage.output_tokens


async def test_coalesced_failures_keep_their_frames(
    start_router: RouterFactory, packaged_catalog: Catalog
) -> None:
    stub = await start_router(packaged_catalog)
    refused = await route(stub, chat("x [sim:status=429]"), coalesce=True)
    assert refused.order == ["usage", "error"]
    assert refused.errors[0].kind == router_pb2.ERROR_KIND_UPSTREAM_RATE_LIMITED
    dropped = await route(stub, chat("[sim:words=9] [sim:drop_after=3]", stream=True), coalesce=True)
    assert dropped.order[:2] == ["head", "chunk"]
    assert dropped.order[-2:] == ["usage", "error"]
    unknown = await route(stub, chat("x", model="nobody/none"), coalesce=True)
    assert unknown.order == ["error"]
    assert unknown.errors[0].kind == router_pb2.ERROR_KIND_MODEL_NOT_FOUND


async def test_streams_through_the_official_sdk_parser(
    start_router: RouterFactory, packaged_catalog: Catalog
) -> None:
    """The bytes the router renders are what the openai SDK's own stream parser accepts."""
    import httpx2
    import openai

    stub = await start_router(packaged_catalog)
    body = chat("parse me", stream=True, stream_options={"include_usage": True})
    res = await route(stub, body)

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=res.body)

    client = openai.AsyncOpenAI(
        api_key="x",
        base_url="http://gateway.test/v1",
        http_client=openai.DefaultAsyncHttpxClient(transport=httpx2.MockTransport(handler)),
    )
    stream = await client.chat.completions.create(**body)
    got = [c async for c in stream]
    assert (
        "".join(c.choices[0].delta.content or "" for c in got if c.choices) == expected_completion(body).text
    )
    assert got[-1].usage is not None


@pytest.mark.parametrize("passthrough", [True, False])
async def test_log_probabilities_on_either_path(
    start_router: RouterFactory, packaged_catalog: Catalog, passthrough: bool
) -> None:
    stub = await start_router(packaged_catalog, passthrough=passthrough)
    res = await route(stub, chat("name a colour", logprobs=True, top_logprobs=2))
    answer = orjson.loads(res.body)
    tokens = answer["choices"][0]["logprobs"]["content"]
    assert "".join(t["token"] for t in tokens) == answer["choices"][0]["message"]["content"]
    assert all(len(t["top_logprobs"]) == 2 for t in tokens)


@pytest.mark.parametrize("passthrough", [True, False])
async def test_several_choices_only_on_the_pass_through_path(
    start_router: RouterFactory, packaged_catalog: Catalog, passthrough: bool
) -> None:
    stub = await start_router(packaged_catalog, passthrough=passthrough)
    res = await route(stub, chat("name a colour", n=2))
    if passthrough:
        assert [c["index"] for c in orjson.loads(res.body)["choices"]] == [0, 1]
        assert res.usages[0].output_tokens == 2 * expected_completion(chat("name a colour")).completion_tokens
        return
    # The canonical answer holds one choice: refused before any upstream call, not cut to one.
    assert res.order == ["error"]
    assert res.errors[0].kind == router_pb2.ERROR_KIND_INVALID_REQUEST
    assert res.errors[0].param == "n"


async def test_deepseek_and_compatible_vendors(
    start_router: RouterFactory, packaged_catalog: Catalog
) -> None:
    stub = await start_router(packaged_catalog)
    body = chat("hola [sim:cached=2]", model="deepseek/deepseek-chat", max_completion_tokens=50)
    res = await route(stub, body)
    exp = expected_completion(body)
    assert orjson.loads(res.body)["choices"][0]["message"]["content"] == exp.text
    assert res.usage.provider == "deepseek"
    assert res.usage.cached_input_tokens == 2
    res = await route(stub, chat("hi", model="xai/grok-4", stream=True))
    assert res.usage.provider == "openai-compatible"
    assert res.usage.upstream_model == "grok-4"
    assert res.events()[-1] == b"[DONE]"


@pytest.mark.parametrize("model", ["anthropic/claude-sonnet-4.6", "google/gemini-2.5-flash"])
async def test_answers_from_vendors_without_a_creation_time_are_stamped_now(
    start_router: RouterFactory, packaged_catalog: Catalog, model: str
) -> None:
    """Anthropic and Gemini answers carry no time; OpenAI's `created` is the answer's Unix time,
    never 1970."""
    stub = await start_router(packaged_catalog)
    before = int(time.time())
    res = await route(stub, chat("hi", model=model))
    assert not res.errors, res.errors
    plain = orjson.loads(res.body)
    streamed = await route(stub, chat("hi", model=model, stream=True))
    chunks = [orjson.loads(e) for e in streamed.events()[:-1]]
    after = int(time.time())
    assert before <= plain["created"] <= after
    assert chunks
    assert all(before <= c["created"] <= after for c in chunks)


# ------------------------------------------------------------------------------ refusals


async def test_unknown_model(start_router: RouterFactory, packaged_catalog: Catalog) -> None:
    stub = await start_router(packaged_catalog)
    res = await route(stub, chat("x", model="acme/nope"))
    assert res.order == ["error"]
    err = res.errors[0]
    assert err.kind == router_pb2.ERROR_KIND_MODEL_NOT_FOUND
    assert err.param == "model"
    assert err.code == "model_not_found"
    assert "acme/nope" in err.message


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", ""),
        (orjson.dumps({"model": MODEL}), "messages"),
        (orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": 1}]}), "messages[0].content"),
        (orjson.dumps(chat("x", temperature=9)), "temperature"),
        (orjson.dumps(chat("x", max_tokens=10_000_000)), "max_tokens"),
        (orjson.dumps(chat("x", max_completion_tokens=10_000_000)), "max_completion_tokens"),
    ],
)
async def test_invalid_body(
    start_router: RouterFactory, packaged_catalog: Catalog, body: bytes, param: str
) -> None:
    stub = await start_router(packaged_catalog)
    res = await route(stub, body)
    assert res.order == ["error"]
    assert res.errors[0].kind == router_pb2.ERROR_KIND_INVALID_REQUEST
    assert res.errors[0].param == param
    assert res.errors[0].message


@pytest.mark.parametrize("passthrough", [True, False])
@pytest.mark.parametrize("model", ["deepseek/deepseek-chat", "deepseek/deepseek-v4-pro"])
async def test_images_for_a_model_without_vision_are_refused_before_the_upstream(
    start_router: RouterFactory, packaged_catalog: Catalog, passthrough: bool, model: str
) -> None:
    stub = await start_router(packaged_catalog, passthrough=passthrough)
    image = {"type": "image_url", "image_url": {"url": "https://x.test/cat.png"}}
    body = {"model": model, "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}, image]}]}
    res = await route(stub, body)
    assert res.order == ["error"]  # no usage frame: nothing reached the upstream
    err = res.errors[0]
    assert err.kind == router_pb2.ERROR_KIND_INVALID_REQUEST
    assert (err.param, err.code) == ("messages[0].content[1]", "unsupported_value")


# ------------------------------------------------------------------------------ upstream failures


async def test_upstream_429_is_rate_limited_with_retry_after(
    start_router: RouterFactory, packaged_catalog: Catalog, simulator_url: str
) -> None:
    stub = await start_router(packaged_catalog, max_attempts=3)
    before = (await sim_stats(simulator_url))["requests"]
    res = await route(stub, chat("x [sim:status=429] [sim:retry_after_ms=1500]"))
    assert res.order == ["usage", "error"]
    err = res.errors[0]
    assert err.kind == router_pb2.ERROR_KIND_UPSTREAM_RATE_LIMITED
    assert err.upstream_status == 429
    assert err.retry_after_ms == 1500
    assert res.usage.deployment == "openai/gpt-4o-mini"
    assert res.usage.output_tokens == 0
    assert res.usage.cost_micros == 0
    # One deployment only: a 429 is not retried against the same one.
    assert (await sim_stats(simulator_url))["requests"] == before + 1


async def test_upstream_500_is_retried_then_reported(
    start_router: RouterFactory, packaged_catalog: Catalog, simulator_url: str
) -> None:
    stub = await start_router(packaged_catalog, max_attempts=3)
    before = (await sim_stats(simulator_url))["requests"]
    res = await route(stub, chat("x [sim:status=500]", stream=True))
    assert res.order == ["usage", "error"]
    assert res.errors[0].kind == router_pb2.ERROR_KIND_UPSTREAM_ERROR
    assert res.errors[0].upstream_status == 500
    assert (await sim_stats(simulator_url))["requests"] == before + 3


async def test_failover_to_the_next_deployment_before_the_first_byte(
    start_router: RouterFactory, simulator_url: str
) -> None:
    catalog = custom_catalog(
        {
            # Nothing listens on port 9 (discard) here: connection refused.
            "down": {"type": "openai-compatible", "base_url": "http://127.0.0.1:9/v1"},
            "up": {"type": "openai", "base_url": simulator_url + "/openai/v1"},
        },
        {
            "test/model": {
                "context_window": 1000,
                "max_output_tokens": 100,
                "price": {"input": 1_000_000, "output": 2_000_000},
                "deployments": [{"provider": "down", "model": "m1"}, {"provider": "up", "model": "m2"}],
            }
        },
    )
    stub = await start_router(catalog)
    body = chat("fail over", model="test/model")
    res = await route(stub, body)
    assert res.order == ["head", "chunk", "usage"]
    assert orjson.loads(res.body)["choices"][0]["message"]["content"] == expected_completion(body).text
    assert res.usage.deployment == "up/m2"
    assert res.usage.upstream_model == "m2"


async def test_unreachable_upstream_is_upstream_error(start_router: RouterFactory) -> None:
    catalog = custom_catalog(
        {"down": {"type": "openai", "base_url": "http://127.0.0.1:9/v1"}},
        {
            "test/down": {
                "context_window": 1000,
                "max_output_tokens": 100,
                "price": {"input": 1, "output": 1},
                "deployments": [{"provider": "down", "model": "m"}],
            }
        },
    )
    stub = await start_router(catalog, max_attempts=2)
    res = await route(stub, chat("x", model="test/down"))
    assert res.order == ["usage", "error"]
    assert res.errors[0].kind == router_pb2.ERROR_KIND_UPSTREAM_ERROR
    assert res.usage.deployment == "down/m"


async def test_upstream_silence_is_a_timeout(start_router: RouterFactory, packaged_catalog: Catalog) -> None:
    stub = await start_router(packaged_catalog, read_timeout=0.3)
    res = await route(stub, chat("slow [sim:delay_ms=1500]"))
    assert res.order == ["usage", "error"]
    assert res.errors[0].kind == router_pb2.ERROR_KIND_UPSTREAM_TIMEOUT


async def test_stream_dropped_after_tokens_reports_usage_then_error(
    start_router: RouterFactory, packaged_catalog: Catalog
) -> None:
    stub = await start_router(packaged_catalog)
    res = await route(stub, chat("[sim:words=9] [sim:drop_after=3]", stream=True))
    assert res.order[0] == "head"
    assert res.order[-2:] == ["usage", "error"]
    text = "".join(
        orjson.loads(e)["choices"][0]["delta"].get("content") or "" for e in res.events() if e != b"[DONE]"
    )
    assert text == "w1 w2 w3"
    assert b"[DONE]" not in res.body
    assert res.errors[0].kind == router_pb2.ERROR_KIND_UPSTREAM_ERROR
    u = res.usage
    assert u.usage_estimated
    assert u.output_tokens == 2  # "w1 w2 w3" is 8 characters: 2 tokens at 4 characters per token
    assert u.input_tokens > 0
    assert u.cost_micros > 0
    assert u.finish_reason == "error"


@pytest.mark.parametrize("passthrough", [True, False])
async def test_error_inside_the_upstream_stream(
    start_router: RouterFactory, packaged_catalog: Catalog, passthrough: bool
) -> None:
    stub = await start_router(packaged_catalog, passthrough=passthrough)
    res = await route(stub, chat("[sim:words=5] [sim:error_after=2]", stream=True))
    assert res.order[-2:] == ["usage", "error"]
    assert res.errors[0].kind == router_pb2.ERROR_KIND_UPSTREAM_ERROR
    assert "Simulated failure" in res.errors[0].message
    assert b'"error"' not in res.body  # the edge renders the in-stream error, once


@pytest.mark.parametrize(
    ("model", "kind"),
    [
        ("anthropic/claude-sonnet-4.6", router_pb2.ERROR_KIND_UPSTREAM_OVERLOADED),
        ("google/gemini-2.5-flash", router_pb2.ERROR_KIND_UPSTREAM_OVERLOADED),
        (MODEL, router_pb2.ERROR_KIND_UPSTREAM_ERROR),
    ],
)
async def test_an_error_inside_the_stream_keeps_the_vendors_kind(
    start_router: RouterFactory, packaged_catalog: Catalog, model: str, kind: int
) -> None:
    """Anthropic's `overloaded_error` event and Gemini's UNAVAILABLE say overloaded, which the
    client's protocol can say too (`overloaded_error` for Anthropic clients)."""
    stub = await start_router(packaged_catalog)
    res = await route(stub, chat("[sim:words=5] [sim:error_after=2]", model=model, stream=True))
    assert res.order[-2:] == ["usage", "error"]
    assert res.errors[0].kind == kind


@pytest.mark.parametrize("model", [MODEL, "deepseek/deepseek-chat", "google/gemini-2.5-flash"])
@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, router_pb2.ERROR_KIND_UPSTREAM_AUTH),
        (429, router_pb2.ERROR_KIND_UPSTREAM_RATE_LIMITED),
        (500, router_pb2.ERROR_KIND_UPSTREAM_ERROR),
    ],
)
async def test_the_vendors_error_code_is_not_passed_for_its_own_failures(
    start_router: RouterFactory, packaged_catalog: Catalog, model: str, status: int, kind: int
) -> None:
    """OpenAI's `invalid_api_key` is about the gateway's provider key, not the client's; Gemini's
    code is the HTTP status again. The client gets the gateway's code for the kind."""
    stub = await start_router(packaged_catalog, max_attempts=1)
    res = await route(stub, chat(f"x [sim:status={status}]", model=model))
    assert res.errors[0].kind == kind
    assert res.errors[0].code == ""


async def test_stream_without_upstream_usage_is_estimated(
    start_router: RouterFactory, packaged_catalog: Catalog
) -> None:
    stub = await start_router(packaged_catalog, passthrough=False)
    body = chat("[sim:no_usage] [sim:words=8]", stream=True, stream_options={"include_usage": True})
    res = await route(stub, body)
    assert res.order[-1] == "usage"
    assert res.usage.usage_estimated
    assert res.usage.output_tokens == 6  # "w1 w2 … w8" is 23 characters: ceil(23 / 4)
    # The client asked for usage: it still gets a usage chunk, from the estimate.
    last = orjson.loads(res.events()[-2])
    assert last["choices"] == []
    assert last["usage"]["completion_tokens"] == 6


# ------------------------------------------------------------------------------ long streams


async def test_long_streams_report_provisional_usage(
    start_router: RouterFactory, packaged_catalog: Catalog
) -> None:
    stub = await start_router(packaged_catalog, usage_progress_seconds=0.05)
    body = chat("[sim:words=30] [sim:chunk_delay_ms=10]", stream=True)
    res = await route(stub, body)
    assert len(res.usages) >= 2
    assert all(u.usage_estimated for u in res.usages[:-1])
    outputs = [u.output_tokens for u in res.usages[:-1]]
    assert outputs == sorted(outputs)
    final = res.usage
    assert not final.usage_estimated
    assert final.output_tokens == expected_completion(body).completion_tokens == 30


async def test_cancelling_the_call_cancels_the_upstream(
    start_router: RouterFactory, packaged_catalog: Catalog, simulator_url: str
) -> None:
    stub = await start_router(packaged_catalog)
    before = (await sim_stats(simulator_url))["client_disconnects"]
    body = orjson.dumps(chat("[sim:words=500] [sim:chunk_delay_ms=20]", stream=True))
    call = stub.Route(router_pb2.RouteRequest(request_id="req_cancel", protocol=CHAT, body=body), timeout=30)
    seen = []
    async for frame in call:
        seen.append(frame.WhichOneof("frame"))
        if seen.count("chunk") >= 2:
            break
    call.cancel()
    for _ in range(250):
        if (await sim_stats(simulator_url))["client_disconnects"] > before:
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("the upstream request was not cancelled")
    with pytest.raises(asyncio.CancelledError):
        await call.read()


async def test_deadline_bounds_the_upstream_call(
    start_router: RouterFactory, packaged_catalog: Catalog
) -> None:
    stub = await start_router(packaged_catalog)
    # The router bounds the upstream call by the caller's deadline, so either it answers first
    # with an upstream timeout or gRPC ends the call at the deadline: which one wins is a race.
    # Either way the 5 s upstream delay is not waited out.
    code: grpc.StatusCode | None = None
    res = Result()
    try:
        res = await route(stub, chat("[sim:delay_ms=5000]"), timeout=0.5)
    except grpc.aio.AioRpcError as err:
        code = err.code()
    if code is not None:
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    else:
        assert [e.kind for e in res.errors] == [router_pb2.ERROR_KIND_UPSTREAM_TIMEOUT]
        assert not res.chunks


# ------------------------------------------------------------------------------ catalog RPCs


async def test_list_models_and_count_tokens(start_router: RouterFactory, packaged_catalog: Catalog) -> None:
    stub = await start_router(packaged_catalog)
    models = (await stub.ListModels(router_pb2.ListModelsRequest(), timeout=5)).models
    by_id = {m.id: m for m in models}
    mini = by_id[MODEL]
    assert mini.vendor == "openai"
    assert mini.price.input_per_mtok_micros == 150_000
    assert mini.context_window == 128_000
    assert "tools" in mini.capabilities
    assert [m.id for m in models] == sorted(by_id)

    body = orjson.dumps(
        {
            "model": MODEL,
            "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "x" * 40}],
        }
    )
    counted = await stub.CountTokens(
        router_pb2.CountTokensRequest(request_id="r", protocol=CHAT, body=body), timeout=5
    )
    assert not counted.HasField("error")
    # 3 priming + 2 messages x 4 + ceil((8 + 40) / 4) characters
    assert counted.input_tokens == 3 + 8 + 12
    bad = await stub.CountTokens(router_pb2.CountTokensRequest(protocol=CHAT, body=b"[]"), timeout=5)
    assert bad.error.kind == router_pb2.ERROR_KIND_INVALID_REQUEST


async def test_answer_lost_before_its_first_byte_is_retried(
    start_router: RouterFactory, packaged_catalog: Catalog, simulator_url: str
) -> None:
    stub = await start_router(packaged_catalog, max_attempts=3)
    before = (await sim_stats(simulator_url))["requests"]
    res = await route(stub, chat("x [sim:drop_after=0]"))
    assert res.order == ["usage", "error"]
    assert res.errors[0].kind == router_pb2.ERROR_KIND_UPSTREAM_ERROR
    assert res.usage.output_tokens == 0
    assert (await sim_stats(simulator_url))["requests"] == before + 3


# ------------------------------------------------------------------------------ malformed upstreams

_GOOD_ANSWER: dict[str, Any] = {
    "id": "chatcmpl-odd",
    "object": "chat.completion",
    "created": 1741570000,
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "one two three"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
}


async def _odd_upstream(serve_app: ServeApp, answers: list[bytes], content_type: str) -> str:
    """An OpenAI-compatible upstream that answers every request with the next of `answers`;
    its base URL."""

    async def complete(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=answers.pop(0), content_type=content_type)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", complete)
    return await serve_app(app) + "/v1"


def _odd_catalog(base_url: str) -> Catalog:
    return custom_catalog(
        {"odd": {"type": "openai-compatible", "base_url": base_url}},
        {
            "test/odd": {
                "context_window": 1000,
                "max_output_tokens": 100,
                "price": {"input": 1, "output": 1},
                "deployments": [{"provider": "odd", "model": "m"}],
            }
        },
    )


@pytest.mark.parametrize("passthrough", [True, False])
async def test_an_unreadable_usage_from_the_upstream_is_estimated_not_billed_as_zero(
    start_router: RouterFactory, serve_app: ServeApp, passthrough: bool
) -> None:
    odd = {**_GOOD_ANSWER, "usage": {"prompt_tokens": "nine", "completion_tokens": 3}}
    base = await _odd_upstream(serve_app, [orjson.dumps(odd)], "application/json")
    stub = await start_router(_odd_catalog(base), passthrough=passthrough)
    res = await route(stub, chat("hello there", model="test/odd"))
    assert res.order == ["head", "chunk", "usage"]
    assert orjson.loads(res.body)["choices"][0]["message"]["content"] == "one two three"
    assert res.usage.usage_estimated
    assert res.usage.input_tokens > 0
    assert res.usage.output_tokens > 0


@pytest.mark.parametrize("passthrough", [True, False])
@pytest.mark.parametrize(
    "answer",
    [
        {**_GOOD_ANSWER, "choices": ["not an object"]},
        {**_GOOD_ANSWER, "choices": [{"index": 0, "message": "text", "finish_reason": "stop"}]},
        {**_GOOD_ANSWER, "choices": [{"index": 0, "message": {"tool_calls": [7]}, "finish_reason": "stop"}]},
    ],
    ids=["choice", "message", "tool-call"],
)
async def test_a_malformed_upstream_answer_is_an_upstream_error_with_its_usage(
    start_router: RouterFactory, serve_app: ServeApp, passthrough: bool, answer: dict[str, Any]
) -> None:
    base = await _odd_upstream(serve_app, [orjson.dumps(answer)], "application/json")
    stub = await start_router(_odd_catalog(base), passthrough=passthrough, max_attempts=1)
    res = await route(stub, chat("hello there", model="test/odd"))
    assert res.order == ["usage", "error"]
    assert res.errors[0].kind == router_pb2.ERROR_KIND_UPSTREAM_ERROR
    assert "invalid answer" in res.errors[0].message
    assert res.usage.deployment == "odd/m"
    assert res.usage.usage_estimated


@pytest.mark.parametrize("passthrough", [True, False])
async def test_a_malformed_stream_chunk_ends_the_stream_with_an_error_and_its_usage(
    start_router: RouterFactory, serve_app: ServeApp, passthrough: bool
) -> None:
    first = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    stream = b"".join(
        b"data: " + orjson.dumps(chunk) + b"\n\n"
        for chunk in (
            {**first, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "one"}}]},
            {**first, "choices": [{"index": 0, "delta": {"tool_calls": [{"index": [0], "function": 5}]}}]},
        )
    )
    base = await _odd_upstream(serve_app, [stream + b"data: [DONE]\n\n"], "text/event-stream")
    stub = await start_router(_odd_catalog(base), passthrough=passthrough)
    res = await route(stub, chat("hello there", model="test/odd", stream=True))
    assert res.order[0] == "head"
    assert res.order[-2:] == ["usage", "error"]
    assert res.errors[0].kind == router_pb2.ERROR_KIND_UPSTREAM_ERROR
    assert res.usage.finish_reason == "error"
