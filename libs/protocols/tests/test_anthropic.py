from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest

from crossmodel_protocols.anthropic import (
    AnthropicIngress,
    AnthropicProvider,
    AnthropicStreamParser,
    usage_from_anthropic,
    usage_to_anthropic,
)
from crossmodel_protocols.canonical import (
    BlockStart,
    BlockStop,
    CacheControl,
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
    Response,
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
    VendorDelta,
    VendorPart,
)
from crossmodel_protocols.errors import ApiError, ErrorType, error_type_for, render_http, render_stream_error
from crossmodel_protocols.openai_chat import ChatIngress, ChatStreamParser

GOLDEN = Path(__file__).parent / "golden"

SIG = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds5hk3Iq8Vm7K2i/r1wKzZLQG"
REDACTED = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"


def golden(name: str) -> bytes:
    return (GOLDEN / name).read_bytes()


def parse(body: dict[str, Any], headers: dict[str, str] | None = None) -> Request:
    return AnthropicIngress().parse_request(orjson.dumps(body), headers or {})


def decode(wire: bytes, size: int) -> list[StreamEvent]:
    parser = AnthropicStreamParser()
    events: list[StreamEvent] = []
    for i in range(0, len(wire), size):
        events.extend(parser.feed(wire[i : i + size]))
    events.extend(parser.close())
    return events


def render_all(request: Request, events: list[StreamEvent]) -> bytes:
    """The bytes a client receives: the renderer's output and, as the router stops at an upstream
    error and the edge ends the stream, the protocol's in-stream error instead of close()."""
    renderer = AnthropicIngress().stream_renderer(request)
    out = b""
    for e in events:
        if isinstance(e, StreamError):
            err = ApiError(error_type_for(e.error_kind), e.message)
            return out + render_stream_error(err, Protocol.ANTHROPIC_MESSAGES)
        out += renderer.render(e)
    return out + renderer.close()


# A request in the shape Claude Code sends: system blocks with cache_control, tools with a
# cache breakpoint on the last one, thinking, a tool loop with signed thinking, streaming.
CLAUDE_CODE_BODY: dict[str, Any] = {
    "model": "anthropic/claude-sonnet-4.6",
    "max_tokens": 32000,
    "system": [
        {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
        {"type": "text", "text": "Working directory: /repo", "cache_control": {"type": "ephemeral"}},
    ],
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in README.md? Here is a screenshot."},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                },
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "I should read the file.", "signature": SIG},
                {"type": "redacted_thinking", "data": REDACTED},
                {"type": "text", "text": "Reading it."},
                {
                    "type": "tool_use",
                    "id": "toolu_01A",
                    "name": "Read",
                    "input": {"file_path": "/repo/README.md"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "# CrossModel"},
                {
                    "type": "text",
                    "text": "Summarise it.",
                    "cache_control": {"type": "ephemeral", "ttl": "1h"},
                },
            ],
        },
    ],
    "tools": [
        {
            "name": "Read",
            "description": "Reads a file",
            "input_schema": {
                "type": "object",
                "properties": {"file_path": {"type": "string"}},
                "required": ["file_path"],
            },
        },
        {
            "name": "Bash",
            "description": "Runs a command",
            "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}},
            "cache_control": {"type": "ephemeral"},
        },
    ],
    "tool_choice": {"type": "auto"},
    "thinking": {"type": "enabled", "budget_tokens": 31999},
    "metadata": {"user_id": "user_abc123_session_42"},
    "stream": True,
}


# ------------------------------------------------------------------------------ ingress parse


def test_parse_claude_code_request() -> None:
    req = parse(CLAUDE_CODE_BODY, {"anthropic-version": "2023-06-01", "anthropic-beta": "a-1, b-2"})
    assert req.ingress is Protocol.ANTHROPIC_MESSAGES
    assert req.model == "anthropic/claude-sonnet-4.6"
    assert req.max_tokens == 32000
    assert req.stream
    assert req.system == [
        SystemPart("You are Claude Code, Anthropic's official CLI for Claude."),
        SystemPart("Working directory: /repo", cache_control=CacheControl("ephemeral")),
    ]
    assert req.messages == [
        Message(
            "user",
            [
                TextPart("What is in README.md? Here is a screenshot."),
                ImagePart(data="iVBORw0KGgo=", media_type="image/png"),
                ImagePart(url="https://example.com/a.jpg"),
            ],
        ),
        Message(
            "assistant",
            [
                ReasoningPart("I should read the file.", signature=SIG, provider=Protocol.ANTHROPIC_MESSAGES),
                ReasoningPart(redacted_data=REDACTED, provider=Protocol.ANTHROPIC_MESSAGES),
                TextPart("Reading it."),
                ToolCallPart("toolu_01A", "Read", '{"file_path":"/repo/README.md"}'),
            ],
        ),
        Message("tool", [ToolResultPart("toolu_01A", [TextPart("# CrossModel")])]),
        Message("user", [TextPart("Summarise it.", cache_control=CacheControl("ephemeral", "1h"))]),
    ]
    assert req.tools[1] == Tool(
        "Bash",
        "Runs a command",
        {"type": "object", "properties": {"command": {"type": "string"}}},
        cache_control=CacheControl("ephemeral"),
    )
    assert req.tool_choice == ToolChoice("auto")
    assert req.reasoning == ReasoningConfig(enabled=True, budget_tokens=31999)
    assert req.end_user == "user_abc123_session_42"
    assert req.anthropic_beta == ["a-1", "b-2"]
    assert req.include_usage


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto", "disable_parallel_tool_use": True}, ToolChoice("auto", disable_parallel=True)),
        ({"type": "any"}, ToolChoice("required")),
        ({"type": "tool", "name": "Read"}, ToolChoice("tool", "Read")),
        ({"type": "none"}, ToolChoice("none")),
    ],
)
def test_tool_choice_modes(choice: dict[str, Any], expected: ToolChoice) -> None:
    body = {
        "model": "m",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "x"}],
        "tool_choice": choice,
    }
    assert parse(body).tool_choice == expected


