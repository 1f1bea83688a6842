"""Route with a Responses client (OpenAI natively, Gemini, a chat vendor) and with a chat client
in front of Gemini: a real gRPC server, the real upstream client and the simulator."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest

from crossmodel.router.v1 import router_pb2, router_pb2_grpc
from crossmodel_protocols.sse import SSEDecoder
from crossmodel_router.adapters.catalog_file import load_catalog
from crossmodel_router.domain.catalog import Catalog
from crossmodel_simulator.gemini import expected_generation
from crossmodel_simulator.responses import THINKING_PREFIX, expected_response
from crossmodel_simulator.script import expected_completion

RouterFactory = Callable[..., Awaitable[router_pb2_grpc.RouterServiceStub]]
RESPONSES = router_pb2.PROTOCOL_OPENAI_RESPONSES
CHAT = router_pb2.PROTOCOL_OPENAI_CHAT


@pytest.fixture
def catalog(simulator_url: str) -> Catalog:
    env = {
        "CROSSMODEL_ROUTER_PROVIDER_OPENAI_BASE_URL": simulator_url + "/openai/v1",
        "CROSSMODEL_ROUTER_PROVIDER_OPENAI_API_KEY": "sk-sim",
        "CROSSMODEL_ROUTER_PROVIDER_GEMINI_BASE_URL": simulator_url + "/gemini",
        "CROSSMODEL_ROUTER_PROVIDER_GEMINI_API_KEY": "AIza-sim",
        "CROSSMODEL_ROUTER_PROVIDER_DEEPSEEK_BASE_URL": simulator_url + "/deepseek",
    }
    return load_catalog("", env)


async def route(
    stub: router_pb2_grpc.RouterServiceStub, protocol: int, body: dict[str, Any]
) -> dict[str, Any]:
    out: dict[str, Any] = {"chunks": [], "usage": [], "errors": [], "heads": []}
    req = router_pb2.RouteRequest(request_id="req_test", protocol=protocol, body=orjson.dumps(body))
    async for frame in stub.Route(req, timeout=20):
        kind = frame.WhichOneof("frame")
        if kind == "chunk":
            out["chunks"].append(frame.chunk)
        elif kind == "usage":
            out["usage"].append(frame.usage)
        elif kind == "error":
            out["errors"].append(frame.error)
        elif kind == "head":
            out["heads"].append(frame.head)
    return out


def events(chunks: list[bytes]) -> list[dict[str, Any]]:
    dec = SSEDecoder()
    data = b"".join(chunks)
    return [orjson.loads(e.data) for e in [*dec.feed(data), *dec.flush()]]


async def test_responses_client_reaches_openai_natively(
    start_router: RouterFactory, catalog: Catalog
) -> None:
    stub = await start_router(catalog)
    body = {
        "model": "openai/gpt-4o-mini",
        "input": "weather in Paris [sim:tool=get_weather] [sim:cached=2]",
        "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
        "stream": True,
    }
    res = await route(stub, RESPONSES, body)
    assert res["errors"] == []
    evs = events(res["chunks"])
    assert [e["sequence_number"] for e in evs] == list(range(len(evs)))
    final = evs[-1]["response"]
    assert evs[-1]["type"] == "response.completed"
    # The simulator's own Responses ids came through: the answer really came from /responses.
    assert final["id"].startswith("resp_")
    assert [o["type"] for o in final["output"]] == ["message", "function_call"]
    assert final["model"] == "openai/gpt-4o-mini"
    # No `store` from the client: OpenAI's default applies (it stored the response) and says so.
    assert final["store"] is True
    exp = expected_response({**body, "model": "gpt-4o-mini"})
    u = res["usage"][-1]
    assert (u.provider, u.upstream_model) == ("openai", "gpt-4o-mini")
    assert (u.input_tokens, u.output_tokens, u.cached_input_tokens) == (
        exp.prompt_tokens,
        exp.output_tokens,
        2,
    )


async def test_responses_client_reaches_gemini_with_thoughts_and_tools(
    start_router: RouterFactory, catalog: Catalog
) -> None:
    stub = await start_router(catalog)
    body = {
        "model": "google/gemini-2.5-flash",
        "instructions": "Be brief.",
        "input": [{"role": "user", "content": "weather in Paris [sim:thinking] [sim:tool=get_weather]"}],
        "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
        "reasoning": {"effort": "low", "summary": "auto"},
        "stream": True,
    }
    res = await route(stub, RESPONSES, body)
    assert res["errors"] == []
    evs = events(res["chunks"])
    assert evs[-1]["type"] == "response.completed"
    final = evs[-1]["response"]
    assert [o["type"] for o in final["output"]] == ["reasoning", "message", "function_call"]
    assert final["output"][0]["summary"][0]["text"] == THINKING_PREFIX + "weather in Paris"
    call = final["output"][2]
    assert (call["name"], orjson.loads(call["arguments"])) == ("get_weather", {"query": "weather in Paris"})
    u = res["usage"][-1]
    assert (u.provider, u.upstream_model) == ("gemini", "gemini-2.5-flash")
    gemini_view = {
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [{"role": "user", "parts": [{"text": body["input"][0]["content"]}]}],
    }
    exp = expected_generation(gemini_view)
    assert (u.input_tokens, u.output_tokens, u.reasoning_tokens) == (
        exp.prompt_tokens,
        exp.output_tokens,
        exp.thinking_tokens,
    )


async def test_chat_client_reaches_gemini_with_tool_calls(
    start_router: RouterFactory, catalog: Catalog
) -> None:
    stub = await start_router(catalog)
    body = {
        "model": "google/gemini-2.5-flash",
        "messages": [{"role": "user", "content": 'weather [sim:tool=get_weather:{"city":"Paris"}]'}],
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
        ],
    }
    res = await route(stub, CHAT, body)
    assert res["errors"] == []
    answer = orjson.loads(b"".join(res["chunks"]))
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city":"Paris"}',
    }
    assert choice["message"]["content"] == "You said: weather"


async def test_responses_client_reaches_a_chat_vendor(start_router: RouterFactory, catalog: Catalog) -> None:
    stub = await start_router(catalog)
    body = {"model": "deepseek/deepseek-v4-pro", "input": "hello there", "stream": True}
    res = await route(stub, RESPONSES, body)
    assert res["errors"] == []
    evs = events(res["chunks"])
    final = evs[-1]["response"]
    exp = expected_completion({"messages": [{"role": "user", "content": "hello there"}]})
    assert evs[-1]["type"] == "response.completed"
    assert final["output"][0]["content"][0]["text"] == exp.text
    assert final["usage"]["input_tokens"] == exp.prompt_tokens


async def test_gemini_rate_limit_is_a_rate_limit_error(start_router: RouterFactory, catalog: Catalog) -> None:
    stub = await start_router(catalog, max_attempts=1)
    body = {"model": "google/gemini-2.5-flash", "input": "x [sim:status=429] [sim:retry_after_ms=3000]"}
    res = await route(stub, RESPONSES, body)
    assert res["chunks"] == []
    err = res["errors"][-1]
    assert err.kind == router_pb2.ERROR_KIND_UPSTREAM_RATE_LIMITED
    assert err.retry_after_ms == 3000


async def test_responses_validation_error_names_the_field(
    start_router: RouterFactory, catalog: Catalog
) -> None:
    stub = await start_router(catalog)
    res = await route(stub, RESPONSES, {"model": "openai/gpt-4o-mini", "input": [{"type": "bogus"}]})
    err = res["errors"][-1]
    assert err.kind == router_pb2.ERROR_KIND_INVALID_REQUEST
    assert err.param == "input[0].type"


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "deepseek/deepseek-v4-pro"])
async def test_an_output_limit_above_the_model_names_max_output_tokens(
    start_router: RouterFactory, catalog: Catalog, model: str
) -> None:
    """A Responses client never sends `max_tokens`: the refusal names the field it did send."""
    stub = await start_router(catalog)
    res = await route(stub, RESPONSES, {"model": model, "input": "x", "max_output_tokens": 10_000_000})
    assert res["chunks"] == []
    err = res["errors"][-1]
    assert err.kind == router_pb2.ERROR_KIND_INVALID_REQUEST
    assert (err.param, err.code) == ("max_output_tokens", "invalid_value")
    assert err.message.startswith("max_output_tokens is too large: 10000000.")


async def test_a_request_gemini_cannot_express_is_a_400_not_a_crash(
    start_router: RouterFactory, catalog: Catalog
) -> None:
    """A tool result whose call is not in the history: Gemini needs the function's name, so
    the provider codec refuses the request; the caller gets INVALID_REQUEST, not a failed RPC."""
    stub = await start_router(catalog)
    body = {
        "model": "google/gemini-2.5-flash",
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "tool", "tool_call_id": "call_unknown", "content": "sunny"},
            {"role": "user", "content": "thanks"},
        ],
    }
    out = await route(stub, CHAT, body)
    assert out["chunks"] == []
    assert [e.kind for e in out["errors"]] == [router_pb2.ERROR_KIND_INVALID_REQUEST]
    assert "call_unknown" in out["errors"][0].message


@pytest.mark.parametrize("model", ["deepseek/deepseek-v4-pro", "google/gemini-2.5-flash"])
async def test_an_answer_without_usage_shows_and_bills_the_estimate(
    start_router: RouterFactory, catalog: Catalog, model: str
) -> None:
    """No usage from the vendor: the non-stream answer shows the estimate that is billed, as a
    stream does, never zeros."""
    stub = await start_router(catalog)
    text = "hello there friend [sim:no_usage] [sim:tool=get_weather]"
    tools = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]
    streamed: dict[str, Any] = {}
    for stream in (False, True):
        res = await route(stub, RESPONSES, {"model": model, "input": text, "tools": tools, "stream": stream})
        assert res["errors"] == []
        usage = res["usage"][-1]
        assert usage.usage_estimated
        assert usage.input_tokens > 0
        assert usage.output_tokens > 0
        assert usage.cost_micros > 0
        answer = events(res["chunks"])[-1]["response"] if stream else orjson.loads(b"".join(res["chunks"]))
        shown = answer["usage"]
        assert (shown["input_tokens"], shown["output_tokens"]) == (usage.input_tokens, usage.output_tokens)
        streamed[str(stream)] = shown
    assert streamed["False"] == streamed["True"]
