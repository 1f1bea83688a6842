"""The official `anthropic` SDK must accept what the Anthropic ingress renders, and its requests
must pass the ingress parser: a tiny server on 127.0.0.1 parses each SDK request with
`AnthropicIngress` and answers with rendered bytes that `AsyncAnthropic().messages` reads."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import pytest
from aiohttp import web

from crossmodel_protocols.anthropic import AnthropicIngress, AnthropicProvider, AnthropicStreamParser
from crossmodel_protocols.canonical import (
    ErrorKind,
    InvalidRequest,
    Protocol,
    Request,
    StreamError,
    StreamEvent,
)
from crossmodel_protocols.errors import ApiError, ErrorType, error_type_for, render_http, render_stream_error
from crossmodel_protocols.openai_chat import ChatStreamParser

GOLDEN = Path(__file__).parent / "golden"
SIG = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds5hk3Iq8Vm7K2i/r1wKzZLQG"


@dataclass
class Answer:
    body: bytes
    status: int = 200
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


Responder = Callable[[Request], Answer]


class Server:
    def __init__(self) -> None:
        self.responder: Responder | None = None
        self.requests: list[Request] = []

    async def handle(self, http: web.Request) -> web.Response:
        try:
            req = AnthropicIngress().parse_request(await http.read(), http.headers)
        except InvalidRequest as e:
            err = render_http(
                ApiError(ErrorType.INVALID_REQUEST, e.message, e.param), Protocol.ANTHROPIC_MESSAGES, "req_1"
            )
            return web.Response(status=err.status, body=err.body, headers=dict(err.headers))
        self.requests.append(req)
        assert self.responder is not None
        a = self.responder(req)
        return web.Response(
            status=a.status, body=a.body, headers={"content-type": a.content_type, **a.headers}
        )


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, Server]]:
    srv = Server()
    app = web.Application()
    app.router.add_post("/v1/messages", srv.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}", srv
    await runner.cleanup()


def client(base: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=base, api_key="cm-test", max_retries=0)


def decoded(name: str, parser: AnthropicStreamParser | ChatStreamParser) -> list[StreamEvent]:
    wire = (GOLDEN / name).read_bytes()
    return [e for i in range(0, len(wire), 17) for e in parser.feed(wire[i : i + 17])] + parser.close()


def stream_answer(events: list[StreamEvent]) -> Responder:
    def respond(req: Request) -> Answer:
        renderer = AnthropicIngress().stream_renderer(req)
        out = b""
        for e in events:
            if isinstance(e, StreamError):
                err = ApiError(error_type_for(e.error_kind), e.message)
                return Answer(
                    out + render_stream_error(err, Protocol.ANTHROPIC_MESSAGES),
                    content_type="text/event-stream",
                )
            out += renderer.render(e)
        return Answer(out + renderer.close(), content_type="text/event-stream")

    return respond


UPSTREAM_MESSAGE = (
    b'{"id":"msg_013Zva2CMHLNnXjNJJKqJ2EF","type":"message","role":"assistant","model":"claude-sonnet-4-6",'
    b'"content":[{"type":"thinking","thinking":"Need the tool.","signature":"' + SIG.encode() + b'"},'
    b'{"type":"redacted_thinking","data":"EmwKAhgB"},{"type":"text","text":"Checking."},'
    b'{"type":"tool_use","id":"toolu_01B","name":"get_weather","input":{"location":"Paris"}}],'
    b'"stop_reason":"tool_use","stop_sequence":null,'
    b'"usage":{"input_tokens":40,"cache_creation_input_tokens":10,"cache_read_input_tokens":1500,"output_tokens":77}}'
)

TOOLS: list[Any] = [
    {
        "name": "get_weather",
        "description": "Weather for a place",
        "input_schema": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
        "cache_control": {"type": "ephemeral"},
    }
]
SYSTEM: list[Any] = [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}]


async def test_create_non_stream_with_thinking_and_tools(server: tuple[str, Server]) -> None:
    base, srv = server
    srv.responder = lambda req: Answer(
        AnthropicIngress().render_response(AnthropicProvider().parse_response(UPSTREAM_MESSAGE), req)
    )
    msg = await client(base).messages.create(
        model="anthropic/claude-sonnet-4.6",
        max_tokens=4096,
        system=SYSTEM,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=TOOLS,
        tool_choice={"type": "auto"},
        thinking={"type": "enabled", "budget_tokens": 2048},
        metadata={"user_id": "u-1"},
        stop_sequences=["END"],
    )
    req = srv.requests[0]
    assert req.end_user == "u-1"
    assert req.reasoning is not None
    assert req.reasoning.budget_tokens == 2048
    assert req.system[0].cache_control is not None
    assert msg.id == "msg_013Zva2CMHLNnXjNJJKqJ2EF"
    assert msg.model == "anthropic/claude-sonnet-4.6"
    assert [b.type for b in msg.content] == ["thinking", "redacted_thinking", "text", "tool_use"]
    thinking, redacted, text, tool = msg.content
    assert thinking.type == "thinking"
    assert (thinking.thinking, thinking.signature) == ("Need the tool.", SIG)
    assert redacted.type == "redacted_thinking"
    assert redacted.data == "EmwKAhgB"
    assert text.type == "text"
    assert text.text == "Checking."
    assert tool.type == "tool_use"
    assert (tool.id, tool.name, tool.input) == ("toolu_01B", "get_weather", {"location": "Paris"})
    assert msg.stop_reason == "tool_use"
    assert msg.usage.input_tokens == 40
    assert msg.usage.cache_read_input_tokens == 1500
    assert msg.usage.cache_creation_input_tokens == 10
    assert msg.usage.output_tokens == 77


async def test_stream_helper_final_message_from_anthropic_upstream(server: tuple[str, Server]) -> None:
    base, srv = server
    srv.responder = stream_answer(decoded("anthropic/upstream_thinking_tools.sse", AnthropicStreamParser()))
    async with client(base).messages.stream(
        model="anthropic/claude-sonnet-4.6",
        max_tokens=4096,
        messages=[{"role": "user", "content": "Weather in San Francisco?"}],
        tools=TOOLS,
        thinking={"type": "enabled", "budget_tokens": 2048},
    ) as stream:
        thinking_seen = [e.thinking async for e in _thinking_events(stream)]
        msg = await stream.get_final_message()
    assert srv.requests[0].stream
    assert "".join(thinking_seen) == "The user wants the weather. I should call get_weather."
    assert [b.type for b in msg.content] == ["thinking", "redacted_thinking", "text", "tool_use"]
    thinking, _, text, tool = msg.content
    assert thinking.type == "thinking"
    assert thinking.signature == SIG
    assert text.type == "text"
    assert text.text == "Let me look that up."
    assert tool.type == "tool_use"
    assert tool.input == {"location": "San Francisco, CA"}
    assert msg.stop_reason == "tool_use"
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (30, 89)
    assert (msg.usage.cache_read_input_tokens, msg.usage.cache_creation_input_tokens) == (2000, 100)


async def _thinking_events(stream: Any) -> AsyncIterator[Any]:
    async for event in stream:
        if event.type == "thinking":
            yield event


async def test_stream_helper_reads_an_openai_upstream_with_parallel_tool_calls(
    server: tuple[str, Server],
) -> None:
    base, srv = server
    srv.responder = stream_answer(decoded("openai_upstream_tools.sse", ChatStreamParser()))
    async with client(base).messages.stream(
        model="anthropic/claude-sonnet-4.6",
        max_tokens=1024,
        messages=[{"role": "user", "content": "Weather and time in Paris?"}],
        tools=TOOLS,
    ) as stream:
        msg = await stream.get_final_message()
    assert [(b.type, getattr(b, "input", None)) for b in msg.content] == [
        ("tool_use", {"location": "Paris"}),
        ("tool_use", {"tz": "CET"}),
    ]
    assert msg.stop_reason == "tool_use"
    # OpenAI counts cached tokens inside the prompt; Anthropic clients see them apart.
    assert (msg.usage.input_tokens, msg.usage.cache_read_input_tokens, msg.usage.output_tokens) == (
        16,
        64,
        40,
    )


async def test_create_stream_raw_events(server: tuple[str, Server]) -> None:
    base, srv = server
    srv.responder = stream_answer(decoded("anthropic/upstream_text.sse", AnthropicStreamParser()))
    stream = await client(base).messages.create(
        model="anthropic/claude-haiku-4.5",
        max_tokens=100,
        messages=[{"role": "user", "content": "Hi"}],
        stream=True,
    )
    types = [e.type async for e in stream]
    assert types == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


async def test_in_stream_error_raises_in_the_sdk(server: tuple[str, Server]) -> None:
    base, srv = server
    srv.responder = stream_answer(decoded("anthropic/upstream_error.sse", AnthropicStreamParser()))
    with pytest.raises(anthropic.APIStatusError) as err:
        async with client(base).messages.stream(
            model="anthropic/claude-sonnet-4.6", max_tokens=100, messages=[{"role": "user", "content": "Hi"}]
        ) as stream:
            await stream.get_final_message()
    assert "Overloaded" in str(err.value)
    assert "overloaded_error" in str(err.value.body)


async def test_invalid_request_is_a_bad_request_error_naming_the_field(server: tuple[str, Server]) -> None:
    base, _ = server
    bad: list[Any] = [
        {"role": "user", "content": [{"type": "text", "text": "x", "cache_control": {"type": "x"}}]}
    ]
    with pytest.raises(anthropic.BadRequestError) as err:
        await client(base).messages.create(model="anthropic/claude-sonnet-4.6", max_tokens=100, messages=bad)
    assert err.value.status_code == 400
    assert err.value.body == {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "Invalid value for 'messages[0].content[0].cache_control.type': 'x'. "
            "Supported values are: 'ephemeral'.",
        },
    }
    assert err.value.response.headers["request-id"] == "req_1"


@pytest.mark.parametrize(
    ("kind", "retry_ms", "status", "exc"),
    [
        (ErrorKind.UPSTREAM_RATE_LIMITED, 2000, 429, anthropic.RateLimitError),
        (ErrorKind.UPSTREAM_OVERLOADED, 1000, 529, anthropic.APIStatusError),
        (ErrorKind.UPSTREAM_ERROR, None, 502, anthropic.InternalServerError),
    ],
)
async def test_http_errors_reach_the_sdk_as_its_exceptions(
    server: tuple[str, Server], kind: ErrorKind, retry_ms: int | None, status: int, exc: type[Exception]
) -> None:
    base, srv = server
    err = render_http(
        ApiError(error_type_for(kind), "upstream said no", retry_after_ms=retry_ms),
        Protocol.ANTHROPIC_MESSAGES,
        "req_9",
    )
    srv.responder = lambda req: Answer(err.body, err.status, headers=dict(err.headers))
    with pytest.raises(exc) as caught:
        await client(base).messages.create(
            model="anthropic/claude-sonnet-4.6", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert isinstance(caught.value, anthropic.APIStatusError)
    assert caught.value.status_code == status
    if retry_ms:
        assert caught.value.response.headers["retry-after"] == str(retry_ms // 1000)
