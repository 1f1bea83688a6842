from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from crossmodel_protocols.anthropic import AnthropicProvider
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
from crossmodel_protocols.openai_chat import (
    ChatIngress,
    ChatPassthrough,
    ChatProvider,
    ChatStreamParser,
    Dialect,
    passthrough_body,
    passthrough_response,
)

GOLDEN = Path(__file__).parent / "golden"


def golden(name: str) -> bytes:
    return (GOLDEN / name).read_bytes()


def parse(body: dict[str, Any]) -> Request:
    return ChatIngress().parse_request(orjson.dumps(body), {})


def feed_in_pieces(parser: ChatStreamParser, wire: bytes, size: int) -> list[StreamEvent]:
    events: list[StreamEvent] = []
    for i in range(0, len(wire), size):
        events.extend(parser.feed(wire[i : i + size]))
    events.extend(parser.close())
    return events


def render_all(request: Request, events: list[StreamEvent]) -> bytes:
    renderer = ChatIngress().stream_renderer(request)
    return b"".join(renderer.render(e) for e in events) + renderer.close()


# ------------------------------------------------------------------------------ ingress parse


def test_parse_full_request() -> None:
    req = parse(
        {
            "model": "openai/gpt-4.1",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Use metric."}]},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Weather here?"},
                        {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "low"}},
                        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": None,
                    "reasoning_content": "They want weather.",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "wx", "arguments": '{"c":"P"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            ],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_completion_tokens": 100,
            "temperature": 0.5,
            "stop": "END",
            "tools": [{"type": "function", "function": {"name": "wx", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "wx"}},
            "parallel_tool_calls": False,
            "response_format": {"type": "json_object"},
            "reasoning_effort": "low",
            "safety_identifier": "user-7",
            "user": "legacy",
            "logprobs": True,
        }
    )
    assert req.model == "openai/gpt-4.1"
    assert req.system == [SystemPart("Be brief."), SystemPart("Use metric.", role="developer")]
    assert req.messages[0] == Message(
        "user",
        [
            TextPart("Weather here?"),
            ImagePart(url="https://x.test/a.png", detail="low"),
            ImagePart(data="AAAA", media_type="image/jpeg"),
        ],
    )
    assert req.messages[1] == Message(
        "assistant", [ReasoningPart("They want weather."), ToolCallPart("call_1", "wx", '{"c":"P"}')]
    )
    assert req.messages[2] == Message("tool", [ToolResultPart("call_1", [TextPart("sunny")])])
    assert req.stream
    assert req.include_usage
    assert req.max_tokens == 100
    assert req.temperature == 0.5
    assert req.stop == ["END"]
    assert req.tools == [Tool("wx", parameters={"type": "object"})]
    assert req.tool_choice == ToolChoice("tool", "wx", disable_parallel=True)
    assert req.response_format is not None
    assert req.response_format.type == "json_object"
    assert req.reasoning == ReasoningConfig(effort="low")
    assert req.end_user == "user-7"  # safety_identifier wins over the legacy user field
    assert req.logprobs
    assert req.extra == {}


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "model", "missing_required_parameter"),
        ({"model": 3, "messages": []}, "model", "invalid_type"),
        ({"model": "m"}, "messages", "missing_required_parameter"),
        ({"model": "m", "messages": []}, "messages", "empty_array"),
        ({"model": "m", "messages": "hi"}, "messages", "invalid_type"),
        (
            {"model": "m", "messages": [{"role": "wizard", "content": "x"}]},
            "messages[0].role",
            "invalid_value",
        ),
        ({"model": "m", "messages": [{"content": "x"}]}, "messages[0].role", "missing_required_parameter"),
        ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages[0].content", "invalid_type"),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "messages[0].content[0].text",
            "missing_required_parameter",
        ),
        (
            {
                "model": "m",
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}
                ],
            },
            "messages[0].content[0].image_url.url",
            "invalid_value",
        ),
        (
            {"model": "m", "messages": [{"role": "tool", "content": "x"}]},
            "messages[0].tool_call_id",
            "missing_required_parameter",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 3},
            "temperature",
            "invalid_value",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"},
            "temperature",
            "invalid_type",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
            "max_tokens",
            "invalid_value",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": "yes"},
            "stream",
            "invalid_type",
        ),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 0}, "n", "invalid_value"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 129}, "n", "invalid_value"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": "2"}, "n", "invalid_type"),
        (
            {
                "model": "m",
                "messages": [{"role": "user", "content": "x"}],
                "functions": [{"name": "f", "parameters": {"type": "object"}}],
            },
            "functions",
            "unsupported_parameter",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "function_call": "auto"},
            "function_call",
            "unsupported_parameter",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": ["a"] * 5},
            "stop",
            "array_above_max_length",
        ),
        (
            {
                "model": "m",
                "messages": [{"role": "user", "content": "x"}],
                "stream_options": {"include_usage": True},
            },
            "stream_options",
            "invalid_value",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "maybe"},
            "tool_choice",
            "invalid_value",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]},
            "tools[0].function",
            "missing_required_parameter",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "required"},
            "tool_choice",
            "invalid_value",
        ),
        (
            {
                "model": "m",
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function", "function": {"name": "a"}}],
                "tool_choice": {"type": "function", "function": {"name": "b"}},
            },
            "tool_choice.function.name",
            "invalid_value",
        ),
        (
            {
                "model": "m",
                "messages": [{"role": "user", "content": "x"}],
                "response_format": {"type": "xml"},
            },
            "response_format.type",
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


@pytest.mark.parametrize("body", [b"{not json", b"[1,2]", b""])
def test_malformed_json_is_invalid_request(body: bytes) -> None:
    with pytest.raises(InvalidRequest):
        ChatIngress().parse_request(body, {})


# ------------------------------------------------------------------------------ provider build


def test_provider_always_asks_usage_in_streams() -> None:
    req = parse(
        {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    )
    up = ChatProvider().build_request(req, "gpt-4o-mini", "sk-test")
    body = orjson.loads(up.body)
    assert body["stream_options"] == {"include_usage": True}
    assert body["model"] == "gpt-4o-mini"
    assert up.path == "/chat/completions"
    assert up.headers["authorization"] == "Bearer sk-test"
    assert up.stream


def test_provider_body_per_dialect() -> None:
    req = Request(
        model="x/y",
        system=[SystemPart("sys", role="developer")],
        messages=[
            Message("user", [TextPart("look"), ImagePart(data="QUJD", media_type="image/png")]),
            Message("assistant", [ReasoningPart("hmm"), ToolCallPart("c1", "f", '{"a":1}')]),
            Message("tool", [ToolResultPart("c1", [TextPart("ok")])]),
        ],
        max_tokens=50,
        tools=[Tool("f", description="d", parameters={"type": "object", "properties": {}})],
        tool_choice=ToolChoice("required", disable_parallel=True),
        end_user="u1",
        reasoning=ReasoningConfig(budget_tokens=8000),
    )
    openai = orjson.loads(ChatProvider(Dialect.OPENAI).build_request(req, "gpt-4.1", "").body)
    assert openai == {
        "model": "gpt-4.1",
        "messages": [
            {"role": "developer", "content": "sys"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        ],
        "max_completion_tokens": 50,
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "f",
                    "description": "d",
                    "parameters": {"type": "object", "properties": {}},
                },
            }
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "reasoning_effort": "medium",
        "safety_identifier": "u1",
    }
    deepseek = orjson.loads(ChatProvider(Dialect.DEEPSEEK).build_request(req, "deepseek-reasoner", "").body)
    assert deepseek["messages"][0] == {"role": "system", "content": "sys"}
    assert deepseek["messages"][2]["reasoning_content"] == "hmm"
    assert deepseek["max_tokens"] == 50
    assert "safety_identifier" not in deepseek
    assert "reasoning_effort" not in deepseek


def test_extra_fields_reach_only_openai_family_from_chat_ingress() -> None:
    req = parse({"model": "m", "messages": [{"role": "user", "content": "x"}], "top_k": 3})
    body = orjson.loads(ChatProvider().build_request(req, "up", "").body)
    assert body["top_k"] == 3


def test_passthrough_body_keeps_client_fields_and_forces_usage() -> None:
    req = parse(
        {
            "model": "openai/gpt-4o-mini",
            "messages": [{"role": "developer", "content": "d"}, {"role": "user", "content": "x"}],
            "stream": True,
            "logprobs": True,
            "max_completion_tokens": 9,
            "user": "u",
        }
    )
    body = orjson.loads(passthrough_body(req, "gpt-4o-mini", Dialect.OPENAI))
    assert body["model"] == "gpt-4o-mini"
    assert body["stream_options"] == {"include_usage": True}
    assert body["logprobs"] is True
    assert body["max_completion_tokens"] == 9
    assert body["user"] == "u"
    ds = orjson.loads(passthrough_body(req, "deepseek-chat", Dialect.DEEPSEEK))
    assert ds["max_tokens"] == 9
    assert "max_completion_tokens" not in ds
    assert "user" not in ds
    assert ds["messages"][0]["role"] == "system"
    assert req.raw is not None
    assert req.raw["model"] == "openai/gpt-4o-mini"


@pytest.mark.parametrize("dialect", [Dialect.DEEPSEEK, Dialect.COMPATIBLE])
def test_passthrough_max_completion_tokens_wins_over_max_tokens(dialect: Dialect) -> None:
    """The limit admission reserved for is the one the vendor gets, whatever else was sent."""
    req = parse(
        {
            "model": "deepseek/deepseek-chat",
            "messages": [{"role": "user", "content": "x"}],
            "max_completion_tokens": 2,
            "max_tokens": 8000,
        }
    )
    assert req.max_tokens == 2
    body = orjson.loads(passthrough_body(req, "up", dialect))
    assert body["max_tokens"] == 2
    assert "max_completion_tokens" not in body


# ------------------------------------------------------------------------------ stream decode


@pytest.mark.parametrize("size", [1, 7, 64, 100_000])
def test_decode_text_stream(size: int) -> None:
    events = feed_in_pieces(ChatStreamParser(), golden("openai_upstream_text.sse"), size)
    assert events == [
        StreamStart(
            "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
            "gpt-4o-mini-2024-07-18",
            1741569952,
            None,
            "fp_06737a9306",
        ),
        BlockStart(0, TextPart("")),
        TextDelta(0, "Hello"),
        TextDelta(0, " there!"),
        BlockStop(0),
        StreamFinish(FinishReason.END_TURN),
        UsageUpdate(Usage(19, 3, 0, 0, 0)),
    ]


def test_decode_parallel_tool_calls_with_streamed_arguments() -> None:
    events = feed_in_pieces(ChatStreamParser(), golden("openai_upstream_tools.sse"), 33)
    assert events[1:] == [
        BlockStart(0, ToolCallPart("call_DdmO9pD3xa9XTPNJ32zg2hcA", "get_weather")),
        ToolArgumentsDelta(0, '{"loc'),
        ToolArgumentsDelta(0, 'ation": "Paris"}'),
        BlockStop(0),
        BlockStart(1, ToolCallPart("call_2", "get_time")),
        ToolArgumentsDelta(1, '{"tz":"CET"}'),
        BlockStop(1),
        StreamFinish(FinishReason.TOOL_USE),
        UsageUpdate(Usage(80, 40, 64, 0, 0)),
    ]


def test_decode_deepseek_reasoning() -> None:
    events = feed_in_pieces(ChatStreamParser(), golden("deepseek_upstream_reasoning.sse"), 50)
    kinds = [e.kind for e in events]
    assert kinds == [
        "start",
        "block_start",
        "reasoning_delta",
        "block_stop",
        "block_start",
        "text_delta",
        "block_stop",
        "finish",
        "usage",
    ]
    assert events[2] == ReasoningDelta(0, "Let me think.")
    assert events[-1] == UsageUpdate(Usage(12, 9, 0, 0, 5))


# ------------------------------------------------------------------------------ stream render


def _stream_request(model: str, include_usage: bool) -> Request:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    return parse(body)


@pytest.mark.parametrize(
    ("upstream", "model", "include_usage", "expected"),
    [
        ("openai_upstream_text.sse", "openai/gpt-4o-mini", True, "chat_client_text_usage.sse"),
        ("openai_upstream_text.sse", "openai/gpt-4o-mini", False, "chat_client_text_no_usage.sse"),
        ("openai_upstream_tools.sse", "openai/gpt-4.1", False, "chat_client_tools.sse"),
        (
            "deepseek_upstream_reasoning.sse",
            "deepseek/deepseek-v4-pro",
            True,
            "chat_client_reasoning_usage.sse",
        ),
    ],
)
def test_canonical_path_renders_golden(upstream: str, model: str, include_usage: bool, expected: str) -> None:
    events = feed_in_pieces(ChatStreamParser(), golden(upstream), 41)
    assert render_all(_stream_request(model, include_usage), events) == golden(expected)


@pytest.mark.parametrize(
    ("include_usage", "expected"),
    [(True, "chat_client_text_usage.sse"), (False, "chat_client_text_no_usage.sse")],
)
def test_passthrough_renders_the_same_golden(include_usage: bool, expected: str) -> None:
    wire = golden("openai_upstream_text.sse")
    pt = ChatPassthrough(_stream_request("openai/gpt-4o-mini", include_usage))
    out = b"".join(pt.feed(wire[i : i + 13]) for i in range(0, len(wire), 13)) + pt.flush()
    assert out == golden(expected)
    assert pt.usage == Usage(19, 3, 0, 0, 0)
    assert pt.finish_reason is FinishReason.END_TURN
    assert pt.done
    assert pt.output_chars == len("Hello there!")


def test_renderer_without_upstream_start_still_leads_with_role_and_ends_with_done() -> None:
    req = _stream_request("a/b", False)
    renderer = ChatIngress().stream_renderer(req)
    out = renderer.render(TextDelta(0, "x")) + renderer.close()
    lines = [line for line in out.split(b"\n\n") if line]
    assert orjson.loads(lines[0][6:])["choices"][0]["delta"] == {
        "role": "assistant",
        "content": "",
        "refusal": None,
    }
    assert orjson.loads(lines[1][6:])["choices"][0]["delta"] == {"content": "x"}
    assert lines[-1] == b"data: [DONE]"


# ------------------------------------------------------------------------------ non-stream


UPSTREAM_JSON = {
    "id": "chatcmpl-abc",
    "object": "chat.completion",
    "created": 1741569952,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 30,
        "completion_tokens": 7,
        "total_tokens": 37,
        "prompt_tokens_details": {"cached_tokens": 16, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 2, "audio_tokens": 0},
    },
    "service_tier": "default",
    "system_fingerprint": "fp_1",
}


