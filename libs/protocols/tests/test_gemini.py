from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from crossmodel_protocols.anthropic import AnthropicIngress, AnthropicProvider
from crossmodel_protocols.canonical import (
    BlockStart,
    BlockStop,
    ErrorKind,
    FinishReason,
    ImagePart,
    InvalidRequest,
    Message,
    Protocol,
    ReasoningConfig,
    ReasoningDelta,
    ReasoningPart,
    Request,
    ResponseFormat,
    StreamError,
    StreamEvent,
    StreamFinish,
    StreamStart,
    SystemPart,
    TextDelta,
    TextPart,
    Tool,
    ToolArgumentsDelta,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
    Usage,
    UsageUpdate,
)
from crossmodel_protocols.gemini import SKIP_SIGNATURE, GeminiProvider, GeminiStreamParser, call_id
from crossmodel_protocols.openai_chat import ChatIngress
from crossmodel_protocols.openai_responses import ResponsesIngress

GOLDEN = Path(__file__).parent / "golden" / "gemini"
RID = "lzEwaJ7yA-m7xN8PsM2gsQk"


def golden(name: str) -> bytes:
    return (GOLDEN / name).read_bytes()


def feed_in_pieces(wire: bytes, size: int) -> list[StreamEvent]:
    parser = GeminiStreamParser()
    events: list[StreamEvent] = []
    for i in range(0, len(wire), size):
        events.extend(parser.feed(wire[i : i + size]))
    events.extend(parser.close())
    return events


def body_of(req: Request, model: str = "gemini-2.5-flash") -> dict[str, Any]:
    up = GeminiProvider().build_request(req, model, "AIza-test")
    parsed: dict[str, Any] = orjson.loads(up.body)
    return parsed


# ------------------------------------------------------------------------------ request


def test_request_path_headers_and_stream() -> None:
    req = Request(model="google/gemini-2.5-flash", messages=[Message("user", [TextPart("hi")])])
    up = GeminiProvider().build_request(req, "gemini-2.5-flash", "AIza-test")
    assert up.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert up.headers == {"content-type": "application/json", "x-goog-api-key": "AIza-test"}
    assert up.stream is False
    req.stream = True
    up = GeminiProvider().build_request(req, "models/gemini-2.5-flash", "AIza-test")
    assert up.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert up.stream is True
    assert orjson.loads(up.body) == {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


def test_full_request_mapping() -> None:
    req = Request(
        model="google/gemini-2.5-flash",
        system=[SystemPart("Be brief."), SystemPart("Use metric.", role="developer")],
        messages=[
            Message(
                "user",
                [
                    TextPart("Weather here?"),
                    ImagePart(data="iVBOR", media_type="image/png"),
                    ImagePart(url="https://x.test/a.jpeg?x=1"),
                ],
            ),
            Message(
                "assistant",
                [
                    ReasoningPart(
                        "Thinking.", provider=Protocol.ANTHROPIC_MESSAGES, signature="anthropic-sig"
                    ),
                    TextPart("Checking."),
                    ToolCallPart(id="call_a", name="get_weather", arguments='{"location":"Paris"}'),
                    ToolCallPart(id="call_b", name="get_time", arguments=""),
                ],
            ),
            Message("tool", [ToolResultPart("call_a", [TextPart("sunny")])]),
            Message("tool", [ToolResultPart("call_b", [TextPart("boom")], is_error=True)]),
        ],
        max_tokens=256,
        temperature=0.3,
        top_p=0.9,
        top_k=40,
        stop=["a", "b", "c", "d", "e"],
        seed=7,
        tools=[
            Tool(
                name="get_weather",
                description="Weather",
                parameters={"type": "object", "additionalProperties": False},
            ),
            Tool(name="get_time"),
        ],
        tool_choice=ToolChoice("tool", "get_weather"),
        reasoning=ReasoningConfig(effort="low"),
        end_user="user-1",
    )
    assert body_of(req) == {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "Weather here?"},
                    {"inlineData": {"mimeType": "image/png", "data": "iVBOR"}},
                    {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://x.test/a.jpeg?x=1"}},
                ],
            },
            {
                "role": "model",
                "parts": [
                    {"text": "Checking."},
                    {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}},
                    {"functionCall": {"name": "get_time", "args": {}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}},
                    {"functionResponse": {"name": "get_time", "response": {"error": "boom"}}},
                ],
            },
        ],
        "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Use metric."}]},
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "get_weather",
                        "description": "Weather",
                        "parametersJsonSchema": {"type": "object", "additionalProperties": False},
                    },
                    {"name": "get_time"},
                ]
            }
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
        "generationConfig": {
            "temperature": 0.3,
            "topP": 0.9,
            "topK": 40,
            "maxOutputTokens": 256,
            "seed": 7,
            "stopSequences": ["a", "b", "c", "d", "e"],
            "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 1024},
        },
    }


