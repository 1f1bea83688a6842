from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from crossmodel_protocols.anthropic import AnthropicProvider
from crossmodel_protocols.canonical import (
    BlockStart,
    ErrorKind,
    FinishReason,
    ImagePart,
    InvalidRequest,
    Message,
    ReasoningConfig,
    ReasoningDelta,
    ReasoningPart,
    RefusalPart,
    Request,
    Response,
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
from crossmodel_protocols.gemini import GeminiProvider
from crossmodel_protocols.openai_chat import ChatProvider, Dialect
from crossmodel_protocols.openai_responses import (
    OpenAIProvider,
    ResponsesIngress,
    ResponsesProvider,
    ResponsesStreamParser,
)

GOLDEN = Path(__file__).parent / "golden" / "responses"


def golden(name: str) -> bytes:
    return (GOLDEN / name).read_bytes()


def parse(body: dict[str, Any]) -> Request:
    return ResponsesIngress().parse_request(orjson.dumps(body), {})


def feed_in_pieces(wire: bytes, size: int) -> list[StreamEvent]:
    parser = ResponsesStreamParser()
    events: list[StreamEvent] = []
    for i in range(0, len(wire), size):
        events.extend(parser.feed(wire[i : i + size]))
    events.extend(parser.close())
    return events


def render_all(request: Request, events: list[StreamEvent]) -> bytes:
    renderer = ResponsesIngress().stream_renderer(request)
    return b"".join(renderer.render(e) for e in events) + renderer.close()


def sse_payloads(wire: bytes) -> list[dict[str, Any]]:
    out = []
    for block in wire.decode().split("\n\n"):
        if not block:
            continue
        name, data = block.split("\n")
        payload = orjson.loads(data.removeprefix("data: "))
        assert name == f"event: {payload['type']}"
        out.append(payload)
    return out


# ------------------------------------------------------------------------------ ingress parse


def test_parse_full_request() -> None:
    req = parse(
        {
            "model": "openai/gpt-5-mini",
            "instructions": "Be brief.",
            "input": [
                {"role": "developer", "content": "Use metric."},
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "What is this?"},
                        {"type": "input_image", "image_url": "https://x.test/a.png", "detail": "low"},
                        {"type": "input_image", "image_url": "data:image/png;base64,iVBOR"},
                    ],
                },
                {
                    "type": "reasoning",
                    "id": "rs_1",
                    "summary": [{"type": "summary_text", "text": "Looking."}],
                    "encrypted_content": "enc",
                },
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "A cat."}],
                },
                {
                    "type": "function_call",
                    "call_id": "call_1",
                    "name": "lookup",
                    "arguments": "{}",
                    "id": "fc_1",
                },
                {"type": "function_call_output", "call_id": "call_1", "output": "found"},
                {"role": "user", "content": "thanks"},
            ],
            "tools": [
                {"type": "function", "name": "lookup", "parameters": {"type": "object"}, "strict": False},
                {"type": "web_search"},
            ],
            "tool_choice": {"type": "function", "name": "lookup"},
            "parallel_tool_calls": False,
            "max_output_tokens": 500,
            "temperature": 0.2,
            "top_p": 0.9,
            "text": {
                "format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True}
            },
            "reasoning": {"effort": "low", "summary": "auto"},
            "include": ["reasoning.encrypted_content"],
            "safety_identifier": "user-42",
            "user": "legacy",
            "metadata": {"k": "v"},
            "store": False,
            "stream": True,
            "truncation": "auto",
        }
    )
    assert req.ingress.value == "openai.responses"
    assert req.system == [
        SystemPart("Be brief.", role="developer"),
        SystemPart("Use metric.", role="developer"),
    ]
    assert [m.role for m in req.messages] == ["user", "assistant", "tool", "user"]
    assert req.messages[0].content == [
        TextPart("What is this?"),
        ImagePart(url="https://x.test/a.png", detail="low"),
        ImagePart(data="iVBOR", media_type="image/png"),
    ]
    reasoning, text, call = req.messages[1].content
    assert isinstance(reasoning, ReasoningPart)
    assert (reasoning.text, reasoning.item_id, reasoning.encrypted_content) == ("Looking.", "rs_1", "enc")
    assert text == TextPart("A cat.")
    assert call == ToolCallPart(id="call_1", name="lookup", arguments="{}", item_id="fc_1")
    assert req.messages[2].content == [ToolResultPart("call_1", [TextPart("found")])]
    assert req.tools[0] == Tool(name="lookup", parameters={"type": "object"}, strict=False)
    assert req.tools[1].kind == "web_search"
    assert req.tool_choice == ToolChoice("tool", "lookup", disable_parallel=True)
    assert req.max_tokens == 500
    assert req.response_format is not None
    assert (req.response_format.type, req.response_format.name) == ("json_schema", "out")
    assert req.reasoning == ReasoningConfig(effort="low", summary="auto")
    assert req.include_reasoning_state
    assert req.end_user == "user-42"
    assert req.metadata == {"k": "v"}
    assert req.stream is True
    assert req.extra == {"truncation": "auto"}