def test_sampling_stop_and_system_string() -> None:
    req = parse(
        {
            "model": "m",
            "max_tokens": 5,
            "system": "Be brief.",
            "messages": [{"role": "user", "content": "x"}],
            "temperature": 0.2,
            "top_p": 0.9,
            "top_k": 40,
            "stop_sequences": ["END", "STOP"],
        }
    )
    assert req.system == [SystemPart("Be brief.")]
    assert (req.temperature, req.top_p, req.top_k) == (0.2, 0.9, 40)
    assert req.stop == ["END", "STOP"]
    assert not req.stream


_MIN = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}


def _with(**kw: Any) -> dict[str, Any]:
    body = copy.deepcopy(_MIN)
    body.update(kw)
    return body


def _user(*blocks: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": list(blocks)}]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        ({"max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m", "max_tokens": 1}, "messages"),
        (_with(max_tokens="ten"), "max_tokens"),
        (_with(max_tokens=-1), "max_tokens"),
        (_with(messages=[]), "messages"),
        (_with(messages=[{"role": "system", "content": "x"}]), "messages[0].role"),
        (_with(messages=[{"role": "user"}]), "messages[0].content"),
        (_with(messages=[{"role": "user", "content": 7}]), "messages[0].content"),
        (_with(messages=_user({"type": "video"})), "messages[0].content[0].type"),
        (_with(messages=_user({"type": "text"})), "messages[0].content[0].text"),
        (_with(messages=_user({"type": "image"})), "messages[0].content[0].source"),
        (
            _with(
                messages=_user(
                    {"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "x"}}
                )
            ),
            "messages[0].content[0].source.media_type",
        ),
        (
            _with(messages=_user({"type": "image", "source": {"type": "url", "url": "ftp://x"}})),
            "messages[0].content[0].source.url",
        ),
        (
            _with(messages=_user({"type": "text", "text": "x", "cache_control": {"type": "forever"}})),
            "messages[0].content[0].cache_control.type",
        ),
        (_with(messages=_user({"type": "tool_result"})), "messages[0].content[0].tool_use_id"),
        (
            _with(
                messages=[
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "t", "name": "f", "input": []}],
                    }
                ]
            ),
            "messages[0].content[0].input",
        ),
        (
            _with(messages=[{"role": "assistant", "content": [{"type": "thinking", "thinking": "x"}]}]),
            "messages[0].content[0].signature",
        ),
        (
            _with(messages=[{"role": "assistant", "content": [{"type": "tool_result"}]}]),
            "messages[0].content[0].type",
        ),
        (_with(system=5), "system"),
        (_with(system=[{"type": "image"}]), "system[0].type"),
        (_with(tools=[{"name": "f"}]), "tools[0].input_schema"),
        (_with(tools=[{"input_schema": {"type": "object"}}]), "tools[0].name"),
        (_with(tool_choice={"type": "maybe"}), "tool_choice.type"),
        (_with(tool_choice={"type": "tool"}), "tool_choice.name"),
        (_with(thinking={"type": "enabled"}), "thinking.budget_tokens"),
        (_with(thinking={"type": "enabled", "budget_tokens": 100}), "thinking.budget_tokens"),
        (_with(thinking={"type": "lots"}), "thinking.type"),
        (_with(temperature=1.5), "temperature"),
        (_with(top_k="many"), "top_k"),
        (_with(stop_sequences=["a", 3]), "stop_sequences[1]"),
        (_with(metadata={"user_id": 9}), "metadata.user_id"),
        (_with(stream="yes"), "stream"),
        (_with(frequency_penalty=0.5), "frequency_penalty"),
    ],
)
def test_invalid_requests_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        parse(body)
    assert err.value.param == param
    assert err.value.kind is ErrorKind.INVALID_REQUEST
    assert param in err.value.message
    rendered = render_http(
        ApiError(ErrorType.INVALID_REQUEST, err.value.message, err.value.param),
        Protocol.ANTHROPIC_MESSAGES,
        "req_1",
    )
    assert rendered.status == 400
    assert orjson.loads(rendered.body) == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": err.value.message},
    }