def test_parse_and_render_non_stream_response() -> None:
    resp = ChatProvider().parse_response(orjson.dumps(UPSTREAM_JSON))
    assert resp.content == [ToolCallPart("call_1", "f", "{}")]
    assert resp.finish_reason is FinishReason.TOOL_USE
    assert resp.usage == Usage(30, 7, 16, 0, 2)
    req = parse({"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
    out = orjson.loads(ChatIngress().render_response(resp, req))
    expected = dict(UPSTREAM_JSON, model="openai/gpt-4o-mini")
    expected["usage"] = {
        **UPSTREAM_JSON["usage"],  # type: ignore[dict-item]
        "completion_tokens_details": {
            "reasoning_tokens": 2,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    assert out == expected


def test_render_reasoning_as_reasoning_content_never_text() -> None:
    resp = Response(
        "r1", "x", [ReasoningPart("think"), TextPart("answer")], FinishReason.END_TURN, Usage(1, 2)
    )
    req = parse({"model": "anthropic/claude-sonnet-4.6", "messages": [{"role": "user", "content": "x"}]})
    msg = orjson.loads(ChatIngress().render_response(resp, req))["choices"][0]["message"]
    assert msg["content"] == "answer"
    assert msg["reasoning_content"] == "think"


def test_passthrough_response_replaces_model_and_reports_usage() -> None:
    req = parse({"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
    body, parsed = passthrough_response(orjson.dumps(UPSTREAM_JSON), req)
    assert orjson.loads(body) == dict(UPSTREAM_JSON, model="openai/gpt-4o-mini")
    assert parsed.usage == Usage(30, 7, 16, 0, 2)


def test_upstream_error_mapping() -> None:
    p = ChatProvider()
    body = orjson.dumps(
        {"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}}
    )
    err = p.parse_error(429, body, {"retry-after": "2"})
    assert err.kind is ErrorKind.UPSTREAM_RATE_LIMITED
    assert err.retry_after_ms == 2000
    assert err.message == "slow down"
    assert p.parse_error(500, b"oops", {}).kind is ErrorKind.UPSTREAM_ERROR
    assert p.parse_error(401, b"{}", {}).kind is ErrorKind.UPSTREAM_AUTH
    assert p.parse_error(400, b"{}", {}).kind is ErrorKind.UPSTREAM_INVALID_REQUEST


def test_error_inside_upstream_stream_becomes_stream_error() -> None:
    events = ChatStreamParser().feed(b'data: {"error":{"message":"overloaded","type":"server_error"}}\n\n')
    assert len(events) == 1
    assert events[0].kind == "error"


def test_several_choices_pass_through_to_openai_family_and_are_refused_elsewhere() -> None:
    req = parse({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 3})
    assert req.n == 3
    for dialect in Dialect:
        assert orjson.loads(passthrough_body(req, "up", dialect))["n"] == 3
    # The canonical answer holds one choice: the canonical path refuses rather than drop two.
    for provider in (ChatProvider(), AnthropicProvider(), GeminiProvider()):
        with pytest.raises(InvalidRequest) as caught:
            provider.build_request(req, "up", "sk")
        assert caught.value.param == "n"
        assert caught.value.code == "unsupported_value"
    one = parse({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 1})
    for provider in (ChatProvider(), AnthropicProvider(), GeminiProvider()):
        provider.build_request(one, "up", "sk")


def _anthropic(body: dict[str, Any]) -> Request:
    from crossmodel_protocols.anthropic import AnthropicIngress

    base = {"model": "m", "max_tokens": 4096, "messages": [{"role": "user", "content": "x"}]}
    return AnthropicIngress().parse_request(orjson.dumps({**base, **body}), {})


@pytest.mark.parametrize(
    ("thinking", "capabilities", "effort"),
    [
        # OpenAI answers 400 unsupported_parameter to reasoning_effort on a model without reasoning.
        ({"type": "enabled", "budget_tokens": 8000}, frozenset({"tools"}), None),
        ({"type": "enabled", "budget_tokens": 8000}, frozenset({"reasoning"}), "medium"),
        ({"type": "enabled", "budget_tokens": 1024}, None, "low"),
        # No effort turns reasoning off on every OpenAI reasoning model (o4-mini takes low-high).
        ({"type": "disabled"}, frozenset({"reasoning"}), None),
        ({"type": "disabled"}, frozenset({"tools"}), None),
        ({"type": "adaptive"}, frozenset({"reasoning"}), None),
    ],
)
def test_reasoning_effort_only_for_reasoning_models(
    thinking: dict[str, Any], capabilities: frozenset[str] | None, effort: str | None
) -> None:
    req = _anthropic({"thinking": thinking})
    req.capabilities = capabilities
    body = orjson.loads(ChatProvider(Dialect.OPENAI).build_request(req, "gpt-4.1", "").body)
    assert body.get("reasoning_effort") == effort


def test_a_chat_clients_own_effort_is_sent_as_given_to_reasoning_models() -> None:
    req = parse({"model": "m", "messages": [{"role": "user", "content": "x"}], "reasoning_effort": "none"})
    req.capabilities = frozenset({"reasoning"})
    assert orjson.loads(ChatProvider().build_request(req, "gpt-5.1", "").body)["reasoning_effort"] == "none"
    req.capabilities = frozenset()
    assert "reasoning_effort" not in orjson.loads(ChatProvider().build_request(req, "gpt-4.1", "").body)


CLAUDE_CODE_USER = "user_" + "ab" * 32 + "_account__session_" + "cd" * 16


def test_end_user_ids_over_64_characters_reach_openai_as_their_sha256() -> None:
    import hashlib

    from crossmodel_protocols.openai_responses import OpenAIProvider, ResponsesIngress

    hashed = hashlib.sha256(CLAUDE_CODE_USER.encode()).hexdigest()
    claude_code = _anthropic({"metadata": {"user_id": CLAUDE_CODE_USER}})
    assert claude_code.end_user == CLAUDE_CODE_USER  # what the usage event records
    assert (
        orjson.loads(ChatProvider().build_request(claude_code, "gpt-4.1", "").body)["safety_identifier"]
        == hashed
    )
    chat = parse(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "safety_identifier": CLAUDE_CODE_USER}
    )
    assert orjson.loads(passthrough_body(chat, "gpt-4.1", Dialect.OPENAI))["safety_identifier"] == hashed
    responses = ResponsesIngress().parse_request(
        orjson.dumps({"model": "m", "input": "x", "safety_identifier": CLAUDE_CODE_USER}), {}
    )
    up = OpenAIProvider().build_request(responses, "gpt-4.1", "")
    assert orjson.loads(up.body)["safety_identifier"] == hashed
    # Ids within the limit are sent as given.
    short = _anthropic({"metadata": {"user_id": "u" * 64}})
    assert (
        orjson.loads(ChatProvider().build_request(short, "gpt-4.1", "").body)["safety_identifier"] == "u" * 64
    )


PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def test_images_of_tool_results_follow_the_tool_messages_in_a_user_message() -> None:
    # OpenAI's tool message takes text parts only (ChatCompletionRequestToolMessage).
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}}
    req = _anthropic(
        {
            "messages": [
                {"role": "user", "content": "shoot"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_use", "id": "c1", "name": "screenshot", "input": {}},
                        {"type": "tool_use", "id": "c2", "name": "ls", "input": {}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "c1",
                            "content": [{"type": "text", "text": "ok"}, image],
                        },
                        {
                            "type": "tool_result",
                            "tool_use_id": "c2",
                            "content": "no such dir",
                            "is_error": True,
                        },
                        {"type": "text", "text": "what now?"},
                    ],
                },
            ]
        }
    )
    msgs = orjson.loads(ChatProvider().build_request(req, "gpt-4.1", "").body)["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "tool", "user", "user"]
    assert msgs[2] == {"role": "tool", "tool_call_id": "c1", "content": "ok"}
    assert msgs[3] == {"role": "tool", "tool_call_id": "c2", "content": "Error: no such dir"}
    assert msgs[4]["content"] == [
        {"type": "text", "text": "Attached to the result of tool call c1:"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
    ]
    assert msgs[5] == {"role": "user", "content": "what now?"}


def test_images_of_responses_function_outputs_follow_the_tool_message() -> None:
    from crossmodel_protocols.openai_responses import ResponsesIngress

    url = f"data:image/png;base64,{PNG_B64}"
    req = ResponsesIngress().parse_request(
        orjson.dumps(
            {
                "model": "m",
                "input": [
                    {"type": "function_call", "call_id": "c1", "name": "shot", "arguments": "{}"},
                    {
                        "type": "function_call_output",
                        "call_id": "c1",
                        "output": [{"type": "input_image", "image_url": url}],
                    },
                ],
            }
        ),
        {},
    )
    msgs = orjson.loads(ChatProvider(Dialect.COMPATIBLE).build_request(req, "grok-4", "").body)["messages"]
    assert [m["role"] for m in msgs] == ["assistant", "tool", "user"]
    assert isinstance(msgs[1]["content"], str)
    assert msgs[2]["content"][1] == {"type": "image_url", "image_url": {"url": url}}


@pytest.mark.parametrize(
    ("provider", "taken"),
    [
        (ChatProvider(Dialect.OPENAI), 4),
        (ChatProvider(Dialect.COMPATIBLE), 4),
        (ChatProvider(Dialect.DEEPSEEK), 16),
        (GeminiProvider(), 5),
    ],
)
def test_stop_sequences_beyond_the_vendors_limit_are_refused_not_cut(provider: Any, taken: int) -> None:
    stops = [f"STOP{i}" for i in range(taken + 1)]
    within, beyond = _anthropic({"stop_sequences": stops[:taken]}), _anthropic({"stop_sequences": stops})
    within.capabilities = beyond.capabilities = frozenset({"tools"})  # OpenAI's reasoning models take none
    body = orjson.loads(provider.build_request(within, "m", "").body)
    assert stops[taken - 1] in orjson.dumps(body).decode()
    with pytest.raises(InvalidRequest) as e:
        provider.build_request(beyond, "m", "")
    assert e.value.param == "stop_sequences"
    assert e.value.code == "array_above_max_length"


def test_openai_only_fields_are_dropped_for_other_dialects_and_vendor_extensions_kept() -> None:
    # Mistral answers 422 to a field it does not know; docs/protocols.md drops these tuning fields.
    openai_only = {
        "prompt_cache_key": "k",
        "verbosity": "low",
        "prediction": {"type": "content", "content": "x"},
        "logit_bias": {"50256": -100},
        "store": True,
        "service_tier": "flex",
    }
    req = parse(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "safe_prompt": True, **openai_only}
    )
    for dialect in (Dialect.COMPATIBLE, Dialect.DEEPSEEK):
        for body in (
            orjson.loads(ChatProvider(dialect).build_request(req, "up", "").body),
            orjson.loads(passthrough_body(req, "up", dialect)),
        ):
            assert not set(openai_only) & set(body), dialect
            assert body["safe_prompt"] is True
    for body in (
        orjson.loads(ChatProvider().build_request(req, "up", "").body),
        orjson.loads(passthrough_body(req, "up", Dialect.OPENAI)),
    ):
        assert {k: body[k] for k in openai_only} == openai_only


def test_the_fast_path_drops_reasoning_effort_for_a_model_without_reasoning_like_the_canonical_path() -> None:
    req = parse({"model": "m", "messages": [{"role": "user", "content": "x"}], "reasoning_effort": "low"})
    req.capabilities = frozenset({"tools"})
    assert "reasoning_effort" not in orjson.loads(passthrough_body(req, "gpt-4.1", Dialect.OPENAI))
    req.capabilities = frozenset({"reasoning"})
    assert orjson.loads(passthrough_body(req, "o4-mini", Dialect.OPENAI))["reasoning_effort"] == "low"


# ------------------------------------------------------------------------------ DeepSeek thinking

DS_REASONING = frozenset({"tools", "reasoning"})
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def _deepseek_bodies(req: Request) -> list[dict[str, Any]]:
    """What DeepSeek gets on the canonical path and, for chat clients, on the fast path."""
    bodies = [orjson.loads(ChatProvider(Dialect.DEEPSEEK).build_request(req, "deepseek-v4-pro", "").body)]
    if req.ingress is Protocol.OPENAI_CHAT:
        bodies.append(orjson.loads(passthrough_body(req, "deepseek-v4-pro", Dialect.DEEPSEEK)))
    return bodies


def _responses(body: dict[str, Any]) -> Request:
    from crossmodel_protocols.openai_responses import ResponsesIngress

    return ResponsesIngress().parse_request(orjson.dumps({"model": "m", "input": "x", **body}), {})


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: parse({"model": "m", "messages": [{"role": "user", "content": "x"}]}), {}),
        (
            lambda: parse(
                {"model": "m", "messages": [{"role": "user", "content": "x"}], "reasoning_effort": "low"}
            ),
            {"thinking": {"type": "enabled"}, "reasoning_effort": "low"},
        ),
        (
            lambda: parse(
                {"model": "m", "messages": [{"role": "user", "content": "x"}], "reasoning_effort": "none"}
            ),
            {"thinking": {"type": "disabled"}},
        ),
        (lambda: _anthropic({"thinking": {"type": "disabled"}}), {"thinking": {"type": "disabled"}}),
        # No thinking asked by an Anthropic client means none, as from Claude.
        (lambda: _anthropic({}), {"thinking": {"type": "disabled"}}),
        (lambda: _responses({}), {}),
        (lambda: _anthropic({"thinking": {"type": "adaptive"}}), {"thinking": {"type": "enabled"}}),
        (
            lambda: _anthropic({"thinking": {"type": "enabled", "budget_tokens": 31999}}),
            {"thinking": {"type": "enabled"}, "reasoning_effort": "high"},
        ),
        (
            lambda: _anthropic({"thinking": {"type": "enabled", "budget_tokens": 2048}}),
            {"thinking": {"type": "enabled"}, "reasoning_effort": "low"},
        ),
        (
            lambda: _responses({"reasoning": {"effort": "high"}}),
            {"thinking": {"type": "enabled"}, "reasoning_effort": "high"},
        ),
        (lambda: _responses({"reasoning": {"effort": "none"}}), {"thinking": {"type": "disabled"}}),
    ],
)
def test_reasoning_settings_reach_deepseek_in_its_own_fields(make: Any, expected: dict[str, Any]) -> None:
    req = make()
    req.capabilities = DS_REASONING
    for body in _deepseek_bodies(req):
        assert {k: body[k] for k in ("thinking", "reasoning_effort") if k in body} == expected
    # A DeepSeek model without reasoning (deepseek-chat) gets none of them.
    req.capabilities = frozenset({"tools"})
    for body in _deepseek_bodies(req):
        assert "thinking" not in body
        assert "reasoning_effort" not in body


def test_a_chat_clients_own_deepseek_thinking_field_is_sent_as_given() -> None:
    req = parse(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "reasoning_effort": "high",
            "thinking": {"type": "enabled"},
            "tools": [WEATHER],
            "tool_choice": "required",
        }
    )
    req.capabilities = DS_REASONING
    for body in _deepseek_bodies(req):
        assert body["thinking"] == {"type": "enabled"}


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_a_forced_tool_choice_turns_deepseek_thinking_off(choice: Any) -> None:
    # DeepSeek V4: 400 "Thinking mode does not support this tool_choice".
    req = parse(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "tools": [WEATHER],
            "tool_choice": choice,
            "reasoning_effort": "high",
        }
    )
    req.capabilities = DS_REASONING
    for body in _deepseek_bodies(req):
        assert body["thinking"] == {"type": "disabled"}
        assert "reasoning_effort" not in body
        assert body["tool_choice"] == choice
    auto = parse({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [WEATHER]})
    auto.capabilities = DS_REASONING
    for body in _deepseek_bodies(auto):
        assert "thinking" not in body