def test_string_input_is_one_user_message() -> None:
    req = parse({"model": "m", "input": "hello"})
    assert req.messages == [Message("user", [TextPart("hello")])]
    assert req.system == []
    assert req.end_user == ""


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"input": "x"}, "model", "missing_required_parameter"),
        ({"model": "m"}, "input", "missing_required_parameter"),
        ({"model": "m", "input": 3}, "input", "invalid_type"),
        ({"model": "m", "input": "x", "foo": 1}, "foo", "unknown_parameter"),
        ({"model": "m", "input": [{"role": "robot", "content": "x"}]}, "input[0].role", "invalid_value"),
        ({"model": "m", "input": [{"role": "user"}]}, "input[0].content", "missing_required_parameter"),
        (
            {"model": "m", "input": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]},
            "input[0].content[0].type",
            "invalid_value",
        ),
        (
            {"model": "m", "input": [{"type": "function_call", "call_id": "c", "name": "f"}]},
            "input[0].arguments",
            "missing_required_parameter",
        ),
        (
            {"model": "m", "input": [{"type": "function_call_output", "output": "x"}]},
            "input[0].call_id",
            "missing_required_parameter",
        ),
        ({"model": "m", "input": [{"type": "bogus"}]}, "input[0].type", "invalid_value"),
        ({"model": "m", "input": "x", "max_output_tokens": 8}, "max_output_tokens", "invalid_value"),
        ({"model": "m", "input": "x", "temperature": 3}, "temperature", "invalid_value"),
        (
            {"model": "m", "input": "x", "tools": [{"type": "function"}]},
            "tools[0].name",
            "missing_required_parameter",
        ),
        ({"model": "m", "input": "x", "tool_choice": "sometimes"}, "tool_choice", "invalid_value"),
        ({"model": "m", "input": "x", "include": ["bogus"]}, "include[0]", "invalid_value"),
        ({"model": "m", "input": "x", "truncation": "bogus"}, "truncation", "invalid_value"),
        ({"model": "m", "input": "x", "max_tool_calls": -1}, "max_tool_calls", "invalid_value"),
        ({"model": "m", "input": "x", "max_tool_calls": 0}, "max_tool_calls", "invalid_value"),
        (
            {"model": "m", "input": "x", "metadata": {f"k{i}": "v" for i in range(17)}},
            "metadata",
            "invalid_value",
        ),
        ({"model": "m", "input": "x", "metadata": {"k" * 65: "v"}}, "metadata", "invalid_value"),
        ({"model": "m", "input": "x", "metadata": {"k": "v" * 513}}, "metadata.k", "invalid_value"),
        (
            {"model": "m", "input": "x", "tool_choice": {"type": "function", "name": "x"}},
            "tool_choice.name",
            "invalid_value",
        ),
        (
            {
                "model": "m",
                "input": "x",
                "tools": [{"type": "function", "name": "a"}],
                "tool_choice": {"type": "function", "name": "x"},
            },
            "tool_choice.name",
            "invalid_value",
        ),
        (
            {
                "model": "m",
                "input": "x",
                "tools": [{"type": "function", "name": "a"}],
                "tool_choice": {
                    "type": "allowed_tools",
                    "mode": "auto",
                    "tools": [{"type": "function", "name": "x"}],
                },
            },
            "tool_choice.tools[0].name",
            "invalid_value",
        ),
        (
            {"model": "m", "input": "x", "text": {"format": {"type": "xml"}}},
            "text.format.type",
            "invalid_value",
        ),
        (
            {"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "schema": {}}}},
            "text.format.name",
            "missing_required_parameter",
        ),
        ({"model": "m", "input": "x", "reasoning": {"effort": "max"}}, "reasoning.effort", "invalid_value"),
        ({"model": "m", "input": "x", "stream_options": {}}, "stream_options", "invalid_value"),
        ({"model": "m", "input": "x", "instructions": 5}, "instructions", "invalid_type"),
        (
            {
                "model": "m",
                "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "ftp://x"}]}],
            },
            "input[0].content[0].image_url",
            "invalid_value",
        ),
    ],
)
def test_invalid_requests_name_the_field(body: dict[str, Any], param: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        parse(body)
    assert err.value.param == param
    assert err.value.code == code
    assert err.value.kind is ErrorKind.INVALID_REQUEST
    assert f"'{param}'" in err.value.message


def test_the_spec_limits_are_accepted_up_to_their_bounds() -> None:
    req = parse(
        {
            "model": "m",
            "input": "x",
            "include": ["message.input_image.image_url", "web_search_call.action.sources"],
            "truncation": "disabled",
            "max_tool_calls": 1,
            "metadata": {f"{i:064d}": "v" * 512 for i in range(16)},
            "tools": [{"type": "function", "name": "a"}],
            "tool_choice": {"type": "function", "name": "a"},
        }
    )
    assert len(req.metadata) == 16
    assert req.extra["truncation"] == "disabled"


@pytest.mark.parametrize("body", [b"{not json", b"[1,2]", b""])
def test_malformed_json_is_invalid_request(body: bytes) -> None:
    with pytest.raises(InvalidRequest):
        ResponsesIngress().parse_request(body, {})


# ------------------------------------------------------------------------------ provider build


def test_native_path_forwards_the_client_body_with_the_upstream_model() -> None:
    body = {
        "model": "openai/gpt-5-mini",
        "input": "hi",
        "previous_response_id": "resp_abc",
        "include": ["reasoning.encrypted_content"],
        "tools": [{"type": "web_search"}],
        "store": True,
        "stream": True,
    }
    up = ResponsesProvider().build_request(parse(body), "gpt-5-mini", "sk-up")
    assert up.path == "/responses"
    assert up.stream is True
    assert up.headers["authorization"] == "Bearer sk-up"
    assert orjson.loads(up.body) == {**body, "model": "gpt-5-mini"}


def test_canonical_request_to_responses_upstream() -> None:
    req = Request(
        model="openai/gpt-5-mini",
        system=[SystemPart("Be brief.")],
        messages=[
            Message("user", [TextPart("weather?"), ImagePart(data="AAAA", media_type="image/jpeg")]),
            Message(
                "assistant",
                [
                    ReasoningPart("thinking", signature="sig", provider=None),
                    ReasoningPart(
                        "",
                        item_id="rs_9",
                        encrypted_content="enc",
                        summary=[],
                        provider=ResponsesIngress.protocol,
                    ),
                    TextPart("Checking."),
                    ToolCallPart(id="call_1", name="get_weather", arguments='{"city":"Paris"}'),
                ],
            ),
            Message("tool", [ToolResultPart("call_1", [TextPart("sunny")])]),
        ],
        stream=True,
        max_tokens=8,
        temperature=0.5,
        tools=[Tool(name="get_weather", description="Weather", parameters={"type": "object"})],
        tool_choice=ToolChoice("required", disable_parallel=True),
        reasoning=ReasoningConfig(budget_tokens=2000),
        end_user="u-1",
    )
    body = orjson.loads(ResponsesProvider().build_request(req, "gpt-5-mini", "k").body)
    assert body == {
        "model": "gpt-5-mini",
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "weather?"},
                    {"type": "input_image", "image_url": "data:image/jpeg;base64,AAAA", "detail": "auto"},
                ],
            },
            {"type": "reasoning", "id": "rs_9", "summary": [], "encrypted_content": "enc"},
            {
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Checking.", "annotations": []}],
            },
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city":"Paris"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        ],
        "instructions": "Be brief.",
        "stream": True,
        "store": False,
        "max_output_tokens": 16,
        "temperature": 0.5,
        "tools": [
            {
                "type": "function",
                "name": "get_weather",
                "description": "Weather",
                "parameters": {"type": "object"},
                "strict": False,
            }
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "low", "summary": "auto"},
        "include": ["reasoning.encrypted_content"],
        "safety_identifier": "u-1",
    }