@pytest.mark.parametrize("body", [b"{not json", b"[1]", b""])
def test_malformed_json_is_invalid_request(body: bytes) -> None:
    with pytest.raises(InvalidRequest):
        AnthropicIngress().parse_request(body, {})


# ------------------------------------------------------------------------------ round trips


def test_anthropic_request_round_trips_through_canonical() -> None:
    """Messages body -> canonical -> Messages body: the same request reaches the upstream."""
    req = parse(CLAUDE_CODE_BODY, {"anthropic-beta": "interleaved-thinking-2025-05-14"})
    up = AnthropicProvider().build_request(req, "claude-sonnet-4-6", "sk-ant-test")
    assert up.path == "/v1/messages"
    assert up.stream
    assert up.headers["x-api-key"] == "sk-ant-test"
    assert up.headers["anthropic-version"] == "2023-06-01"
    assert up.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    expected = copy.deepcopy(CLAUDE_CODE_BODY)
    expected["model"] = "claude-sonnet-4-6"
    assert orjson.loads(up.body) == expected


def test_forwarded_fields_reach_only_anthropic() -> None:
    req = parse(
        _with(service_tier="auto", output_config={"effort": "high"}, context_management={"edits": []})
    )
    body = orjson.loads(AnthropicProvider().build_request(req, "claude", "").body)
    assert body["service_tier"] == "auto"
    assert body["output_config"] == {"effort": "high"}
    assert body["context_management"] == {"edits": []}


UPSTREAM_MESSAGE: dict[str, Any] = {
    "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-6",
    "content": [
        {"type": "thinking", "thinking": "Need the tool.", "signature": SIG},
        {"type": "redacted_thinking", "data": REDACTED},
        {"type": "text", "text": "Checking."},
        {
            "type": "tool_use",
            "id": "toolu_01B",
            "name": "get_weather",
            "input": {"location": "Paris", "unit": "c"},
        },
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 40,
        "cache_creation_input_tokens": 10,
        "cache_read_input_tokens": 1500,
        "output_tokens": 77,
    },
}


def test_non_stream_response_round_trips() -> None:
    resp = AnthropicProvider().parse_response(orjson.dumps(UPSTREAM_MESSAGE))
    assert resp.content == [
        ReasoningPart("Need the tool.", signature=SIG, provider=Protocol.ANTHROPIC_MESSAGES),
        ReasoningPart(redacted_data=REDACTED, provider=Protocol.ANTHROPIC_MESSAGES),
        TextPart("Checking."),
        ToolCallPart("toolu_01B", "get_weather", '{"location":"Paris","unit":"c"}'),
    ]
    assert resp.finish_reason is FinishReason.TOOL_USE
    assert resp.usage == Usage(1550, 77, 1500, 10, 0)
    req = parse(_with(model="anthropic/claude-sonnet-4.6"))
    out = orjson.loads(AnthropicIngress().render_response(resp, req))
    assert out == dict(UPSTREAM_MESSAGE, model="anthropic/claude-sonnet-4.6")


def test_stop_sequence_is_reported() -> None:
    data = dict(
        UPSTREAM_MESSAGE,
        content=[{"type": "text", "text": "1 2"}],
        stop_reason="stop_sequence",
        stop_sequence="3",
    )
    resp = AnthropicProvider().parse_response(orjson.dumps(data))
    assert resp.finish_reason is FinishReason.STOP_SEQUENCE
    out = orjson.loads(AnthropicIngress().render_response(resp, parse(_MIN)))
    assert (out["stop_reason"], out["stop_sequence"]) == ("stop_sequence", "3")


@pytest.mark.parametrize(
    ("anthropic", "canonical"),
    [
        (
            {
                "input_tokens": 5,
                "cache_creation_input_tokens": 20,
                "cache_read_input_tokens": 300,
                "output_tokens": 9,
            },
            Usage(325, 9, 300, 20, 0),
        ),
        (
            {
                "input_tokens": 5,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 9,
                "output_tokens_details": {"thinking_tokens": 4},
            },
            Usage(5, 9, 0, 0, 4),
        ),
    ],
)
def test_usage_maps_both_ways(anthropic: dict[str, Any], canonical: Usage) -> None:
    assert usage_from_anthropic(anthropic) == canonical
    assert usage_to_anthropic(canonical) == anthropic


def test_message_delta_usage_keeps_message_start_input() -> None:
    start = usage_from_anthropic({"input_tokens": 5, "cache_read_input_tokens": 100, "output_tokens": 1})
    assert usage_from_anthropic({"output_tokens": 50}, start) == Usage(105, 50, 100, 0, 0)


# ------------------------------------------------------------------------------ stream decode