def _tool_turn(reasoning: str | None) -> dict[str, Any]:
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    turn: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
    if reasoning is not None:
        turn["reasoning_content"] = reasoning
    return {
        "model": "m",
        "messages": [
            {"role": "user", "content": "x"},
            turn,
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ],
        "tools": [WEATHER],
    }


CLAUDE_CALL = {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}}


def test_tool_turns_without_their_reasoning_turn_deepseek_thinking_off() -> None:
    # DeepSeek: the reasoning_content of tool-call turns must be passed back in thinking mode.
    for reasoning in (None, ""):
        req = parse(_tool_turn(reasoning))
        req.capabilities = DS_REASONING
        for body in _deepseek_bodies(req):
            assert body["thinking"] == {"type": "disabled"}
    kept = parse(_tool_turn("I should look it up"))
    kept.capabilities = DS_REASONING
    for body in _deepseek_bodies(kept):
        assert "thinking" not in body
        assert body["messages"][1]["reasoning_content"] == "I should look it up"
    # The same from an Anthropic client whose tool call came from another vendor (no thinking).
    claude = _anthropic(
        {
            "thinking": {"type": "enabled", "budget_tokens": 2048},
            "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
            "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": [CLAUDE_CALL]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]},
            ],
        }
    )
    claude.capabilities = DS_REASONING
    (body,) = _deepseek_bodies(claude)
    assert body["thinking"] == {"type": "disabled"}
    assert "reasoning_effort" not in body