# ------------------------------------------------------------------------------ provider parse


@pytest.mark.parametrize("size", [1, 17, 4096])
def test_decode_upstream_stream(size: int) -> None:
    events = feed_in_pieces(golden("openai_upstream_reasoning_tools.sse"), size)
    assert isinstance(events[0], StreamStart)
    assert events[0].id == "resp_68a1f0c2e5a48190b1d2c3e4f5a6b7c80d9e0f1a2b3c4d5e"
    starts = [e for e in events if isinstance(e, BlockStart)]
    assert [type(s.part).__name__ for s in starts] == ["ReasoningPart", "TextPart", "ToolCallPart"]
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    assert reasoning == "**Checking the weather**"
    enc = [e.encrypted_content for e in events if isinstance(e, ReasoningDelta) and e.encrypted_content]
    assert enc == ["gAAAAABoENC0-full"]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Let me check."
    assert "".join(e.arguments for e in events if isinstance(e, ToolArgumentsDelta)) == '{"location":"Paris"}'
    call = starts[2].part
    assert isinstance(call, ToolCallPart)
    assert call.id == "call_kZ1xT9wq3L0aB2cD4eF6gH8i"
    assert call.item_id == "fc_68a1f0c5c3da8190c2d3e4f5a6b7c8d90d9e0f1a2b3c4d5e"
    usage = [e for e in events if isinstance(e, UsageUpdate)][-1].usage
    assert usage == Usage(input_tokens=75, output_tokens=82, cached_input_tokens=64, reasoning_tokens=64)
    assert events[-1] == StreamFinish(FinishReason.TOOL_USE)


def test_parse_upstream_non_stream_response() -> None:
    resp = ResponsesProvider().parse_response(golden("openai_upstream_response.json"))
    assert resp.id == "resp_68a1f0c2e5a48190b1d2c3e4f5a6b7c80d9e0f1a2b3c4d5e"
    assert [type(p).__name__ for p in resp.content] == ["ReasoningPart", "TextPart", "ToolCallPart"]
    assert resp.finish_reason is FinishReason.TOOL_USE
    assert resp.usage == Usage(75, 82, 64, 0, 64)


