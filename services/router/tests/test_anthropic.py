"""Anthropic through the router, in-process: a real gRPC RouterService, the real upstream client
and the provider simulator's Anthropic wire format. Both directions: OpenAI-chat clients on
Claude models, and Anthropic-Messages clients on Claude and on OpenAI models."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest

from crossmodel.router.v1 import router_pb2, router_pb2_grpc
from crossmodel_protocols.anthropic import AnthropicStreamParser
from crossmodel_protocols.canonical import (
    BlockStart,
    ReasoningDelta,
    StreamEvent,
    StreamFinish,
    TextDelta,
    ToolArgumentsDelta,
    ToolCallPart,
)
from crossmodel_protocols.sse import SSEDecoder
from crossmodel_router.adapters.catalog_file import load_catalog
from crossmodel_router.domain.catalog import Catalog
from crossmodel_simulator.anthropic import expected_message, signature_for
from crossmodel_simulator.script import expected_completion

RouterFactory = Callable[..., Awaitable[router_pb2_grpc.RouterServiceStub]]
CLAUDE = "anthropic/claude-sonnet-4.6"
HEADERS = {"anthropic-version": "2023-06-01"}


@pytest.fixture
def catalog(simulator_url: str) -> Catalog:
    return load_catalog(
        "",
        {
            "CROSSMODEL_ROUTER_PROVIDER_ANTHROPIC_BASE_URL": simulator_url + "/anthropic",
            "CROSSMODEL_ROUTER_PROVIDER_ANTHROPIC_API_KEY": "sk-ant-sim",
            "CROSSMODEL_ROUTER_PROVIDER_OPENAI_BASE_URL": simulator_url + "/openai/v1",
        },
    )


@dataclass
class Result:
    heads: list[router_pb2.Head] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    usages: list[router_pb2.Usage] = field(default_factory=list)
    errors: list[router_pb2.RouteError] = field(default_factory=list)
    order: list[str] = field(default_factory=list)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    @property
    def usage(self) -> router_pb2.Usage:
        return self.usages[-1]


async def route(
    stub: router_pb2_grpc.RouterServiceStub,
    protocol: int,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> Result:
    out = Result()
    req = router_pb2.RouteRequest(
        request_id="req_a", protocol=protocol, body=orjson.dumps(body), headers=headers or {}
    )
    async for frame in stub.Route(req, timeout=20):
        kind = frame.WhichOneof("frame") or ""
        out.order.append(kind)
        if kind == "head":
            out.heads.append(frame.head)
        elif kind == "chunk":
            out.chunks.append(frame.chunk)
        elif kind == "usage":
            out.usages.append(frame.usage)
        elif kind == "error":
            out.errors.append(frame.error)
    return out


def sse(body: bytes) -> list[tuple[str | None, dict[str, Any]]]:
    dec = SSEDecoder()
    return [(e.event, orjson.loads(e.data)) for e in [*dec.feed(body), *dec.flush()] if e.data != b"[DONE]"]


def anthropic_body(text: str, *, model: str = CLAUDE, **extra: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 1024, "messages": [{"role": "user", "content": text}], **extra}


# ------------------------------------------------------------------------------ OpenAI chat clients


async def test_openai_chat_client_on_claude_non_stream(start_router: RouterFactory, catalog: Catalog) -> None:
    stub = await start_router(catalog)
    body = {
        "model": CLAUDE,
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "hello there [sim:cached=2]"},
        ],
        "safety_identifier": "end-user-9",
    }
    res = await route(stub, router_pb2.PROTOCOL_OPENAI_CHAT, body)
    assert res.order == ["head", "chunk", "usage"]
    answer = orjson.loads(res.body)
    # What the simulator received, in Anthropic's shape.
    sim_body = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 4096,
        "system": "Be terse.",
        "messages": [{"role": "user", "content": "hello there [sim:cached=2]"}],
    }
    exp = expected_message(sim_body)
    assert answer["object"] == "chat.completion"
    assert answer["model"] == CLAUDE
    assert answer["choices"][0]["message"]["content"] == exp.text == "You said: hello there"
    assert answer["choices"][0]["finish_reason"] == "stop"
    # The OpenAI client sees the whole prompt, cache reads included.
    assert answer["usage"]["prompt_tokens"] == exp.prompt_tokens
    assert answer["usage"]["prompt_tokens_details"]["cached_tokens"] == 2
    u = res.usage
    assert (u.provider, u.upstream_model, u.end_user) == ("anthropic", "claude-sonnet-4-6", "end-user-9")
    assert (u.input_tokens, u.cached_input_tokens, u.output_tokens) == (
        exp.prompt_tokens,
        2,
        exp.output_tokens,
    )
    assert not u.usage_estimated


async def test_openai_chat_client_on_claude_stream_keeps_thinking_and_tool_arguments(
    start_router: RouterFactory, catalog: Catalog
) -> None:
    stub = await start_router(catalog)
    text = 'weather? [sim:thinking] [sim:tool=get_weather:{"city":"Paris","unit":"celsius"}]'
    body = {
        "model": CLAUDE,
        "messages": [{"role": "user", "content": text}],
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
        ],
        "reasoning_effort": "low",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    res = await route(stub, router_pb2.PROTOCOL_OPENAI_CHAT, body)
    assert res.order[0] == "head"
    assert res.order[-1] == "usage"
    assert not res.errors
    chunks = [c for _, c in sse(res.body)]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0]["role"] == "assistant"
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "Thinking about: weather?"
    assert "".join(d.get("content") or "" for d in deltas) == "You said: weather?"
    calls = [tc for d in deltas for tc in d.get("tool_calls", [])]
    assert calls[0]["function"]["name"] == "get_weather"
    assert calls[0]["id"].startswith("toolu_")
    assert orjson.loads("".join(tc["function"]["arguments"] for tc in calls)) == {
        "city": "Paris",
        "unit": "celsius",
    }
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
    assert chunks[-1]["choices"] == []
    thinking_words = 3  # "Thinking about: weather?"
    assert chunks[-1]["usage"]["completion_tokens_details"]["reasoning_tokens"] == thinking_words
    assert res.usage.reasoning_tokens == thinking_words
    assert res.usage.output_tokens == chunks[-1]["usage"]["completion_tokens"]


# ------------------------------------------------------------------------------ Anthropic clients


def decode(body: bytes) -> list[StreamEvent]:
    p = AnthropicStreamParser()
    return p.feed(body) + p.close()


async def test_anthropic_client_on_claude_stream(start_router: RouterFactory, catalog: Catalog) -> None:
    stub = await start_router(catalog)
    body = anthropic_body(
        "plan it [sim:thinking] [sim:tool=Read] [sim:cached=3] [sim:cache_write=1]",
        stream=True,
        thinking={"type": "enabled", "budget_tokens": 1024},
        tools=[{"name": "Read", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}],
        system=[{"type": "text", "text": "You are a CLI.", "cache_control": {"type": "ephemeral"}}],
        metadata={"user_id": "user_42"},
    )
    res = await route(stub, router_pb2.PROTOCOL_ANTHROPIC_MESSAGES, body, HEADERS)
    assert res.heads[0].content_type == "text/event-stream"
    assert not res.errors
    events = sse(res.body)
    assert all(name == data["type"] for name, data in events)
    assert [n for n, _ in events][:3] == ["message_start", "content_block_start", "ping"]
    assert [n for n, _ in events][-2:] == ["message_delta", "message_stop"]
    start = events[0][1]["message"]
    assert start["model"] == CLAUDE
    assert start["id"].startswith("msg_")
    sim_body = dict(body, model="claude-sonnet-4-6")
    exp = expected_message(sim_body)
    # Anthropic clients see Anthropic's split: uncached input apart from cache reads/writes.
    assert start["usage"] == {
        "input_tokens": exp.input_tokens,
        "cache_creation_input_tokens": 1,
        "cache_read_input_tokens": 3,
        "output_tokens": 1,
    }
    canonical = decode(res.body)
    sig = [e.signature for e in canonical if isinstance(e, ReasoningDelta) and e.signature]
    assert sig == [signature_for("Thinking about: plan it")]
    assert "".join(e.text for e in canonical if isinstance(e, TextDelta)) == "You said: plan it"
    tool = next(e.part for e in canonical if isinstance(e, BlockStart) and isinstance(e.part, ToolCallPart))
    assert tool.name == "Read"
    assert (
        "".join(e.arguments for e in canonical if isinstance(e, ToolArgumentsDelta)) == '{"query":"plan it"}'
    )
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    assert events[-2][1]["usage"]["output_tokens"] == exp.output_tokens
    u = res.usage
    assert (u.provider, u.end_user) == ("anthropic", "user_42")
    assert (u.input_tokens, u.cached_input_tokens, u.cache_write_tokens) == (exp.prompt_tokens, 3, 1)
    assert (u.output_tokens, u.reasoning_tokens) == (exp.output_tokens, exp.thinking_tokens)


async def test_anthropic_client_on_claude_non_stream(start_router: RouterFactory, catalog: Catalog) -> None:
    stub = await start_router(catalog)
    body = anthropic_body("one two three four", stop_sequences=["three"])
    res = await route(stub, router_pb2.PROTOCOL_ANTHROPIC_MESSAGES, body, HEADERS)
    msg = orjson.loads(res.body)
    assert msg["type"] == "message"
    assert msg["model"] == CLAUDE
    assert msg["content"] == [{"type": "text", "text": "You said: one two"}]
    assert (msg["stop_reason"], msg["stop_sequence"]) == ("stop_sequence", "three")
    exp = expected_message(dict(body, model="claude-sonnet-4-6"))
    assert msg["usage"]["input_tokens"] == exp.input_tokens
    assert msg["usage"]["output_tokens"] == exp.output_tokens


async def test_anthropic_client_on_an_openai_model(start_router: RouterFactory, catalog: Catalog) -> None:
    stub = await start_router(catalog)
    body = anthropic_body("hi there [sim:cached=2]", model="openai/gpt-4o-mini", stream=True)
    res = await route(stub, router_pb2.PROTOCOL_ANTHROPIC_MESSAGES, body, HEADERS)
    events = sse(res.body)
    names = [n for n, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    exp = expected_completion({"messages": body["messages"], "max_tokens": 1024})
    assert text == exp.text
    final = events[-2][1]
    assert final["delta"]["stop_reason"] == "end_turn"
    # OpenAI's prompt_tokens include cached ones; the Anthropic client sees them split out.
    assert final["usage"]["input_tokens"] == exp.prompt_tokens - 2
    assert final["usage"]["cache_read_input_tokens"] == 2
    assert final["usage"]["output_tokens"] == exp.completion_tokens
    assert res.usage.provider == "openai"
    assert res.usage.input_tokens == exp.prompt_tokens
    assert any(isinstance(e, StreamFinish) for e in decode(res.body))


@pytest.mark.parametrize(("model", "effort"), [("openai/gpt-4o-mini", None), ("openai/o4-mini", "medium")])
async def test_claude_codes_thinking_reaches_openai_only_as_a_reasoning_models_effort(
    start_router: RouterFactory, catalog: Catalog, simulator_url: str, model: str, effort: str | None
) -> None:
    stub = await start_router(catalog)
    tag = f"effort-{secrets.token_hex(5)}"
    body = anthropic_body(tag, model=model, thinking={"type": "enabled", "budget_tokens": 8000})
    res = await route(stub, router_pb2.PROTOCOL_ANTHROPIC_MESSAGES, body, HEADERS)
    assert not res.errors
    async with (
        aiohttp.ClientSession() as s,
        s.get(simulator_url + "/_sim/requests", params={"contains": tag}) as r,
    ):
        (sent,) = await r.json()
    assert sent["body"].get("reasoning_effort") == effort


async def test_an_openai_client_without_a_limit_gives_claude_the_models_limit(
    start_router: RouterFactory, catalog: Catalog, simulator_url: str
) -> None:
    """Not a small fixed default that cuts the answer short where other vendors finish it."""
    stub = await start_router(catalog)
    tag = f"limit-{secrets.token_hex(5)}"
    body = {"model": CLAUDE, "messages": [{"role": "user", "content": tag}], "reasoning_effort": "medium"}
    res = await route(stub, router_pb2.PROTOCOL_OPENAI_CHAT, body)
    assert not res.errors
    async with (
        aiohttp.ClientSession() as s,
        s.get(simulator_url + "/_sim/requests", params={"contains": tag}) as r,
    ):
        (sent,) = await r.json()
    assert sent["body"]["max_tokens"] == catalog.models[CLAUDE].max_output_tokens > 4096
    assert sent["body"]["thinking"] == {"type": "enabled", "budget_tokens": 8192}


async def test_anthropic_client_invalid_body_names_the_field(
    start_router: RouterFactory, catalog: Catalog
) -> None:
    stub = await start_router(catalog)
    res = await route(
        stub,
        router_pb2.PROTOCOL_ANTHROPIC_MESSAGES,
        {"model": CLAUDE, "messages": [{"role": "user", "content": "x"}]},
    )
    assert res.order == ["error"]
    assert res.errors[0].kind == router_pb2.ERROR_KIND_INVALID_REQUEST
    assert res.errors[0].param == "max_tokens"


async def test_anthropic_max_tokens_above_the_model_names_max_tokens(
    start_router: RouterFactory, catalog: Catalog
) -> None:
    stub = await start_router(catalog)
    body = {"model": CLAUDE, "max_tokens": 10_000_000, "messages": [{"role": "user", "content": "x"}]}
    res = await route(stub, router_pb2.PROTOCOL_ANTHROPIC_MESSAGES, body)
    assert res.order == ["error"]
    assert res.errors[0].param == "max_tokens"
    assert res.errors[0].message.startswith("max_tokens is too large: 10000000.")


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (429, router_pb2.ERROR_KIND_UPSTREAM_RATE_LIMITED),
        (529, router_pb2.ERROR_KIND_UPSTREAM_OVERLOADED),
        (500, router_pb2.ERROR_KIND_UPSTREAM_ERROR),
    ],
)
async def test_upstream_failures_before_the_first_byte(
    start_router: RouterFactory, catalog: Catalog, status: int, kind: int
) -> None:
    stub = await start_router(catalog, max_attempts=1)
    body = anthropic_body(f"x [sim:status={status}] [sim:retry_after_ms=3000]", stream=True)
    res = await route(stub, router_pb2.PROTOCOL_ANTHROPIC_MESSAGES, body, HEADERS)
    assert res.order == ["usage", "error"]
    err = res.errors[0]
    assert (err.kind, err.upstream_status) == (kind, status)
    assert err.retry_after_ms == (3000 if status in (429, 529) else 0)
    assert res.usage.provider == "anthropic"


async def test_error_event_mid_stream_ends_with_usage_then_error(
    start_router: RouterFactory, catalog: Catalog
) -> None:
    stub = await start_router(catalog)
    body = anthropic_body("[sim:words=6] [sim:error_after=2]", stream=True)
    res = await route(stub, router_pb2.PROTOCOL_ANTHROPIC_MESSAGES, body, HEADERS)
    assert res.order[0] == "head"
    assert res.order[-2:] == ["usage", "error"]
    events = sse(res.body)
    assert "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta") == "w1 w2"
    assert "message_stop" not in [n for n, _ in events]
    assert res.errors[0].message == "Overloaded"
    # The input counted up front by message_start is billed even though the stream failed.
    assert res.usage.input_tokens == expected_message(dict(body, model="claude-sonnet-4-6")).prompt_tokens


async def test_count_tokens_takes_an_anthropic_body_without_max_tokens(
    start_router: RouterFactory, catalog: Catalog
) -> None:
    """Anthropic's count_tokens body is a Messages body without `max_tokens`."""
    stub = await start_router(catalog)
    body = {
        "model": CLAUDE,
        "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "x" * 40}],
    }
    ANTHROPIC = router_pb2.PROTOCOL_ANTHROPIC_MESSAGES
    counted = await stub.CountTokens(
        router_pb2.CountTokensRequest(protocol=ANTHROPIC, body=orjson.dumps(body)), timeout=5
    )
    assert not counted.HasField("error"), counted.error
    # 3 priming + 2 parts x 4 + ceil((8 + 40) / 4) characters
    assert counted.input_tokens == 3 + 8 + 12
    bad = await stub.CountTokens(
        router_pb2.CountTokensRequest(protocol=ANTHROPIC, body=orjson.dumps({**body, "messages": "x"})),
        timeout=5,
    )
    assert bad.error.kind == router_pb2.ERROR_KIND_INVALID_REQUEST
    assert bad.error.param == "messages"