@pytest.mark.parametrize("size", [1, 7, 64, 100_000])
def test_decode_text_stream(size: int) -> None:
    assert decode(golden("anthropic/upstream_text.sse"), size) == [
        StreamStart("msg_01XFDUDYJgAACzvnptvVoYEL", "claude-sonnet-4-6", usage=Usage(25, 1)),
        UsageUpdate(Usage(25, 1)),
        BlockStart(0, TextPart("")),
        TextDelta(0, "Hello"),
        TextDelta(0, " there!"),
        BlockStop(0),
        StreamFinish(FinishReason.END_TURN),
        UsageUpdate(Usage(25, 12)),
    ]


@pytest.mark.parametrize("size", [3, 50, 100_000])
def test_decode_thinking_signature_redacted_and_streamed_tool_input(size: int) -> None:
    events = decode(golden("anthropic/upstream_thinking_tools.sse"), size)
    a = Protocol.ANTHROPIC_MESSAGES
    start_usage = Usage(2130, 3, 2000, 100, 0)
    assert events == [
        StreamStart("msg_014p7gG3wDgGV9EUtLvnow3U", "claude-sonnet-4-6", usage=start_usage),
        UsageUpdate(start_usage),
        BlockStart(0, ReasoningPart("", provider=a)),
        ReasoningDelta(0, "The user wants the weather."),
        ReasoningDelta(0, " I should call get_weather."),
        ReasoningDelta(0, signature=SIG),
        BlockStop(0),
        BlockStart(1, ReasoningPart(redacted_data=REDACTED, provider=a)),
        BlockStop(1),
        BlockStart(2, TextPart("")),
        TextDelta(2, "Let me look that up."),
        BlockStop(2),
        BlockStart(3, ToolCallPart("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather")),
        ToolArgumentsDelta(3, '{"location": "San Fra'),
        ToolArgumentsDelta(3, 'ncisco, CA"}'),
        BlockStop(3),
        StreamFinish(FinishReason.TOOL_USE),
        UsageUpdate(Usage(2130, 89, 2000, 100, 41)),
    ]


def test_decode_error_event_mid_stream() -> None:
    events = decode(golden("anthropic/upstream_error.sse"), 20)
    assert events[-2:] == [
        StreamError(ErrorKind.UPSTREAM_OVERLOADED, "Overloaded", "overloaded_error"),
        BlockStop(0),
    ]
    assert TextDelta(0, "Partial") in events


def test_server_tool_blocks_pass_verbatim_and_future_events_are_ignored() -> None:
    wire = b"".join(
        b"event: x\ndata: " + orjson.dumps(e) + b"\n\n"
        for e in [
            {
                "type": "message_start",
                "message": {"id": "msg_1", "model": "c", "usage": {"input_tokens": 1, "output_tokens": 1}},
            },
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {
                    "type": "server_tool_use",
                    "id": "srvtoolu_1",
                    "name": "web_search",
                    "input": {},
                },
            },
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": "{}"},
            },
            {"type": "content_block_stop", "index": 0},
            {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": "Hi"}},
            {"type": "content_block_stop", "index": 1},
            {"type": "some_future_event"},
        ]
    )
    events = decode(wire, 1000)
    server_tool = {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}
    assert events[2:] == [
        BlockStart(0, VendorPart(server_tool, Protocol.ANTHROPIC_MESSAGES)),
        VendorDelta(0, {"type": "input_json_delta", "partial_json": "{}"}, Protocol.ANTHROPIC_MESSAGES),
        BlockStop(0),
        BlockStart(1, TextPart("")),
        TextDelta(1, "Hi"),
        BlockStop(1),
    ]


# ------------------------------------------------------------------------------ stream render


def _stream_request() -> Request:
    return parse(
        {
            "model": "anthropic/claude-sonnet-4.6",
            "max_tokens": 1024,
            "stream": True,
            "messages": [{"role": "user", "content": "What is the weather in San Francisco?"}],
        }
    )


@pytest.mark.parametrize(
    ("upstream", "parser", "expected"),
    [
        ("anthropic/upstream_text.sse", AnthropicStreamParser, "anthropic/client_text.sse"),
        (
            "anthropic/upstream_thinking_tools.sse",
            AnthropicStreamParser,
            "anthropic/client_thinking_tools.sse",
        ),
        ("anthropic/upstream_error.sse", AnthropicStreamParser, "anthropic/client_error.sse"),
        ("anthropic/upstream_server_tools.sse", AnthropicStreamParser, "anthropic/client_server_tools.sse"),
        ("openai_upstream_tools.sse", ChatStreamParser, "anthropic/client_from_openai_tools.sse"),
        ("deepseek_upstream_reasoning.sse", ChatStreamParser, "anthropic/client_from_deepseek_reasoning.sse"),
    ],
)
def test_render_golden(
    upstream: str, parser: type[AnthropicStreamParser] | type[ChatStreamParser], expected: str
) -> None:
    p = parser()
    wire = golden(upstream)
    events = [e for i in range(0, len(wire), 29) for e in p.feed(wire[i : i + 29])] + p.close()
    assert render_all(_stream_request(), events) == golden(expected)