def test_openai_item_ids_and_store_reach_the_client_non_stream_and_streamed() -> None:
    """The ids OpenAI issued (message, reasoning, call, response) are the ids the client gets,
    so output passed back or referenced names items OpenAI knows; `store` is OpenAI's answer."""
    upstream = orjson.loads(golden("openai_upstream_response.json"))
    ids = [o["id"] for o in upstream["output"]]
    req = _client_request(stream=False)
    for stored in (True, False):
        data = orjson.dumps({**upstream, "store": stored})
        out = orjson.loads(ResponsesIngress().render_response(ResponsesProvider().parse_response(data), req))
        assert [o["id"] for o in out["output"]] == ids
        assert out["store"] is stored
    wire = golden("openai_upstream_reasoning_tools.sse").replace(b'"store":false', b'"store":true')
    payloads = sse_payloads(render_all(_client_request(stream=True), feed_in_pieces(wire, 64)))
    msg_id = "msg_68a1f0c4b2c98190b1c2d3e4f5a6b7c80d9e0f1a2b3c4d5e"
    message_events = [p for p in payloads if p.get("item_id", "").startswith("msg_")]
    assert message_events
    assert {p["item_id"] for p in message_events} == {msg_id}
    items = [p["item"]["id"] for p in payloads if p["type"].startswith("response.output_item.")]
    assert msg_id in items
    assert [o["id"] for o in payloads[-1]["response"]["output"]][1] == msg_id
    assert {p["response"]["store"] for p in payloads if "response" in p} == {True}


def test_another_vendors_answer_echoes_store_false() -> None:
    """Only OpenAI stores responses: from any other vendor `store` reads false, whatever the
    client asked, and message ids are derived."""
    req = parse({"model": "m", "input": "x", "store": True})
    resp = Response(
        id="chatcmpl-1", model="m", content=[TextPart("hi")], finish_reason=FinishReason.END_TURN, usage=None
    )
    out = orjson.loads(ResponsesIngress().render_response(resp, req))
    assert out["store"] is False
    assert out["output"][0]["id"].startswith("msg_")
    renderer = ResponsesIngress().stream_renderer(req)
    wire = renderer.render(StreamStart(id="chatcmpl-1", model="m")) + renderer.close()
    assert {p["response"]["store"] for p in sse_payloads(wire) if "response" in p} == {False}


def test_upstream_incomplete_and_failed() -> None:
    inc = {
        "object": "response",
        "status": "incomplete",
        "incomplete_details": {"reason": "max_output_tokens"},
        "output": [],
    }
    assert ResponsesProvider().parse_response(orjson.dumps(inc)).finish_reason is FinishReason.MAX_TOKENS
    failed_stream = (
        b"event: response.created\n"
        b'data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_1"}}\n\n'
        b"event: response.failed\n"
        b'data: {"type":"response.failed","sequence_number":1,"response":{"id":"resp_1",'
        b'"status":"failed","error":{"code":"rate_limit_exceeded","message":"slow down"}}}\n\n'
    )
    events = feed_in_pieces(failed_stream, 9)
    assert events[-1].kind == "error"
    assert events[-1].error_kind is ErrorKind.UPSTREAM_RATE_LIMITED  # type: ignore[union-attr]


def test_upstream_error_mapping() -> None:
    body = orjson.dumps(
        {"error": {"message": "Rate limit", "type": "requests", "param": None, "code": "rate_limit_exceeded"}}
    )
    err = ResponsesProvider().parse_error(429, body, {"retry-after-ms": "1500"})
    assert err.kind is ErrorKind.UPSTREAM_RATE_LIMITED
    assert err.retry_after_ms == 1500
    assert err.code == "rate_limit_exceeded"
    assert ResponsesProvider().parse_error(503, b"", {}).kind is ErrorKind.UPSTREAM_OVERLOADED


# ------------------------------------------------------------------------------ ingress render


def _client_request(**kw: Any) -> Request:
    return parse({"model": "openai/gpt-5-mini", "input": "weather in Paris?", **kw})


def test_client_stream_matches_golden_transcript() -> None:
    events = feed_in_pieces(golden("openai_upstream_reasoning_tools.sse"), 64)
    req = _client_request(
        instructions="Be brief.", reasoning={"effort": "low", "summary": "auto"}, stream=True
    )
    assert render_all(req, events) == golden("client_reasoning_tools.sse")


def test_client_stream_sequence_numbers_and_lifecycle() -> None:
    events = feed_in_pieces(golden("openai_upstream_reasoning_tools.sse"), 64)
    payloads = sse_payloads(render_all(_client_request(stream=True), events))
    assert [p["sequence_number"] for p in payloads] == list(range(len(payloads)))
    assert [p["type"] for p in payloads][:2] == ["response.created", "response.in_progress"]
    assert payloads[-1]["type"] == "response.completed"
    added = [p["output_index"] for p in payloads if p["type"] == "response.output_item.added"]
    done = [p["output_index"] for p in payloads if p["type"] == "response.output_item.done"]
    assert added == done == [0, 1, 2]


