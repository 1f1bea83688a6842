"""The official `openai` SDK must accept what the Responses ingress renders: the bytes are served
over real HTTP on 127.0.0.1 and read by `AsyncOpenAI().responses`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from aiohttp import web

from crossmodel_protocols.canonical import (
    ErrorKind,
    FinishReason,
    ReasoningPart,
    Request,
    Response,
    TextPart,
    ToolCallPart,
    Usage,
)
from crossmodel_protocols.openai_responses import OpenAIProvider, ResponsesIngress, ResponsesStreamParser

GOLDEN = Path(__file__).parent / "golden" / "responses"

Responder = Callable[[Request], tuple[bytes, str]]


class Upstream:
    """A tiny server whose answer is computed from the parsed request by a test-set responder."""

    def __init__(self) -> None:
        self.responder: Responder | None = None
        self.requests: list[Request] = []

    async def handle(self, http: web.Request) -> web.Response:
        req = ResponsesIngress().parse_request(await http.read(), http.headers)
        self.requests.append(req)
        assert self.responder is not None
        body, ctype = self.responder(req)
        return web.Response(body=body, content_type=ctype.split(";")[0])


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, Upstream]]:
    up = Upstream()
    app = web.Application()
    app.router.add_post("/v1/responses", up.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}/v1", up
    await runner.cleanup()


def client(base: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base, api_key="cm-test", max_retries=0)


def canonical_response() -> Response:
    return Response(
        id="chatcmpl-abc",
        model="upstream-model",
        content=[
            ReasoningPart("Thinking about Paris."),
            TextPart("Let me check."),
            ToolCallPart(id="call_1", name="get_weather", arguments='{"location":"Paris"}'),
        ],
        finish_reason=FinishReason.TOOL_USE,
        usage=Usage(input_tokens=75, output_tokens=82, cached_input_tokens=64, reasoning_tokens=64),
        created=1755443394,
    )


def upstream_stream() -> bytes:
    return (GOLDEN / "openai_upstream_reasoning_tools.sse").read_bytes()


def render_stream(req: Request, wire: bytes, *, error_after: int | None = None) -> bytes:
    parser = ResponsesStreamParser()
    renderer = ResponsesIngress().stream_renderer(req)
    events = parser.feed(wire) + parser.close()
    out = b""
    for n, ev in enumerate(events):
        if error_after is not None and n == error_after:
            return out + renderer.render_error(ErrorKind.UPSTREAM_ERROR, "upstream went away")
        out += renderer.render(ev)
    return out + renderer.close()


TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
    }
]


async def test_plain_response_parses_in_the_sdk(server: tuple[str, Upstream]) -> None:
    base, up = server
    up.responder = lambda req: (
        ResponsesIngress().render_response(canonical_response(), req),
        "application/json",
    )
    resp = await client(base).responses.create(
        model="openai/gpt-5-mini",
        input="weather in Paris?",
        instructions="Be brief.",
        tools=TOOLS,  # type: ignore[arg-type]
    )
    assert resp.id.startswith("resp_")
    assert resp.object == "response"
    assert resp.status == "completed"
    assert resp.model == "openai/gpt-5-mini"
    assert resp.instructions == "Be brief."
    assert [o.type for o in resp.output] == ["reasoning", "message", "function_call"]
    assert resp.output_text == "Let me check."
    reasoning = resp.output[0]
    assert reasoning.type == "reasoning"
    assert reasoning.id.startswith("rs_")
    assert [s.text for s in reasoning.summary] == ["Thinking about Paris."]
    call = resp.output[2]
    assert call.type == "function_call"
    assert (call.call_id, call.name, call.arguments) == ("call_1", "get_weather", '{"location":"Paris"}')
    assert call.id is not None
    assert call.id.startswith("fc_")
    assert resp.usage is not None
    assert resp.usage.input_tokens == 75
    assert resp.usage.output_tokens == 82
    assert resp.usage.total_tokens == 157
    assert resp.usage.input_tokens_details.cached_tokens == 64
    assert resp.usage.output_tokens_details.reasoning_tokens == 64
    assert resp.tools[0].type == "function"


async def test_incomplete_response_parses_in_the_sdk(server: tuple[str, Upstream]) -> None:
    base, up = server
    cut = Response("x", "m", [TextPart("w1 w2")], FinishReason.MAX_TOKENS, Usage(5, 16), created=1)
    up.responder = lambda req: (ResponsesIngress().render_response(cut, req), "application/json")
    resp = await client(base).responses.create(model="m", input="hi", max_output_tokens=16)
    assert resp.status == "incomplete"
    assert resp.incomplete_details is not None
    assert resp.incomplete_details.reason == "max_output_tokens"
    assert resp.output_text == "w1 w2"
    assert resp.max_output_tokens == 16


async def test_stream_events_parse_in_the_sdk(server: tuple[str, Upstream]) -> None:
    base, up = server
    up.responder = lambda req: (render_stream(req, upstream_stream()), "text/event-stream")
    stream = await client(base).responses.create(
        model="openai/gpt-5-mini", input="weather?", tools=TOOLS, stream=True
    )  # type: ignore[arg-type]
    events = [e async for e in stream]
    seqs = [e.sequence_number for e in events]
    assert seqs == list(range(len(events)))
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    for expected in (
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
    ):
        assert expected in types
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert text == "Let me check."
    assert args == '{"location":"Paris"}'
    final = events[-1]
    assert final.type == "response.completed"
    assert final.response.usage is not None
    assert final.response.usage.output_tokens_details.reasoning_tokens == 64
    assert [o.type for o in final.response.output] == ["reasoning", "message", "function_call"]
    # The upstream ids are Responses ids already: kept, so previous_response_id keeps working.
    assert final.response.id == "resp_68a1f0c2e5a48190b1d2c3e4f5a6b7c80d9e0f1a2b3c4d5e"


async def test_stream_helper_final_response(server: tuple[str, Upstream]) -> None:
    base, up = server
    up.responder = lambda req: (render_stream(req, upstream_stream()), "text/event-stream")
    async with client(base).responses.stream(
        model="openai/gpt-5-mini", input="weather?", tools=TOOLS
    ) as stream:  # type: ignore[arg-type]
        deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert "".join(deltas) == "Let me check."
    assert final.output_text == "Let me check."
    call = final.output[2]
    assert call.type == "function_call"
    assert call.arguments == '{"location":"Paris"}'
    assert final.usage is not None
    assert final.usage.input_tokens == 75


async def test_stream_failure_after_first_byte_is_response_failed(server: tuple[str, Upstream]) -> None:
    base, up = server
    up.responder = lambda req: (render_stream(req, upstream_stream(), error_after=8), "text/event-stream")
    stream = await client(base).responses.create(model="m", input="weather?", stream=True)
    events = [e async for e in stream]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    last = events[-1]
    assert last.type == "response.failed"
    assert last.response.status == "failed"
    assert last.response.error is not None
    assert last.response.error.message == "upstream went away"
    assert last.response.id == events[0].response.id  # type: ignore[union-attr]


CUSTOM_TOOL = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Apply a patch to the workspace.",
    "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch hunk+ end_patch\n"},
}


def _golden_final(name: str) -> dict[str, Any]:
    block = (GOLDEN / name).read_text().rstrip("\n").split("\n\n")[-1]
    final: dict[str, Any] = orjson.loads(block.split("\n")[1].removeprefix("data: "))["response"]
    return final


async def test_openai_items_parse_in_the_sdk_streamed_and_not(server: tuple[str, Upstream]) -> None:
    """A custom tool's call (Codex's freeform `apply_patch`) and hosted tools' calls, as OpenAI
    sent them, through `responses.stream(...).get_final_response()` and `responses.create`."""
    base, up = server
    custom = "openai_upstream_custom_tool.sse"
    up.responder = lambda req: (render_stream(req, (GOLDEN / custom).read_bytes()), "text/event-stream")
    async with client(base).responses.stream(
        model="openai/gpt-5", input="turn debug off", tools=[CUSTOM_TOOL]
    ) as stream:  # type: ignore[arg-type]
        deltas = [e.delta async for e in stream if e.type == "response.custom_tool_call_input.delta"]
        final = await stream.get_final_response()
    call = final.output[1]
    assert call.type == "custom_tool_call"
    assert call.name == "apply_patch"
    assert call.input == "".join(deltas)
    assert call.input.startswith("*** Begin Patch\n")
    assert final.output_text == "Turning debug off."

    hosted = "openai_upstream_hosted_tools.sse"
    upstream = orjson.dumps(_golden_final(hosted))
    up.responder = lambda req: (
        ResponsesIngress().render_response(OpenAIProvider().parse_response(upstream), req),
        "application/json",
    )
    resp = await client(base).responses.create(
        model="openai/gpt-5", input="draw it", tools=[{"type": "web_search"}, {"type": "image_generation"}]
    )
    assert [o.type for o in resp.output] == ["web_search_call", "image_generation_call", "message"]
    image = resp.output[1]
    assert image.type == "image_generation_call"
    assert image.result is not None
    assert image.result.startswith("iVBOR")
    assert resp.output_text == "Here is the lighthouse."