def _sse_events(wire: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in wire.split(b"\n\n"):
        if block:
            name, data = block.split(b"\n")
            out.append((name[len(b"event: ") :].decode(), orjson.loads(data[len(b"data: ") :])))
    return out


def test_rendered_stream_follows_the_event_grammar() -> None:
    """Every rendered stream: message_start first, each block start/deltas/stop with matching
    increasing indices, one message_delta, message_stop last; event name == data.type."""
    for name in (
        "client_text.sse",
        "client_thinking_tools.sse",
        "client_from_openai_tools.sse",
        "client_from_deepseek_reasoning.sse",
        "client_server_tools.sse",
    ):
        events = _sse_events(golden("anthropic/" + name))
        assert all(ev == data["type"] for ev, data in events)
        kinds = [ev for ev, _ in events if ev != "ping"]
        assert kinds[0] == "message_start"
        assert kinds[-2:] == ["message_delta", "message_stop"]
        start_usage = events[0][1]["message"]["usage"]
        assert set(start_usage) >= {
            "input_tokens",
            "output_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
        }
        open_idx, next_idx = None, 0
        for ev, data in events[1:-2]:
            if ev == "content_block_start":
                assert open_idx is None
                assert data["index"] == next_idx
                open_idx, next_idx = data["index"], next_idx + 1
            elif ev in ("content_block_delta", "content_block_stop"):
                assert data["index"] == open_idx
                if ev == "content_block_stop":
                    open_idx = None
        assert open_idx is None


def test_renderer_frames_a_stream_that_had_no_start() -> None:
    renderer = AnthropicIngress().stream_renderer(_stream_request())
    out = (
        renderer.render(TextDelta(0, "hi"))
        + renderer.render(StreamFinish(FinishReason.MAX_TOKENS))
        + renderer.close()
    )
    kinds = [ev for ev, _ in _sse_events(out)]
    assert kinds == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert _sse_events(out)[-2][1]["delta"]["stop_reason"] == "max_tokens"


def test_stream_error_event_renders_nothing_for_the_edge_to_end_the_stream() -> None:
    renderer = AnthropicIngress().stream_renderer(_stream_request())
    renderer.render(StreamStart("msg_1", "x", usage=Usage(3, 1)))
    assert renderer.render(StreamError(ErrorKind.UPSTREAM_TIMEOUT, "upstream timed out")) == b""


# ------------------------------------------------------------------------------ provider errors


def test_upstream_errors() -> None:
    p = AnthropicProvider()
    rl = p.parse_error(
        429,
        b'{"type":"error","error":{"type":"rate_limit_error","message":"Too many tokens"}}',
        {"retry-after": "7"},
    )
    assert (rl.kind, rl.retry_after_ms, rl.upstream_type) == (
        ErrorKind.UPSTREAM_RATE_LIMITED,
        7000,
        "rate_limit_error",
    )
    assert rl.message == "Too many tokens"
    ov = p.parse_error(
        529, b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}', {}
    )
    assert ov.kind is ErrorKind.UPSTREAM_OVERLOADED
    api = p.parse_error(
        500, b'{"type":"error","error":{"type":"api_error","message":"Internal server error"}}', {}
    )
    assert (api.kind, api.message) == (ErrorKind.UPSTREAM_ERROR, "Internal server error")
    assert (
        p.parse_error(
            401, b'{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}', {}
        ).kind
        is ErrorKind.UPSTREAM_AUTH
    )
    assert (
        p.parse_error(
            400, b'{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}', {}
        ).kind
        is ErrorKind.UPSTREAM_INVALID_REQUEST
    )
    assert p.parse_error(502, b"<html>bad gateway</html>", {}).kind is ErrorKind.UPSTREAM_ERROR


# ---------------------------------------------------------------------- OpenAI chat ingress -> Anthropic


OPENAI_BODY: dict[str, Any] = {
    "model": "anthropic/claude-sonnet-4.6",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather in Paris and the time?"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/paris.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "Unsigned reasoning from another vendor.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "wx", "arguments": '{"city":"Paris"}'},
                },
                {"id": "call_2", "type": "function", "function": {"name": "time", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "noon"},
    ],
    "tools": [
        {
            "type": "function",
            "function": {"name": "wx", "description": "Weather", "parameters": {"type": "object"}},
        },
        {"type": "function", "function": {"name": "time", "parameters": {"type": "object"}}},
    ],
    "tool_choice": "required",
    "parallel_tool_calls": False,
    "reasoning_effort": "high",
    "max_completion_tokens": 20000,
    "stop": ["END"],
    "safety_identifier": "user-7",
    "stream": True,
}