def test_stream_round_trips_through_the_renderer_and_parser() -> None:
    events = feed_in_pieces(golden("openai_upstream_reasoning_tools.sse"), 64)
    wire = render_all(_client_request(stream=True), events)
    again = feed_in_pieces(wire, 23)
    # The renderer keeps the upstream's Responses ids and encrypted reasoning: nothing is lost.
    assert [e for e in again if not isinstance(e, StreamStart)] == [
        e for e in events if not isinstance(e, StreamStart)
    ]


def test_max_tokens_finish_ends_with_response_incomplete() -> None:
    events: list[StreamEvent] = [
        StreamStart("chatcmpl-1", "up", created=7),
        BlockStart(0, TextPart("")),
        TextDelta(0, "w1 w2"),
        StreamFinish(FinishReason.MAX_TOKENS),
        UsageUpdate(Usage(3, 16)),
    ]
    payloads = sse_payloads(render_all(_client_request(stream=True), events))
    last = payloads[-1]
    assert last["type"] == "response.incomplete"
    assert last["response"]["status"] == "incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert last["response"]["output"][0]["status"] == "incomplete"
    assert last["response"]["usage"]["output_tokens"] == 16
    assert last["response"]["id"].startswith("resp_")


def test_usage_reports_prompt_cache_reads_and_writes() -> None:
    # OpenAI's ResponseUsage requires both `input_tokens_details` counts (Anthropic-style caches
    # report writes); both are parts of input_tokens.
    resp = Response("msg_01", "up", [TextPart("hi")], FinishReason.END_TURN, Usage(20, 3, 4, 5))
    out = orjson.loads(ResponsesIngress().render_response(resp, _client_request()))
    assert out["usage"]["input_tokens"] == 20
    assert out["usage"]["input_tokens_details"] == {"cached_tokens": 4, "cache_write_tokens": 5}


def test_function_call_arguments_done_names_the_function() -> None:
    events: list[StreamEvent] = [
        StreamStart("chatcmpl-1", "up"),
        BlockStart(0, ToolCallPart("call_1", "get_weather", "")),
        ToolArgumentsDelta(0, '{"city":"Paris"}'),
        StreamFinish(FinishReason.TOOL_USE),
    ]
    payloads = sse_payloads(render_all(_client_request(stream=True), events))
    (done,) = [p for p in payloads if p["type"] == "response.function_call_arguments.done"]
    assert (done["name"], done["arguments"]) == ("get_weather", '{"city":"Paris"}')


def test_reasoning_from_another_vendor_is_a_reasoning_item_never_text() -> None:
    resp = Response(
        "msg_01",
        "claude",
        [ReasoningPart("Let me think.", signature="sig", provider=None), TextPart("Hi.")],
        FinishReason.END_TURN,
        Usage(10, 20, reasoning_tokens=5),
    )
    out = orjson.loads(ResponsesIngress().render_response(resp, _client_request()))
    assert out["output"][0]["type"] == "reasoning"
    assert out["output"][0]["summary"] == [{"type": "summary_text", "text": "Let me think."}]
    assert "encrypted_content" not in out["output"][0]
    assert out["output"][1]["content"][0]["text"] == "Hi."
    assert out["usage"]["output_tokens_details"] == {"reasoning_tokens": 5}


def test_refusal_renders_as_refusal_content() -> None:
    resp = Response("x", "m", [RefusalPart("I can't help with that.")], FinishReason.REFUSAL, Usage(1, 2))
    out = orjson.loads(ResponsesIngress().render_response(resp, _client_request()))
    assert out["output"][0]["content"] == [{"type": "refusal", "refusal": "I can't help with that."}]
    assert out["status"] == "incomplete"


def test_error_in_stream_is_response_failed_with_next_sequence_number() -> None:
    renderer = ResponsesIngress().stream_renderer(_client_request(stream=True))
    head = renderer.render(StreamStart("resp_x", "m")) + renderer.render(BlockStart(0, TextPart("")))
    head += renderer.render(TextDelta(0, "partial"))
    tail = renderer.render_error(ErrorKind.UPSTREAM_TIMEOUT, "took too long")
    payloads = sse_payloads(head + tail)
    assert [p["sequence_number"] for p in payloads] == list(range(len(payloads)))
    assert payloads[-1]["type"] == "response.failed"
    assert payloads[-1]["response"]["id"] == "resp_x"
    assert payloads[-1]["response"]["error"]["message"] == "took too long"
    assert renderer.close() == b""


# ------------------------------------------------------------------------------ across protocols


