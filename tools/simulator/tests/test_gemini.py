from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest

from crossmodel_protocols.canonical import (
    ErrorKind,
    FinishReason,
    Message,
    ReasoningConfig,
    ReasoningDelta,
    ReasoningPart,
    Request,
    StreamError,
    StreamEvent,
    StreamFinish,
    TextDelta,
    TextPart,
    Tool,
    ToolCallPart,
    ToolResultPart,
    UsageUpdate,
)
from crossmodel_protocols.gemini import GeminiProvider
from crossmodel_simulator.gemini import expected_generation
from crossmodel_simulator.responses import THINKING_PREFIX, signature_for

KEY = {"x-goog-api-key": "AIza-test"}


async def post(base: str, path: str, body: Any, headers: dict[str, str] = KEY) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(base + path, data=orjson.dumps(body), headers=headers) as r,
    ):
        return r.status, await r.read()


def body(text: str, **gen: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
    if gen:
        out["generationConfig"] = gen
    return out


async def test_generate_content_text_and_usage(simulator_url: str) -> None:
    b = body("hello there [sim:cached=2]")
    status, raw = await post(simulator_url, "/gemini/v1beta/models/gemini-2.5-flash:generateContent", b)
    assert status == 200
    data = orjson.loads(raw)
    exp = expected_generation(b)
    cand = data["candidates"][0]
    assert cand["content"] == {"parts": [{"text": "You said: hello there"}], "role": "model"}
    assert cand["finishReason"] == "STOP"
    assert data["modelVersion"] == "gemini-2.5-flash"
    assert data["usageMetadata"]["promptTokenCount"] == exp.prompt_tokens == 3 + 4 + 3
    assert data["usageMetadata"]["candidatesTokenCount"] == 4
    assert data["usageMetadata"]["cachedContentTokenCount"] == 2


async def test_thoughts_and_function_calls(simulator_url: str) -> None:
    b = body("weather [sim:thinking] [sim:tool=get_weather]", thinkingConfig={"includeThoughts": True})
    status, raw = await post(simulator_url, "/gemini/v1beta/models/gemini-2.5-pro:generateContent", b)
    assert status == 200
    parts = orjson.loads(raw)["candidates"][0]["content"]["parts"]
    assert parts[0] == {"text": THINKING_PREFIX + "weather", "thought": True}
    assert parts[1] == {"text": "You said: weather"}
    assert parts[2]["functionCall"] == {"name": "get_weather", "args": {"query": "weather"}}
    assert parts[2]["thoughtSignature"] == signature_for(THINKING_PREFIX + "weather")
    usage = orjson.loads(raw)["usageMetadata"]
    assert usage["thoughtsTokenCount"] == 3  # "Thinking about: weather"
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"] + 3


async def test_fields_are_read_by_their_proto_names_too(simulator_url: str) -> None:
    """Google parses requests with protobuf's JSON parser, which takes `generation_config` as
    well as `generationConfig`; its own SDK sends `include_thoughts` that way."""
    b = {
        "system_instruction": {"parts": [{"text": "be brief"}]},
        "contents": [{"role": "user", "parts": [{"text": "a long answer [sim:thinking] [sim:words=40]"}]}],
        "generation_config": {"max_output_tokens": 3, "thinking_config": {"include_thoughts": True}},
    }
    camel = {
        "systemInstruction": b["system_instruction"],
        "contents": b["contents"],
        "generationConfig": {"maxOutputTokens": 3, "thinkingConfig": {"includeThoughts": True}},
    }
    assert expected_generation(b) == expected_generation(camel)
    status, raw = await post(simulator_url, "/gemini/v1/models/gemini-2.5-pro:generateContent", b)
    assert status == 200
    cand = orjson.loads(raw)["candidates"][0]
    assert cand["content"]["parts"][0]["thought"] is True
    assert cand["finishReason"] == "MAX_TOKENS"
    assert orjson.loads(raw)["usageMetadata"]["candidatesTokenCount"] == 3
    assert (
        expected_generation(b).prompt_tokens > expected_generation({"contents": b["contents"]}).prompt_tokens
    )  # the system instruction counts


async def test_thoughts_hidden_unless_asked(simulator_url: str) -> None:
    _, raw = await post(
        simulator_url, "/gemini/v1beta/models/gemini-2.5-pro:generateContent", body("x [sim:thinking]")
    )
    parts = orjson.loads(raw)["candidates"][0]["content"]["parts"]
    assert all(not p.get("thought") for p in parts)
    # "Thinking about: x"
    assert orjson.loads(raw)["usageMetadata"]["thoughtsTokenCount"] == 3


@pytest.mark.parametrize(
    ("code", "rpc"), [(429, "RESOURCE_EXHAUSTED"), (500, "INTERNAL"), (503, "UNAVAILABLE")]
)
async def test_failures_before_the_first_byte(simulator_url: str, code: int, rpc: str) -> None:
    status, raw = await post(
        simulator_url, "/gemini/v1beta/models/m:generateContent", body(f"x [sim:status={code}]")
    )
    assert status == code
    assert orjson.loads(raw)["error"]["status"] == rpc


async def test_missing_key_is_permission_denied(simulator_url: str) -> None:
    status, raw = await post(simulator_url, "/gemini/v1beta/models/m:generateContent", body("x"), headers={})
    assert status == 403
    assert orjson.loads(raw)["error"]["status"] == "PERMISSION_DENIED"


@pytest.mark.parametrize(
    ("model", "b", "message"),
    [
        ("gemini-2.5-flash", {"contents": []}, "contents is not specified"),
        (
            "gemini-2.5-flash",
            {"contents": [{"role": "user", "parts": [{"text": "hi"}, {"text": ""}]}]},
            "contents[0].parts[1].data: required oneof field 'data'",
        ),
        (
            "gemini-2.5-flash",
            {**body("hi"), "systemInstruction": {"parts": [{"text": ""}]}},
            "system_instruction.parts[0].data: required oneof field 'data'",
        ),
        ("gemini-2.5-flash", {"contents": [{"role": "user", "parts": []}]}, "must not be empty"),
        ("gemini-2.5-pro", body("hi", thinkingConfig={"thinkingBudget": 0}), "only works in thinking mode"),
        ("gemini-2.5-pro", body("hi", thinkingConfig={"thinkingBudget": 64}), "out of range"),
        ("gemini-2.5-flash", body("hi", thinkingConfig={"thinkingBudget": 31999}), "out of range"),
        ("gemini-2.5-flash-lite", body("hi", thinkingConfig={"thinkingBudget": 100}), "out of range"),
    ],
)
async def test_what_google_refuses_is_refused(simulator_url: str, model: str, b: Any, message: str) -> None:
    status, raw = await post(simulator_url, f"/gemini/v1beta/models/{model}:generateContent", b)
    assert status == 400
    err = orjson.loads(raw)["error"]
    assert err["status"] == "INVALID_ARGUMENT"
    assert message in err["message"]


@pytest.mark.parametrize(
    ("model", "budget"),
    [
        ("gemini-2.5-flash", 0),
        ("gemini-2.5-flash", 24576),
        ("gemini-2.5-flash-lite", 0),
        ("gemini-2.5-pro", 128),
        ("gemini-2.5-pro", -1),
    ],
)
async def test_budgets_in_range_are_taken(simulator_url: str, model: str, budget: int) -> None:
    b = body("hi", thinkingConfig={"thinkingBudget": budget})
    status, _ = await post(simulator_url, f"/gemini/v1beta/models/{model}:generateContent", b)
    assert status == 200


# ------------------------------------------------------- the Gemini provider codec against the simulator


async def run_codec(base: str, req: Request, model: str = "gemini-2.5-flash") -> tuple[int, bytes]:
    up = GeminiProvider().build_request(req, model, "AIza-test")
    async with (
        aiohttp.ClientSession() as http,
        http.post(base + "/gemini" + up.path, data=up.body, headers=up.headers) as r,
    ):
        return r.status, await r.read()


def events_of(wire: bytes) -> list[StreamEvent]:
    parser = GeminiProvider().stream_parser()
    out: list[StreamEvent] = []
    for i in range(0, len(wire), 37):
        out.extend(parser.feed(wire[i : i + 37]))
    return out + parser.close()


async def test_codec_stream_round_trip_with_thoughts_tools_and_usage(simulator_url: str) -> None:
    req = Request(
        model="google/gemini-2.5-flash",
        messages=[Message("user", [TextPart("weather in Paris [sim:thinking] [sim:tool=get_weather]")])],
        tools=[Tool(name="get_weather", parameters={"type": "object"})],
        reasoning=ReasoningConfig(effort="low"),
        stream=True,
    )
    status, wire = await run_codec(simulator_url, req)
    assert status == 200
    events = events_of(wire)
    exp = expected_generation(orjson.loads(GeminiProvider().build_request(req, "gemini-2.5-flash", "k").body))
    assert "".join(e.text for e in events if isinstance(e, ReasoningDelta)) == exp.thinking
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == exp.text
    calls = [e.part for e in events if e.kind == "block_start" and isinstance(e.part, ToolCallPart)]  # type: ignore[union-attr]
    assert [c.name for c in calls] == ["get_weather"]
    assert [e for e in events if isinstance(e, StreamFinish)] == [StreamFinish(FinishReason.TOOL_USE)]
    usage = [e for e in events if isinstance(e, UsageUpdate)][-1].usage
    assert usage.input_tokens == exp.prompt_tokens
    assert usage.output_tokens == exp.output_tokens
    assert usage.reasoning_tokens == exp.thinking_tokens


async def test_codec_next_turn_sends_the_signature_back(simulator_url: str) -> None:
    first = Request(
        model="g",
        messages=[Message("user", [TextPart("weather [sim:thinking] [sim:tool=get_weather]")])],
        tools=[Tool(name="get_weather")],
        reasoning=ReasoningConfig(effort="high"),
    )
    status, raw = await run_codec(simulator_url, first, "gemini-3-pro-preview")
    assert status == 200
    resp = GeminiProvider().parse_response(raw)
    sig = [p for p in resp.content if isinstance(p, ReasoningPart) and p.signature]
    assert sig
    call = next(p for p in resp.content if isinstance(p, ToolCallPart))
    second = Request(
        model="g",
        messages=[
            *first.messages,
            Message("assistant", resp.content),
            Message("tool", [ToolResultPart(call.id, [TextPart("sunny")])]),
        ],
        tools=first.tools,
    )
    up = GeminiProvider().build_request(second, "gemini-3-pro-preview", "k")
    sent = orjson.loads(up.body)
    model_parts = sent["contents"][1]["parts"]
    signed = [p for p in model_parts if "functionCall" in p]
    assert signed[0]["thoughtSignature"] == signature_for(THINKING_PREFIX + "weather")
    assert sent["contents"][2]["parts"][0]["functionResponse"] == {
        "name": "get_weather",
        "response": {"output": "sunny"},
    }
    status, _ = await run_codec(simulator_url, second, "gemini-3-pro-preview")
    assert status == 200


async def test_codec_sees_an_error_after_the_first_byte(simulator_url: str) -> None:
    req = Request(model="g", messages=[Message("user", [TextPart("a b c [sim:error_after=2]")])], stream=True)
    status, wire = await run_codec(simulator_url, req)
    assert status == 200
    events = events_of(wire)
    assert len([e for e in events if isinstance(e, TextDelta)]) == 2
    assert isinstance(events[-1], StreamError)
    assert events[-1].error_kind is ErrorKind.UPSTREAM_OVERLOADED


async def test_codec_maps_a_rate_limit(simulator_url: str) -> None:
    req = Request(
        model="g", messages=[Message("user", [TextPart("x [sim:status=429] [sim:retry_after_ms=2500]")])]
    )
    status, raw = await run_codec(simulator_url, req)
    err = GeminiProvider().parse_error(status, raw, {})
    assert err.kind is ErrorKind.UPSTREAM_RATE_LIMITED
    assert err.retry_after_ms == 2500


def test_a_turn_mixing_function_responses_and_text_is_a_tool_message_then_a_user_message() -> None:
    from crossmodel_simulator.gemini import chat_view

    body = {
        "contents": [
            {"role": "user", "parts": [{"text": "weather?"}]},
            {
                "role": "model",
                "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}},
                    {"text": "Thanks"},
                ],
            },
        ]
    }
    view, last_user = chat_view(body)
    assert [m["role"] for m in view["messages"]] == ["user", "assistant", "tool", "user"]
    assert last_user == "Thanks"