def test_openai_chat_request_to_anthropic_upstream() -> None:
    req = ChatIngress().parse_request(orjson.dumps(OPENAI_BODY), {})
    up = AnthropicProvider().build_request(req, "claude-sonnet-4-6", "k")
    assert orjson.loads(up.body) == {
        "model": "claude-sonnet-4-6",
        "max_tokens": 20000,
        "system": "Be brief.",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather in Paris and the time?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/paris.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "call_1", "name": "wx", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "call_2", "name": "time", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": "noon"},
                ],
            },
        ],
        "stream": True,
        "stop_sequences": ["END"],
        "tools": [
            {"name": "wx", "description": "Weather", "input_schema": {"type": "object"}},
            {"name": "time", "input_schema": {"type": "object"}},
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        # No thinking: the tool choice forces a call, and the tool turn has no signed thinking.
        "metadata": {"user_id": "user-7"},
    }


def test_thinking_budget_leaves_the_answer_room_below_max_tokens() -> None:
    req = Request(
        "m", [Message("user", [TextPart("x")])], max_tokens=3000, reasoning=ReasoningConfig(effort="high")
    )
    assert orjson.loads(AnthropicProvider().build_request(req, "c", "").body)["thinking"] == {
        "type": "enabled",
        "budget_tokens": 1500,
    }
    req.max_tokens = 20000  # room enough: the effort's own budget
    assert (
        orjson.loads(AnthropicProvider().build_request(req, "c", "").body)["thinking"]["budget_tokens"]
        == 16384
    )
    req.max_tokens = 2000  # half is below the minimum budget: thinking is left off
    assert "thinking" not in orjson.loads(AnthropicProvider().build_request(req, "c", "").body)


def test_without_a_client_limit_claude_gets_the_models_output_limit() -> None:
    """As an OpenAI model allows its whole limit when none is set, and admission reserved it."""
    req = Request("m", [Message("user", [TextPart("x")])], reasoning=ReasoningConfig(effort="medium"))
    body = orjson.loads(AnthropicProvider(default_max_tokens=8192).build_request(req, "c", "").body)
    assert body["max_tokens"] == 8192  # the catalog's limit unknown
    req.output_limit = 64000
    body = orjson.loads(AnthropicProvider().build_request(req, "c", "").body)
    assert body["max_tokens"] == 64000
    assert body["thinking"]["budget_tokens"] == 8192


def _chat_to_claude(**kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "anthropic/claude-sonnet-4.6",
        "messages": [{"role": "user", "content": "wx?"}],
        "reasoning_effort": "low",
        **kw,
    }
    req = ChatIngress().parse_request(orjson.dumps(body), {})
    out: dict[str, Any] = orjson.loads(AnthropicProvider().build_request(req, "c", "").body)
    return out


_CHAT_TOOL = {"type": "function", "function": {"name": "wx", "parameters": {"type": "object"}}}
_CHAT_TOOL_TURN = [
    {"role": "user", "content": "wx?"},
    {
        "role": "assistant",
        "content": None,
        "reasoning_content": "unsigned",
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "wx", "arguments": "{}"}}],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
]


def test_thinking_is_left_off_where_anthropic_refuses_it() -> None:
    assert _chat_to_claude()["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert "thinking" in _chat_to_claude(tools=[_CHAT_TOOL], tool_choice="auto")
    # A forced tool call: "Thinking may not be enabled when tool_choice forces tool use".
    assert "thinking" not in _chat_to_claude(tools=[_CHAT_TOOL], tool_choice="required")
    named = {"type": "function", "function": {"name": "wx"}}
    assert "thinking" not in _chat_to_claude(tools=[_CHAT_TOOL], tool_choice=named)
    # A tool turn whose assistant message cannot start with a signed thinking block.
    body = _chat_to_claude(messages=_CHAT_TOOL_TURN, tools=[_CHAT_TOOL])
    assert [b["type"] for b in body["messages"][1]["content"]] == ["tool_use"]
    assert "thinking" not in body
    # The same with a user message after the results: still one tool-result turn for Anthropic.
    more = [*_CHAT_TOOL_TURN, {"role": "user", "content": "and tomorrow?"}]
    assert "thinking" not in _chat_to_claude(messages=more, tools=[_CHAT_TOOL])
    # A turn that ended in text is no tool turn.
    done = [*_CHAT_TOOL_TURN, {"role": "assistant", "content": "Sunny."}, {"role": "user", "content": "ok"}]
    assert "thinking" in _chat_to_claude(messages=done, tools=[_CHAT_TOOL])


def test_a_tool_turn_with_signed_thinking_keeps_thinking() -> None:
    turn = [
        Message("user", [TextPart("wx?")]),
        Message(
            "assistant",
            [
                ReasoningPart("t", signature=SIG, provider=Protocol.ANTHROPIC_MESSAGES),
                ToolCallPart("call_1", "wx", "{}"),
            ],
        ),
        Message("tool", [ToolResultPart("call_1", [TextPart("sunny")])]),
    ]
    req = Request(
        "m",
        turn,
        tools=[Tool("wx")],
        reasoning=ReasoningConfig(effort="low"),
        ingress=Protocol.OPENAI_RESPONSES,
    )
    body = orjson.loads(AnthropicProvider().build_request(req, "c", "").body)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}