def test_responses_ingress_to_chat_provider_maps_tools_and_reasoning() -> None:
    from crossmodel_protocols.openai_chat import ChatProvider, Dialect

    req = parse(
        {
            "model": "deepseek/deepseek-v4-pro",
            "instructions": "Be brief.",
            "input": [
                {"role": "user", "content": "weather in Paris?"},
                {
                    "type": "reasoning",
                    "id": "rs_1",
                    "summary": [{"type": "summary_text", "text": "Need a tool."}],
                },
                {
                    "type": "function_call",
                    "call_id": "call_1",
                    "name": "get_weather",
                    "arguments": '{"city":"Paris"}',
                },
                {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            ],
            "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "get_weather"},
            "reasoning": {"effort": "high"},
            "text": {"format": {"type": "json_object"}},
            "max_output_tokens": 100,
            "safety_identifier": "u-9",
            "stream": True,
        }
    )
    openai_body = orjson.loads(ChatProvider(Dialect.OPENAI).build_request(req, "gpt-4.1", "k").body)
    assert openai_body["messages"] == [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    assert openai_body["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    ]
    assert openai_body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert openai_body["reasoning_effort"] == "high"
    assert openai_body["response_format"] == {"type": "json_object"}
    assert openai_body["max_completion_tokens"] == 100
    assert openai_body["safety_identifier"] == "u-9"
    assert openai_body["stream_options"] == {"include_usage": True}
    # DeepSeek gets the earlier turn's reasoning back as reasoning_content.
    ds_body = orjson.loads(ChatProvider(Dialect.DEEPSEEK).build_request(req, "deepseek-reasoner", "k").body)
    assert ds_body["messages"][2]["reasoning_content"] == "Need a tool."


def test_chat_upstream_reasoning_stream_to_responses_client() -> None:
    from crossmodel_protocols.openai_chat import ChatStreamParser

    wire = (Path(__file__).parent / "golden" / "deepseek_upstream_reasoning.sse").read_bytes()
    parser = ChatStreamParser()
    events = parser.feed(wire) + parser.close()
    payloads = sse_payloads(render_all(_client_request(stream=True), events))
    final = payloads[-1]["response"]
    assert payloads[-1]["type"] == "response.completed"
    kinds = [o["type"] for o in final["output"]]
    assert kinds[0] == "reasoning"
    assert "message" in kinds
    reasoning_text = final["output"][0]["summary"][0]["text"]
    message = next(o for o in final["output"] if o["type"] == "message")
    assert reasoning_text
    assert reasoning_text not in message["content"][0]["text"]
    assert final["usage"]["output_tokens_details"]["reasoning_tokens"] > 0


# ------------------------------------------------------------------------------ OpenAI provider


def test_openai_provider_serves_responses_clients_natively_and_chat_clients_by_chat() -> None:
    from crossmodel_protocols.openai_chat import ChatIngress, ChatProvider
    from crossmodel_protocols.openai_responses import OpenAIProvider

    codec = OpenAIProvider()
    assert isinstance(codec, ChatProvider)  # chat clients keep the chat fast path
    native = codec.build_request(_client_request(stream=True), "gpt-5-mini", "k")
    assert native.path == "/responses"
    chat_req = ChatIngress().parse_request(b'{"model":"m","messages":[{"role":"user","content":"x"}]}', {})
    assert codec.build_request(chat_req, "gpt-5-mini", "k").path == "/chat/completions"
    assert (
        codec.parse_response(golden("openai_upstream_response.json")).finish_reason is FinishReason.TOOL_USE
    )
    chat_body = (
        b'{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,'
        b'"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}'
    )
    assert codec.parse_response(chat_body).content == [TextPart("hi")]


@pytest.mark.parametrize("size", [1, 5, 4096])
def test_openai_provider_stream_parser_tells_the_two_streams_apart(size: int) -> None:
    from crossmodel_protocols.openai_responses import OpenAIProvider

    def run(wire: bytes) -> list[StreamEvent]:
        parser = OpenAIProvider().stream_parser()
        out: list[StreamEvent] = []
        for i in range(0, len(wire), size):
            out.extend(parser.feed(wire[i : i + size]))
        return out + parser.close()

    native = run(golden("openai_upstream_reasoning_tools.sse"))
    assert native == feed_in_pieces(golden("openai_upstream_reasoning_tools.sse"), 4096)
    chat = run((Path(__file__).parent / "golden" / "openai_upstream_text.sse").read_bytes())
    assert isinstance(chat[0], StreamStart)
    assert chat[0].id.startswith("chatcmpl")
    assert any(isinstance(e, TextDelta) for e in chat)


# ------------------------------------------------------------------ other vendors' reasoning state

ANTHROPIC_GOLDEN = GOLDEN.parent / "anthropic" / "upstream_thinking_tools.sse"
GEMINI_GOLDEN = GOLDEN.parent / "gemini"
CLAUDE_SIG = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds5hk3Iq8Vm7K2i/r1wKzZLQG"
CLAUDE_REDACTED = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"
INCLUDE = {"include": ["reasoning.encrypted_content"], "reasoning": {"effort": "low"}}


def _streamed_output(provider: Any, wire: bytes, model: str, **extra: Any) -> list[dict[str, Any]]:
    req = parse({"model": model, "input": "weather in Paris?", "stream": True, **extra})
    parser = provider.stream_parser()
    events = [*parser.feed(wire), *parser.close()]
    final = sse_payloads(render_all(req, events))[-1]["response"]
    output: list[dict[str, Any]] = final["output"]
    return output


def _next_turn(model: str, output: list[dict[str, Any]], **extra: Any) -> Request:
    results = [
        {"type": "function_call_output", "call_id": o["call_id"], "output": "ok"}
        for o in output
        if o["type"] == "function_call"
    ]
    user = {"role": "user", "content": "weather in Paris?"}
    return parse({"model": model, "input": [user, *output, *results], **extra})


def test_claude_reasoning_state_reaches_a_responses_client_only_when_included() -> None:
    from crossmodel_protocols.anthropic import AnthropicProvider

    model = "anthropic/claude-sonnet-4.6"
    wire = ANTHROPIC_GOLDEN.read_bytes()
    out = _streamed_output(AnthropicProvider(), wire, model, **INCLUDE)
    assert [o["type"] for o in out] == ["reasoning", "reasoning", "message", "function_call"]
    assert out[0]["summary"][0]["text"] == "The user wants the weather. I should call get_weather."
    assert out[0]["encrypted_content"] == "anthropic:signature:" + CLAUDE_SIG
    assert out[1] == {
        "id": out[1]["id"],
        "type": "reasoning",
        "summary": [],
        "encrypted_content": "anthropic:redacted:" + CLAUDE_REDACTED,
        "status": "completed",
    }
    # Not asked: OpenAI's rule, no encrypted content (and nothing to show of the redacted block).
    plain = _streamed_output(AnthropicProvider(), wire, model, reasoning={"effort": "low"})
    assert [o["type"] for o in plain] == ["reasoning", "message", "function_call"]
    assert "encrypted_content" not in plain[0]

    # The same, not streamed.
    resp = AnthropicProvider().parse_response(
        orjson.dumps(
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-6",
                "content": [
                    {"type": "thinking", "thinking": "Hmm.", "signature": CLAUDE_SIG},
                    {"type": "redacted_thinking", "data": CLAUDE_REDACTED},
                    {"type": "tool_use", "id": "toolu_1", "name": "wx", "input": {}},
                ],
                "stop_reason": "tool_use",
                "usage": {"input_tokens": 5, "output_tokens": 5},
            }
        )
    )
    rendered = orjson.loads(
        ResponsesIngress().render_response(resp, parse({"model": model, "input": "x", **INCLUDE}))
    )
    assert [o.get("encrypted_content") for o in rendered["output"]] == [
        "anthropic:signature:" + CLAUDE_SIG,
        "anthropic:redacted:" + CLAUDE_REDACTED,
        None,
    ]


def test_claude_reasoning_state_goes_back_to_claude_only() -> None:
    from crossmodel_protocols.anthropic import AnthropicProvider
    from crossmodel_protocols.gemini import GeminiProvider

    model = "anthropic/claude-sonnet-4.6"
    out = _streamed_output(AnthropicProvider(), ANTHROPIC_GOLDEN.read_bytes(), model, **INCLUDE)
    req = _next_turn(model, out, **INCLUDE)
    body = orjson.loads(AnthropicProvider().build_request(req, "claude-sonnet-4-6", "").body)
    assistant = body["messages"][1]["content"]
    assert assistant[:2] == [
        {
            "type": "thinking",
            "thinking": "The user wants the weather. I should call get_weather.",
            "signature": CLAUDE_SIG,
        },
        {"type": "redacted_thinking", "data": CLAUDE_REDACTED},
    ]
    assert [b["type"] for b in assistant[2:]] == ["text", "tool_use"]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}  # the tool turn is signed
    # Other vendors never see it.
    gemini = orjson.loads(GeminiProvider().build_request(req, "gemini-2.5-flash", "").body)
    assert "Signature" not in orjson.dumps(gemini).decode()
    openai = orjson.loads(ResponsesProvider().build_request(req, "gpt-5", "").body)
    assert [i.get("type") for i in openai["input"]] == [
        None,
        "message",
        "function_call",
        "function_call_output",
    ]


def test_gemini_signatures_reach_a_responses_client_when_included_and_go_back_to_gemini() -> None:
    from crossmodel_protocols.anthropic import AnthropicProvider
    from crossmodel_protocols.gemini import GeminiProvider

    model = "google/gemini-2.5-flash"
    wire = (GEMINI_GOLDEN / "upstream_thoughts_tools.sse").read_bytes()
    out = _streamed_output(GeminiProvider(), wire, model, **INCLUDE)
    kinds = ["reasoning", "message", "reasoning", "function_call", "function_call"]
    assert [o["type"] for o in out] == kinds
    assert out[0]["encrypted_content"] is None  # this thought came unsigned
    assert (out[2]["summary"], out[2]["encrypted_content"]) == ([], "gemini:signature:CiQB0e2Kb1sig==")

    req = _next_turn(model, out)
    parts = orjson.loads(GeminiProvider().build_request(req, "gemini-2.5-flash", "").body)["contents"][1][
        "parts"
    ]
    # The signature is back on its call; the unsigned thought, a summary to Gemini, is not needed.
    assert parts == [
        {"text": "Let me check."},
        {
            "functionCall": {"name": "get_weather", "args": {"location": "Paris"}},
            "thoughtSignature": "CiQB0e2Kb1sig==",
        },
        {"functionCall": {"name": "get_time", "args": {"tz": "CET"}}},
    ]
    claude = orjson.loads(AnthropicProvider().build_request(req, "claude-sonnet-4-6", "").body)
    assert "CiQB0e2Kb1sig" not in orjson.dumps(claude).decode()

    # Not asked: the bare signature has nothing to show, as before.
    plain = _streamed_output(GeminiProvider(), wire, model)
    assert [o["type"] for o in plain] == ["reasoning", "message", "function_call", "function_call"]


# ------------------------------------------------------------------------------ allowed_tools


def _allowed_tools_request(mode: str, **kw: Any) -> Request:
    fn = {"type": "object", "properties": {}}
    return parse(
        {
            "model": "m",
            "input": "x",
            "tools": [
                {"type": "function", "name": "a", "parameters": fn},
                {"type": "function", "name": "b", "parameters": fn},
            ],
            "tool_choice": {
                "type": "allowed_tools",
                "mode": mode,
                "tools": [{"type": "function", "name": "b"}],
            },
            **kw,
        }
    )


@pytest.mark.parametrize("mode", ["auto", "required"])
def test_allowed_tools_keep_their_restriction_for_every_vendor(mode: str) -> None:
    """The model must not be able to call a tool the client left out of `allowed_tools`."""
    req = _allowed_tools_request(mode)
    assert req.tool_choice is not None
    assert (req.tool_choice.mode, req.tool_choice.allowed) == (mode, ["b"])
    claude = orjson.loads(AnthropicProvider().build_request(req, "claude", "").body)
    assert [t["name"] for t in claude["tools"]] == ["b"]
    assert claude["tool_choice"] == {"type": "any" if mode == "required" else "auto"}
    for dialect in (Dialect.DEEPSEEK, Dialect.COMPATIBLE):
        chat = orjson.loads(ChatProvider(dialect).build_request(req, "m", "").body)
        assert [t["function"]["name"] for t in chat["tools"]] == ["b"]
        assert chat["tool_choice"] == mode
    gemini = orjson.loads(GeminiProvider().build_request(req, "gemini-2.5-flash", "").body)
    declared = [d["name"] for d in gemini["tools"][0]["functionDeclarations"]]
    fcc = gemini["toolConfig"]["functionCallingConfig"]
    if mode == "required":
        # Gemini's own list, which goes with mode ANY: every tool stays declared.
        assert declared == ["a", "b"]
        assert fcc == {"mode": "ANY", "allowedFunctionNames": ["b"]}
    else:
        assert declared == ["b"]
        assert fcc == {"mode": "AUTO"}
    # OpenAI itself gets the client's body as it was.
    native = orjson.loads(OpenAIProvider().build_request(req, "gpt-4.1", "").body)
    assert req.raw is not None
    assert native["tool_choice"] == req.raw["tool_choice"]
    assert len(native["tools"]) == 2


def test_the_response_echoes_the_tool_choice_the_client_sent() -> None:
    req = _allowed_tools_request("required")
    assert req.raw is not None
    sent = req.raw["tool_choice"]
    resp = Response(
        id="x", model="m", content=[TextPart("hi")], finish_reason=FinishReason.END_TURN, usage=None
    )
    assert orjson.loads(ResponsesIngress().render_response(resp, req))["tool_choice"] == sent
    renderer = ResponsesIngress().stream_renderer(req)
    wire = renderer.render(StreamStart(id="x", model="m")) + renderer.close()
    assert {orjson.dumps(p["response"]["tool_choice"]) for p in sse_payloads(wire) if "response" in p} == {
        orjson.dumps(sent)
    }
    hosted = parse(
        {"model": "m", "input": "x", "tools": [{"type": "web_search"}], "tool_choice": {"type": "web_search"}}
    )
    assert orjson.loads(ResponsesIngress().render_response(resp, hosted))["tool_choice"] == {
        "type": "web_search"
    }
    assert (
        orjson.loads(ResponsesIngress().render_response(resp, parse({"model": "m", "input": "x"})))[
            "tool_choice"
        ]
        == "auto"
    )


def test_asking_for_the_reasoning_state_asks_for_no_reasoning() -> None:
    """`include: ["reasoning.encrypted_content"]` keeps whatever reasoning there is; Claude is
    not made to think by it (thinking costs output tokens the client did not ask for)."""
    from crossmodel_protocols.anthropic import AnthropicProvider

    req = parse(
        {"model": "anthropic/claude-sonnet-4.6", "input": "hi", "include": ["reasoning.encrypted_content"]}
    )
    assert req.reasoning is None
    assert req.include_reasoning_state
    body = orjson.loads(AnthropicProvider().build_request(req, "claude-sonnet-4-6", "").body)
    assert "thinking" not in body