def test_gemini_signatures_go_back_on_their_parts_and_gemini_3_gets_the_sentinel() -> None:
    resp = GeminiProvider().parse_response(golden("upstream_response.json"))
    req = Request(
        model="google/gemini-3-pro",
        messages=[Message("user", [TextPart("weather?")]), Message("assistant", resp.content)],
        reasoning=ReasoningConfig(effort="high"),
    )
    body = body_of(req, "gemini-3-pro-preview")
    parts = body["contents"][1]["parts"]
    assert parts[0]["thought"] is True
    assert parts[1] == {"text": "Let me check."}
    assert parts[2]["thoughtSignature"] == "CiQB0e2Kb1sig=="
    assert parts[2]["functionCall"]["name"] == "get_weather"
    # Gemini 3 only checks the first call of a step, but any unsigned call gets the sentinel.
    assert parts[3]["thoughtSignature"] == SKIP_SIGNATURE
    assert body["generationConfig"]["thinkingConfig"] == {"includeThoughts": True, "thinkingLevel": "high"}
    # Gemini 2.5 takes calls without signatures as they are.
    parts25 = body_of(req)["contents"][1]["parts"]
    assert "thoughtSignature" not in parts25[3]


def test_tool_result_without_a_known_call_is_rejected() -> None:
    req = Request(model="g", messages=[Message("tool", [ToolResultPart("call_zz", [TextPart("x")])])])
    with pytest.raises(InvalidRequest) as err:
        body_of(req)
    assert "call_zz" in err.value.message


def test_previous_response_id_names_the_field() -> None:
    req = Request(
        model="g",
        messages=[Message("user", [TextPart("x")])],
        previous_response_id="resp_1",
        ingress=Protocol.OPENAI_RESPONSES,
    )
    with pytest.raises(InvalidRequest) as err:
        body_of(req)
    assert err.value.param == "previous_response_id"


def test_thinking_off_and_budget() -> None:
    req = Request(
        model="g", messages=[Message("user", [TextPart("x")])], reasoning=ReasoningConfig(enabled=False)
    )
    assert body_of(req)["generationConfig"] == {"thinkingConfig": {"thinkingBudget": 0}}
    req.reasoning = ReasoningConfig(budget_tokens=2048)
    assert body_of(req)["generationConfig"] == {
        "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 2048}
    }


@pytest.mark.parametrize(
    ("model", "reasoning", "expected"),
    [
        # 2.5 Pro cannot stop thinking (128-32768): its least budget, thoughts not shown.
        ("gemini-2.5-pro", ReasoningConfig(enabled=False), {"thinkingBudget": 128}),
        (
            "gemini-2.5-pro",
            ReasoningConfig(effort="xhigh"),
            {"includeThoughts": True, "thinkingBudget": 32768},
        ),
        (
            "gemini-2.5-pro",
            ReasoningConfig(budget_tokens=64),
            {"includeThoughts": True, "thinkingBudget": 128},
        ),
        # 2.5 Flash: 0-24576; Claude Code's 31999 and `xhigh` fit under the top.
        ("gemini-2.5-flash", ReasoningConfig(enabled=False), {"thinkingBudget": 0}),
        (
            "gemini-2.5-flash",
            ReasoningConfig(effort="xhigh"),
            {"includeThoughts": True, "thinkingBudget": 24576},
        ),
        (
            "gemini-2.5-flash",
            ReasoningConfig(budget_tokens=31999),
            {"includeThoughts": True, "thinkingBudget": 24576},
        ),
        # Flash-Lite: 0, or 512-24576.
        ("gemini-2.5-flash-lite", ReasoningConfig(enabled=False), {"thinkingBudget": 0}),
        (
            "gemini-2.5-flash-lite",
            ReasoningConfig(budget_tokens=200),
            {"includeThoughts": True, "thinkingBudget": 512},
        ),
        # -1 (dynamic) is taken by every model.
        ("gemini-2.5-pro", ReasoningConfig(effort="auto"), {"includeThoughts": True, "thinkingBudget": -1}),
        # Gemini 3 cannot stop thinking either.
        ("gemini-3-pro-preview", ReasoningConfig(enabled=False), {"thinkingLevel": "low"}),
    ],
)
def test_thinking_budget_fits_the_models_range(model: str, reasoning: ReasoningConfig, expected: Any) -> None:
    req = Request(model="g", messages=[Message("user", [TextPart("x")])], reasoning=reasoning)
    assert body_of(req, model)["generationConfig"]["thinkingConfig"] == expected