def test_an_anthropic_client_gets_its_thinking_and_sampling_as_sent() -> None:
    body = _with(
        messages=[
            {"role": "user", "content": "wx?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "wx", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}]},
        ],
        tools=[{"name": "wx", "input_schema": {"type": "object"}}],
        tool_choice={"type": "any"},
        thinking={"type": "enabled", "budget_tokens": 1024},
        temperature=0.5,
        top_p=0.5,
        top_k=5,
    )
    sent = orjson.loads(AnthropicProvider().build_request(parse(body), "c", "").body)
    for key in ("thinking", "tool_choice", "temperature", "top_p", "top_k"):
        assert sent[key] == body[key]


@pytest.mark.parametrize(
    ("sampling", "effort", "sent"),
    [
        ({"temperature": 0.3, "top_p": 0.9}, None, {"temperature": 0.3}),
        ({"top_p": 0.9}, None, {"top_p": 0.9}),
        ({"temperature": 1.7}, None, {"temperature": 1}),
        ({"temperature": 0.3}, "low", {}),
        ({"temperature": 1, "top_p": 0.9}, "low", {"temperature": 1}),
        ({"top_p": 0.9}, "low", {}),
        ({"top_p": 0.97}, "low", {"top_p": 0.97}),
        ({"temperature": 2, "top_p": 1}, "low", {"temperature": 1}),
    ],
)
def test_openai_sampling_is_fitted_to_anthropic(
    sampling: dict[str, Any], effort: str | None, sent: dict[str, Any]
) -> None:
    body = _chat_to_claude(**sampling, reasoning_effort=effort)
    assert ("thinking" in body) is (effort is not None)
    assert {k: body[k] for k in ("temperature", "top_p", "top_k") if k in body} == sent


def test_anthropic_stream_to_openai_chat_client_keeps_thinking_and_tool_arguments() -> None:
    events = decode(golden("anthropic/upstream_thinking_tools.sse"), 41)
    req = ChatIngress().parse_request(
        orjson.dumps(
            {
                "model": "anthropic/claude-sonnet-4.6",
                "messages": [{"role": "user", "content": "wx?"}],
                "stream": True,
                "stream_options": {"include_usage": True},
            }
        ),
        {},
    )
    renderer = ChatIngress().stream_renderer(req)
    wire = b"".join(renderer.render(e) for e in events) + renderer.close()
    chunks = [orjson.loads(line[6:]) for line in wire.split(b"\n\n") if line and line != b"data: [DONE]"]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert (
        "".join(d.get("reasoning_content", "") for d in deltas)
        == "The user wants the weather. I should call get_weather."
    )
    assert "".join(d.get("content") or "" for d in deltas) == "Let me look that up."
    calls = [tc for d in deltas for tc in d.get("tool_calls", [])]
    assert calls[0]["id"] == "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
    assert "".join(tc["function"]["arguments"] for tc in calls) == '{"location": "San Francisco, CA"}'
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
    usage = chunks[-1]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (2130, 89)
    assert usage["prompt_tokens_details"]["cached_tokens"] == 2000
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 41


def test_anthropic_message_to_openai_chat_client() -> None:
    resp = AnthropicProvider().parse_response(orjson.dumps(UPSTREAM_MESSAGE))
    req = ChatIngress().parse_request(
        orjson.dumps(
            {"model": "anthropic/claude-sonnet-4.6", "messages": [{"role": "user", "content": "x"}]}
        ),
        {},
    )
    out = orjson.loads(ChatIngress().render_response(resp, req))
    msg = out["choices"][0]["message"]
    assert msg["reasoning_content"] == "Need the tool."
    assert msg["content"] == "Checking."
    assert msg["tool_calls"] == [
        {
            "id": "toolu_01B",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location":"Paris","unit":"c"}'},
        }
    ]
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert out["usage"]["prompt_tokens"] == 1550
    assert out["usage"]["prompt_tokens_details"]["cached_tokens"] == 1500


def test_signed_thinking_round_trips_but_foreign_reasoning_is_not_sent_to_anthropic() -> None:
    req = Request(
        "m",
        [
            Message("user", [TextPart("q")]),
            Message(
                "assistant",
                [
                    ReasoningPart("signed", signature=SIG, provider=Protocol.ANTHROPIC_MESSAGES),
                    ReasoningPart("from deepseek", provider=Protocol.OPENAI_CHAT),
                    ReasoningPart("", signature=None),
                    TextPart("a"),
                ],
            ),
        ],
        max_tokens=10,
    )
    body = orjson.loads(AnthropicProvider().build_request(req, "c", "").body)
    assert body["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "signed", "signature": SIG},
        {"type": "text", "text": "a"},
    ]


def test_empty_signature_from_another_vendor_is_not_treated_as_signed() -> None:
    req = parse(
        _with(
            messages=[
                {"role": "user", "content": "q"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "t", "signature": ""},
                        {"type": "text", "text": "a"},
                    ],
                },
                {"role": "user", "content": "more"},
            ]
        )
    )
    body = orjson.loads(AnthropicProvider().build_request(req, "c", "").body)
    assert body["messages"][1]["content"] == [{"type": "text", "text": "a"}]