# ------------------------------------------------------------------------------ structured output

SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}


@pytest.mark.parametrize(
    ("make", "param"),
    [
        (
            lambda: parse(
                {
                    "model": "m",
                    "messages": [{"role": "user", "content": "x"}],
                    "response_format": {
                        "type": "json_schema",
                        "json_schema": {"name": "a", "schema": SCHEMA},
                    },
                }
            ),
            "response_format.type",
        ),
        (
            lambda: _anthropic({"output_config": {"format": {"type": "json_schema", "schema": SCHEMA}}}),
            "output_config.format.type",
        ),
        (
            lambda: _responses({"text": {"format": {"type": "json_schema", "name": "a", "schema": SCHEMA}}}),
            "text.format.type",
        ),
    ],
)
def test_a_json_schema_is_refused_for_models_without_structured_outputs(make: Any, param: str) -> None:
    # DeepSeek answers 400 "This response_format type is unavailable now" (text / json_object only).
    req = make()
    req.capabilities = frozenset({"tools", "json_mode", "reasoning"})
    builders = [lambda: ChatProvider(Dialect.DEEPSEEK).build_request(req, "deepseek-v4-pro", "")]
    if req.ingress is Protocol.OPENAI_CHAT:
        builders.append(lambda: passthrough_body(req, "deepseek-v4-pro", Dialect.DEEPSEEK))
    for build in builders:
        with pytest.raises(InvalidRequest) as caught:
            build()
        assert (caught.value.param, caught.value.code) == (param, "unsupported_value")
    req.capabilities = frozenset({"json_mode", "structured_outputs"})
    for dialect in (Dialect.COMPATIBLE, Dialect.OPENAI):
        body = orjson.loads(ChatProvider(dialect).build_request(req, "grok-4", "").body)
        assert body["response_format"]["type"] == "json_schema"
        if req.ingress is Protocol.OPENAI_CHAT:
            assert (
                orjson.loads(passthrough_body(req, "grok-4", dialect))["response_format"]["type"]
                == "json_schema"
            )