def test_thinking_off_from_each_client_protocol_fits_2_5_pro() -> None:
    chat = {"model": "m", "messages": [{"role": "user", "content": "x"}], "reasoning_effort": "none"}
    responses = {"model": "m", "input": "x", "reasoning": {"effort": "none"}}
    messages = {
        "model": "m",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "x"}],
        "thinking": {"type": "disabled"},
    }
    for req in (
        ChatIngress().parse_request(orjson.dumps(chat), {}),
        ResponsesIngress().parse_request(orjson.dumps(responses), {}),
        AnthropicIngress().parse_request(orjson.dumps(messages), {}),
    ):
        assert body_of(req, "gemini-2.5-pro")["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 128}


def test_empty_text_parts_and_empty_turns_are_left_out() -> None:
    chat = {
        "model": "m",
        "messages": [
            {"role": "system", "content": ""},
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": [{"type": "text", "text": ""}, {"type": "text", "text": "thanks"}]},
        ],
    }
    body = body_of(ChatIngress().parse_request(orjson.dumps(chat), {}))
    assert "systemInstruction" not in body
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "weather?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {}}}]},
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}},
                {"text": "thanks"},
            ],
        },
    ]
    # Claude Code's assistant turns: thinking, an empty text block, tool use.
    messages = {
        "model": "m",
        "max_tokens": 100,
        "messages": [
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hm", "signature": "sig"},
                    {"type": "text", "text": ""},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}],
            },
        ],
    }
    body = body_of(AnthropicIngress().parse_request(orjson.dumps(messages), {}))
    assert body["contents"][1] == {
        "role": "model",
        "parts": [{"functionCall": {"name": "get_weather", "args": {}}}],
    }


def test_parallel_tool_results_follow_the_order_of_the_calls() -> None:
    calls = [
        {
            "id": f"call_{c}",
            "type": "function",
            "function": {"name": "get_weather", "arguments": f'{{"city":"{c}"}}'},
        }
        for c in ("A", "B")
    ]
    chat = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "weather in A and B?"},
            {"role": "assistant", "content": None, "tool_calls": calls},
            {"role": "tool", "tool_call_id": "call_B", "content": "rain in B"},
            {"role": "tool", "tool_call_id": "call_A", "content": "sun in A"},
        ],
    }
    body = body_of(ChatIngress().parse_request(orjson.dumps(chat), {}))
    assert [p["functionResponse"]["response"]["output"] for p in body["contents"][2]["parts"]] == [
        "sun in A",
        "rain in B",
    ]


def test_penalties_are_not_sent() -> None:
    req = Request(
        model="g", messages=[Message("user", [TextPart("x")])], presence_penalty=0.5, frequency_penalty=0.5
    )
    assert "generationConfig" not in body_of(req)


@pytest.mark.parametrize(
    ("ingress", "param"),
    [
        (Protocol.OPENAI_CHAT, "response_format"),
        (Protocol.OPENAI_RESPONSES, "text.format"),
        (Protocol.ANTHROPIC_MESSAGES, "output_config.format"),
    ],
)
def test_json_response_with_tools_is_refused_on_gemini_2_5(ingress: Protocol, param: str) -> None:
    req = Request(
        model="g",
        messages=[Message("user", [TextPart("x")])],
        tools=[Tool(name="get_weather")],
        response_format=ResponseFormat("json_schema", schema={"type": "object"}),
        ingress=ingress,
    )
    with pytest.raises(InvalidRequest) as err:
        body_of(req)
    assert (err.value.param, err.value.code) == (param, "unsupported_value")
    # Gemini 3 takes both; without tools 2.5 gets the JSON response type.
    assert body_of(req, "gemini-3-pro-preview")["generationConfig"]["responseMimeType"] == "application/json"
    req.tools = []
    assert body_of(req)["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseJsonSchema": {"type": "object"},
    }