def test_response_with_foreign_ids_and_invalid_tool_json() -> None:
    resp = Response(
        "chatcmpl-1",
        "gpt",
        [ToolCallPart("call_9", "f", '{"a": 1'), ToolCallPart("call_8", "g", "")],
        FinishReason.TOOL_USE,
        Usage(10, 2, 4, 0, 0),
    )
    out = orjson.loads(AnthropicIngress().render_response(resp, parse(_MIN)))
    assert out["id"] == "msg_chatcmpl-1"
    assert out["content"] == [
        {"type": "tool_use", "id": "call_9", "name": "f", "input": {"_raw": '{"a": 1'}},
        {"type": "tool_use", "id": "call_8", "name": "g", "input": {}},
    ]
    assert out["usage"] == {
        "input_tokens": 6,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 4,
        "output_tokens": 2,
    }


def test_documents_reach_claude_as_sent_and_text_never_as_a_base64_source() -> None:
    # Anthropic takes base64 documents as application/pdf only; plain text has a text source.
    text_doc = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": "Grass is green."},
        "title": "Facts",
        "context": "From the handbook",
        "citations": {"enabled": True},
    }
    url_doc = {
        "type": "document",
        "source": {"type": "url", "url": "https://x.test/a.pdf"},
        "citations": {"enabled": False},
    }
    file_doc = {"type": "document", "source": {"type": "file", "file_id": "file_011abc"}}
    body = {
        "model": "m",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": [text_doc, url_doc, file_doc]}],
    }
    sent = orjson.loads(AnthropicProvider().build_request(parse(body), "claude-sonnet-4-6", "").body)
    assert sent["messages"] == body["messages"]

    chat = ChatIngress().parse_request(
        orjson.dumps(
            {
                "model": "m",
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "file",
                                "file": {
                                    "file_data": "data:text/plain;base64,aGkgdGhlcmU=",
                                    "filename": "n.txt",
                                },
                            }
                        ],
                    }
                ],
            }
        ),
        {},
    )
    sent = orjson.loads(AnthropicProvider().build_request(chat, "claude-sonnet-4-6", "").body)
    assert sent["messages"][0]["content"] == [
        {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": "hi there"},
            "title": "n.txt",
        }
    ]


def test_a_file_a_vendor_cannot_take_is_refused_naming_the_clients_field() -> None:
    from crossmodel_protocols.gemini import GeminiProvider
    from crossmodel_protocols.openai_chat import ChatProvider, Dialect
    from crossmodel_protocols.openai_responses import ResponsesIngress, ResponsesProvider

    def responses(part: dict[str, Any]) -> Request:
        body = {
            "model": "m",
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "x"}, part]}],
        }
        return ResponsesIngress().parse_request(orjson.dumps(body), {})

    cases = [
        # Chat's file part has no URL field: the document would arrive as {"file": {}}.
        (
            ChatProvider(),
            responses({"type": "input_file", "file_url": "https://x.test/a.pdf"}),
            "input[0].content[1].file_url",
        ),
        (
            ChatProvider(),
            parse(
                {
                    "model": "m",
                    "max_tokens": 9,
                    "messages": [
                        {
                            "role": "user",
                            "content": [
                                {"type": "document", "source": {"type": "url", "url": "https://x.test/a.pdf"}}
                            ],
                        }
                    ],
                }
            ),
            "messages[0].content[0].source.url",
        ),
        # An OpenAI file id names nothing at Anthropic or Google.
        (
            AnthropicProvider(),
            responses({"type": "input_file", "file_id": "file-abc"}),
            "input[0].content[1].file_id",
        ),
        (
            GeminiProvider(),
            ChatIngress().parse_request(
                orjson.dumps(
                    {
                        "model": "m",
                        "messages": [
                            {"role": "user", "content": [{"type": "file", "file": {"file_id": "file-abc"}}]}
                        ],
                    }
                ),
                {},
            ),
            "messages[0].content[0].file.file_id",
        ),
    ]
    # An Anthropic file id names nothing at OpenAI (chat or Responses) or DeepSeek, nor does an
    # OpenAI one at DeepSeek: a file id reaches only the vendor of the client's protocol.
    anthropic_file = parse(
        {
            "model": "m",
            "max_tokens": 9,
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "document", "source": {"type": "file", "file_id": "file_01"}}],
                }
            ],
        }
    )
    cases += [
        (ChatProvider(), anthropic_file, "messages[0].content[0].source.file_id"),
        (ChatProvider(Dialect.DEEPSEEK), anthropic_file, "messages[0].content[0].source.file_id"),
        (ResponsesProvider(), anthropic_file, "messages[0].content[0].source.file_id"),
        (ChatProvider(Dialect.DEEPSEEK), cases[-1][1], "messages[0].content[0].file.file_id"),
    ]
    for provider, req, param in cases:
        with pytest.raises(InvalidRequest) as e:
            provider.build_request(req, "m", "")
        assert (e.value.param, e.value.code) == (param, "unsupported_value")