def test_json_mode_still_reaches_models_without_structured_outputs() -> None:
    req = parse(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "Answer in JSON"}],
            "response_format": {"type": "json_object"},
        }
    )
    req.capabilities = frozenset({"json_mode"})
    for body in _deepseek_bodies(req):
        assert body["response_format"] == {"type": "json_object"}


# ------------------------------------------------------------------------------ OpenAI reasoning models

SAMPLING = {"temperature": 0, "top_p": 0.5}


def test_sampling_from_other_protocols_is_dropped_for_openai_reasoning_models() -> None:
    # o4-mini: 400 "Unsupported value: 'temperature' does not support 0 with this model."
    req = _anthropic(SAMPLING)
    req.capabilities = frozenset({"tools", "reasoning"})
    body = orjson.loads(ChatProvider(Dialect.OPENAI).build_request(req, "o4-mini", "").body)
    assert not {"temperature", "top_p"} & set(body)
    req.capabilities = frozenset({"tools"})
    body = orjson.loads(ChatProvider(Dialect.OPENAI).build_request(req, "gpt-4.1", "").body)
    assert (body["temperature"], body["top_p"]) == (0, 0.5)
    # A chat client talking to OpenAI keeps what it sent, on both paths.
    chat = parse(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "temperature": 0,
            "presence_penalty": 0.5,
            "frequency_penalty": 0.5,
            "stop": ["zz"],
        }
    )
    chat.capabilities = frozenset({"tools", "reasoning"})
    for body in (
        orjson.loads(ChatProvider(Dialect.OPENAI).build_request(chat, "o4-mini", "").body),
        orjson.loads(passthrough_body(chat, "o4-mini", Dialect.OPENAI)),
    ):
        assert (body["temperature"], body["presence_penalty"], body["stop"]) == (0, 0.5, ["zz"])