def test_instructions_alone_are_sent_as_the_user_turn() -> None:
    req = Request(model="g", system=[SystemPart("Write a haiku.")], messages=[])
    body = body_of(req)
    assert body["contents"] == [{"role": "user", "parts": [{"text": "Write a haiku."}]}]
    assert "systemInstruction" not in body
    req.system = []
    with pytest.raises(InvalidRequest) as err:
        body_of(req)
    assert err.value.param == "messages"


# ------------------------------------------------------------------------------ response


def test_parse_non_stream_response() -> None:
    resp = GeminiProvider().parse_response(golden("upstream_response.json"))
    assert resp.id == RID
    assert resp.model == "gemini-2.5-flash"
    thought, text, sig, call1, call2 = resp.content
    assert isinstance(thought, ReasoningPart)
    assert thought.text.startswith("**Planning the lookup**")
    assert thought.provider is Protocol.GEMINI
    assert text == TextPart("Let me check.")
    assert sig == ReasoningPart("", signature="CiQB0e2Kb1sig==", provider=Protocol.GEMINI)
    assert call1 == ToolCallPart(id=call_id(RID, 0), name="get_weather", arguments='{"location":"Paris"}')
    assert call2 == ToolCallPart(id=call_id(RID, 1), name="get_time", arguments='{"tz":"CET"}')
    assert resp.finish_reason is FinishReason.TOOL_USE
    assert resp.usage == Usage(input_tokens=41, output_tokens=85, cached_input_tokens=32, reasoning_tokens=61)


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("STOP", FinishReason.END_TURN),
        ("MAX_TOKENS", FinishReason.MAX_TOKENS),
        ("SAFETY", FinishReason.CONTENT_FILTER),
        ("RECITATION", FinishReason.CONTENT_FILTER),
        ("MALFORMED_FUNCTION_CALL", FinishReason.ERROR),
    ],
)
def test_finish_reasons(reason: str, expected: FinishReason) -> None:
    data = {"candidates": [{"content": {"parts": [{"text": "x"}], "role": "model"}, "finishReason": reason}]}
    assert GeminiProvider().parse_response(orjson.dumps(data)).finish_reason is expected


def test_blocked_prompt_is_content_filter() -> None:
    data = {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 5}}
    resp = GeminiProvider().parse_response(orjson.dumps(data))
    assert resp.finish_reason is FinishReason.CONTENT_FILTER
    assert resp.content == []


@pytest.mark.parametrize("size", [1, 29, 100_000])
def test_decode_stream_thoughts_text_and_calls(size: int) -> None:
    events = feed_in_pieces(golden("upstream_thoughts_tools.sse"), size)
    assert events[0] == StreamStart(id=RID, model="gemini-2.5-flash")
    starts = [e for e in events if isinstance(e, BlockStart)]
    kinds = [type(s.part).__name__ for s in starts]
    assert kinds == ["ReasoningPart", "TextPart", "ReasoningPart", "ToolCallPart", "ToolCallPart"]
    thoughts = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    assert (
        thoughts
        == "**Planning the lookup**\n\nThe user wants the weather in Paris. I should call get_weather."
    )
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Let me check."
    assert starts[2].part == ReasoningPart("", signature="CiQB0e2Kb1sig==", provider=Protocol.GEMINI)
    args = [e.arguments for e in events if isinstance(e, ToolArgumentsDelta)]
    assert args == ['{"location":"Paris"}', '{"tz":"CET"}']
    assert [s.part.id for s in starts[3:]] == [call_id(RID, 0), call_id(RID, 1)]  # type: ignore[union-attr]
    # Every block closes, one at a time, before the next opens.
    opened = [e.index for e in events if isinstance(e, BlockStart)]
    closed = [e.index for e in events if isinstance(e, BlockStop)]
    assert opened == closed == [0, 1, 2, 3, 4]
    assert [e for e in events if isinstance(e, StreamFinish)] == [StreamFinish(FinishReason.TOOL_USE)]
    usage = [e for e in events if isinstance(e, UsageUpdate)][-1].usage
    assert usage == Usage(input_tokens=41, output_tokens=85, cached_input_tokens=32, reasoning_tokens=61)


def test_error_inside_stream() -> None:
    wire = b'data: {"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}\r\n\r\n'
    events = feed_in_pieces(wire, 7)
    assert events == [StreamError(ErrorKind.UPSTREAM_OVERLOADED, "The model is overloaded.", "UNAVAILABLE")]


@pytest.mark.parametrize(
    ("status", "rpc", "kind"),
    [
        (429, "RESOURCE_EXHAUSTED", ErrorKind.UPSTREAM_RATE_LIMITED),
        (500, "INTERNAL", ErrorKind.UPSTREAM_ERROR),
        (503, "UNAVAILABLE", ErrorKind.UPSTREAM_OVERLOADED),
        (504, "DEADLINE_EXCEEDED", ErrorKind.UPSTREAM_TIMEOUT),
        (400, "INVALID_ARGUMENT", ErrorKind.UPSTREAM_INVALID_REQUEST),
        (403, "PERMISSION_DENIED", ErrorKind.UPSTREAM_AUTH),
    ],
)
def test_error_mapping(status: int, rpc: str, kind: ErrorKind) -> None:
    body = orjson.dumps(
        {
            "error": {
                "code": status,
                "message": f"{rpc} happened",
                "status": rpc,
                "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "13s"}],
            }
        }
    )
    err = GeminiProvider().parse_error(status, body, {})
    assert err.kind is kind
    assert err.message == f"{rpc} happened"
    assert err.upstream_type == rpc
    expect_retry = 13_000 if kind in (ErrorKind.UPSTREAM_RATE_LIMITED, ErrorKind.UPSTREAM_OVERLOADED) else 0
    assert err.retry_after_ms == expect_retry


def test_error_without_a_body_falls_back_to_the_status() -> None:
    assert GeminiProvider().parse_error(503, b"", {"retry-after": "2"}).kind is ErrorKind.UPSTREAM_OVERLOADED
    assert GeminiProvider().parse_error(503, b"", {"retry-after": "2"}).retry_after_ms == 2000


# ------------------------------------------------------------------------------ across protocols


def test_chat_ingress_to_gemini_maps_tools_and_reasoning() -> None:
    chat = {
        "model": "google/gemini-2.5-flash",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
            }
        ],
        "tool_choice": "required",
        "reasoning_effort": "high",
        "stream": True,
    }
    req = ChatIngress().parse_request(orjson.dumps(chat), {})
    body = body_of(req)
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["contents"][1]["parts"] == [{"functionCall": {"name": "get_weather", "args": {}}}]
    assert body["contents"][2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}}
    ]
    assert body["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    assert body["generationConfig"] == {
        "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 24576},
    }