def test_stop_sequences_from_other_protocols_are_refused_for_openai_reasoning_models() -> None:
    # o3 / o4-mini: 400 "Unsupported parameter: 'stop' is not supported with this model."
    req = _anthropic({"stop_sequences": ["END"]})
    req.capabilities = frozenset({"tools", "reasoning"})
    with pytest.raises(InvalidRequest) as caught:
        ChatProvider(Dialect.OPENAI).build_request(req, "o4-mini", "")
    assert (caught.value.param, caught.value.code) == ("stop_sequences", "unsupported_parameter")
    # Other vendors' reasoning models take it.
    assert orjson.loads(ChatProvider(Dialect.COMPATIBLE).build_request(req, "grok-4", "").body)["stop"] == [
        "END"
    ]


# ------------------------------------------------------------------------------ text part boundaries

REMINDER = "<system-reminder>\nToday is Monday.\n</system-reminder>"


@pytest.mark.parametrize("dialect", list(Dialect))
def test_adjacent_text_parts_keep_their_boundary(dialect: Dialect) -> None:
    # Claude Code sends a reminder block and the request as two text blocks.
    req = _anthropic(
        {
            "tools": [{"name": "grep", "input_schema": {"type": "object"}}],
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": REMINDER}, {"type": "text", "text": "find"}],
                },
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "Looking."},
                        {"type": "text", "text": "Searching now."},
                        {"type": "tool_use", "id": "t1", "name": "grep", "input": {}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t1",
                            "content": [{"type": "text", "text": "a.py"}, {"type": "text", "text": "b.py"}],
                        }
                    ],
                },
            ],
        }
    )
    req.capabilities = frozenset({"tools"})
    msgs = orjson.loads(ChatProvider(dialect).build_request(req, "up", "").body)["messages"]
    assert msgs[0]["content"] == REMINDER + "\n\nfind"
    assert msgs[1]["content"] == "Looking.\n\nSearching now."
    assert msgs[2]["content"] == "a.py\n\nb.py"