def test_gemini_stream_to_chat_client_keeps_thoughts_out_of_content() -> None:
    chat = {
        "model": "google/gemini-2.5-flash",
        "messages": [{"role": "user", "content": "x"}],
        "stream": True,
    }
    req = ChatIngress().parse_request(orjson.dumps(chat), {})
    renderer = ChatIngress().stream_renderer(req)
    events = feed_in_pieces(golden("upstream_thoughts_tools.sse"), 64)
    wire = b"".join(renderer.render(e) for e in events) + renderer.close()
    chunks = [orjson.loads(b[6:]) for b in wire.split(b"\n\n") if b.startswith(b"data: {")]
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    reasoning = "".join(c["choices"][0]["delta"].get("reasoning_content") or "" for c in chunks)
    assert content == "Let me check."
    assert reasoning.startswith("**Planning the lookup**")
    calls = [tc for c in chunks for tc in c["choices"][0]["delta"].get("tool_calls") or ()]
    assert [tc["function"].get("name") for tc in calls if "id" in tc] == ["get_weather", "get_time"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_gemini_stream_to_responses_client_matches_golden() -> None:
    body = {"model": "google/gemini-2.5-flash", "input": "weather in Paris?", "stream": True}
    req = ResponsesIngress().parse_request(orjson.dumps(body), {})
    renderer = ResponsesIngress().stream_renderer(req)
    events = feed_in_pieces(golden("upstream_thoughts_tools.sse"), 64)
    wire = b"".join(renderer.render(e) for e in events) + renderer.close()
    assert wire == golden("responses_client_thoughts_tools.sse")
    payloads = [orjson.loads(b.split(b"\ndata: ")[1]) for b in wire.split(b"\n\n") if b]
    assert [p["sequence_number"] for p in payloads] == list(range(len(payloads)))
    final = payloads[-1]["response"]
    # The bare signature has nothing to show a Responses client: reasoning, message, two calls.
    assert [o["type"] for o in final["output"]] == ["reasoning", "message", "function_call", "function_call"]
    assert final["usage"]["output_tokens_details"] == {"reasoning_tokens": 61}


# ------------------------------------------------------------------ signatures through other protocols


def _gemini_answer() -> dict[str, Any]:
    """The golden answer with a signature on its thought part too."""
    data: dict[str, Any] = orjson.loads(golden("upstream_response.json"))
    data["candidates"][0]["content"]["parts"][0]["thoughtSignature"] = "CiQBthought=="
    return data


def _next_turn_from_anthropic_client(content: list[dict[str, Any]]) -> Request:
    results = [
        {"type": "tool_result", "tool_use_id": b["id"], "content": "ok"}
        for b in content
        if b["type"] == "tool_use"
    ]
    body = {
        "model": "google/gemini-2.5-flash",
        "max_tokens": 500,
        "messages": [
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": content},
            {"role": "user", "content": results},
        ],
    }
    return AnthropicIngress().parse_request(orjson.dumps(body), {})


def test_gemini_signatures_reach_an_anthropic_client_tagged_and_go_back_to_gemini_only() -> None:
    first = AnthropicIngress().parse_request(
        orjson.dumps(
            {
                "model": "google/gemini-2.5-flash",
                "max_tokens": 500,
                "messages": [{"role": "user", "content": "x"}],
            }
        ),
        {},
    )
    resp = GeminiProvider().parse_response(orjson.dumps(_gemini_answer()))
    content = orjson.loads(AnthropicIngress().render_response(resp, first))["content"]
    thinking = [b for b in content if b["type"] == "thinking"]
    assert [b["signature"] for b in thinking] == [
        "gemini:signature:CiQBthought==",
        "gemini:signature:CiQB0e2Kb1sig==",
    ]

    req = _next_turn_from_anthropic_client(content)
    parts = body_of(req)["contents"][1]["parts"]
    assert parts[0]["thought"] is True
    assert parts[0]["thoughtSignature"] == "CiQBthought=="
    assert parts[1] == {"text": "Let me check."}
    assert parts[2] == {
        "functionCall": {"name": "get_weather", "args": {"location": "Paris"}},
        "thoughtSignature": "CiQB0e2Kb1sig==",
    }
    assert parts[3] == {"functionCall": {"name": "get_time", "args": {"tz": "CET"}}}
    # Claude never receives a Gemini signature as a signed thinking block.
    to_claude = orjson.loads(AnthropicProvider().build_request(req, "claude-sonnet-4-6", "").body)
    assert [b["type"] for b in to_claude["messages"][1]["content"]] == ["text", "tool_use", "tool_use"]


def test_gemini_stream_signatures_reach_an_anthropic_client_tagged() -> None:
    req = AnthropicIngress().parse_request(
        orjson.dumps(
            {
                "model": "google/gemini-2.5-flash",
                "max_tokens": 500,
                "stream": True,
                "messages": [{"role": "user", "content": "x"}],
            }
        ),
        {},
    )
    renderer = AnthropicIngress().stream_renderer(req)
    wire = b"".join(renderer.render(e) for e in feed_in_pieces(golden("upstream_thoughts_tools.sse"), 64))
    wire += renderer.close()
    events = [orjson.loads(b.split(b"\ndata: ")[1]) for b in wire.split(b"\n\n") if b]
    sigs = [
        e["delta"]["signature"]
        for e in events
        if e["type"] == "content_block_delta" and e["delta"]["type"] == "signature_delta"
    ]
    assert sigs == ["gemini:signature:CiQB0e2Kb1sig=="]
