"""OpenAI's output items that the canonical model has no form for (a custom tool's call, hosted
tools' calls and results, MCP, ...) reach a Responses client verbatim on the native path,
non-stream and streamed, and go back to OpenAI, and only to OpenAI, in the history.

Every event a client gets is checked against `ResponseStreamEvent` of OpenAI's published spec
(tests/conformance/openai-openapi.json) by test_openapi_conformance's own validator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from crossmodel_protocols.anthropic import AnthropicIngress, AnthropicProvider
from crossmodel_protocols.canonical import (
    BlockStart,
    FinishReason,
    InvalidRequest,
    Protocol,
    Request,
    StreamEvent,
    StreamFinish,
    VendorDelta,
    VendorPart,
)
from crossmodel_protocols.gemini import GeminiProvider
from crossmodel_protocols.openai_chat import ChatIngress, ChatProvider, Dialect
from crossmodel_protocols.openai_responses import (
    OpenAIProvider,
    ResponsesIngress,
    ResponsesProvider,
    build_input,
)
from tests.integration.test_openapi_conformance import validator

GOLDEN = Path(__file__).parent / "golden" / "responses"
CUSTOM_TOOL = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Apply a patch to the workspace.",
    "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch hunk+ end_patch\n"},
}
HOSTED_TOOLS = [{"type": "web_search"}, {"type": "image_generation", "partial_images": 1}]


def conforms(schema: str, instance: Any) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator(schema).iter_errors(instance)]
    assert not errors, (schema, errors, json.dumps(instance)[:600])


def test_the_spec_check_can_fail() -> None:
    event = {"type": "response.custom_tool_call_input.delta", "sequence_number": 3, "output_index": 1}
    assert (
        list(validator("ResponseStreamEvent").iter_errors({**event, "item_id": "ctc_1", "delta": "x"})) == []
    )
    assert list(validator("ResponseStreamEvent").iter_errors({**event, "delta": "x"}))
    assert list(validator("ResponseStreamEvent").iter_errors({**event, "item_id": "ctc_1", "delta": 1}))


def golden(name: str) -> bytes:
    return (GOLDEN / name).read_bytes()


def sse_payloads(wire: bytes) -> list[dict[str, Any]]:
    out = []
    for block in wire.decode().split("\n\n"):
        if block:
            name, data = block.split("\n")
            payload = orjson.loads(data.removeprefix("data: "))
            assert name == f"event: {payload['type']}"
            out.append(payload)
    return out


def parse(body: dict[str, Any]) -> Request:
    return ResponsesIngress().parse_request(orjson.dumps(body), {})


def decode(wire: bytes, size: int) -> list[StreamEvent]:
    parser = OpenAIProvider().stream_parser()
    events: list[StreamEvent] = []
    for i in range(0, len(wire), size):
        events.extend(parser.feed(wire[i : i + size]))
    return events + parser.close()


def render(request: Request, events: list[StreamEvent]) -> list[dict[str, Any]]:
    renderer = ResponsesIngress().stream_renderer(request)
    return sse_payloads(b"".join(renderer.render(e) for e in events) + renderer.close())


def upstream_final(name: str) -> dict[str, Any]:
    final: dict[str, Any] = sse_payloads(golden(name))[-1]["response"]
    return final


def item_events(payloads: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """(type, output_index) of each event about an output item."""
    return [(p["type"], p["output_index"]) for p in payloads if "output_index" in p]


# ------------------------------------------------------------------------------------ streams


@pytest.mark.parametrize("size", [7, 64, 100_000])
def test_a_custom_tool_call_streams_to_a_responses_client_as_openai_sent_it(size: int) -> None:
    """Codex's freeform `apply_patch`: the call, its input deltas and the finished item."""
    wire = golden("openai_upstream_custom_tool.sse")
    events = decode(wire, size)
    request = parse(
        {"model": "openai/gpt-5", "input": "turn debug off", "tools": [CUSTOM_TOOL], "stream": True}
    )
    payloads = render(request, events)
    for p in payloads:
        conforms("ResponseStreamEvent", p)
    assert [p["sequence_number"] for p in payloads] == list(range(len(payloads)))
    upstream = sse_payloads(wire)
    # Every event of the upstream's, in its order, at the same output index.
    assert item_events(payloads) == item_events(upstream)
    relayed = [p for p in payloads if p["type"].startswith("response.custom_tool_call_input.")]
    assert [{**p, "sequence_number": 0} for p in relayed] == [
        {**p, "sequence_number": 0}
        for p in upstream
        if p["type"].startswith("response.custom_tool_call_input.")
    ]
    final = payloads[-1]
    assert final["type"] == "response.completed"
    assert final["response"]["output"] == upstream_final("openai_upstream_custom_tool.sse")["output"]
    assert final["response"]["output"][1]["input"].startswith("*** Begin Patch\n")
    assert final["response"]["tools"] == [CUSTOM_TOOL]
    # The client must answer the call: the turn ends for a tool, as with a function call.
    assert [e.finish_reason for e in events if isinstance(e, StreamFinish)] == [FinishReason.TOOL_USE]


@pytest.mark.parametrize("size", [11, 100_000])
def test_hosted_tool_calls_stream_to_a_responses_client_with_their_results(size: int) -> None:
    """A web search and an image generation (its partial image, then the image), then the text."""
    wire = golden("openai_upstream_hosted_tools.sse")
    request = parse({"model": "openai/gpt-5", "input": "draw it", "tools": HOSTED_TOOLS, "stream": True})
    payloads = render(request, decode(wire, size))
    for p in payloads:
        conforms("ResponseStreamEvent", p)
    upstream = sse_payloads(wire)
    assert item_events(payloads) == item_events(upstream)
    assert [p["type"] for p in payloads] == [p["type"] for p in upstream]
    partial = next(p for p in payloads if p["type"] == "response.image_generation_call.partial_image")
    assert partial["partial_image_b64"].startswith("iVBOR")
    output = payloads[-1]["response"]["output"]
    assert output == upstream_final("openai_upstream_hosted_tools.sse")["output"]
    assert [o["type"] for o in output] == ["web_search_call", "image_generation_call", "message"]
    assert output[1]["result"].startswith("iVBOR")


def test_the_stream_parser_carries_openai_items_as_vendor_parts() -> None:
    events = decode(golden("openai_upstream_custom_tool.sse"), 100_000)
    starts = [e for e in events if isinstance(e, BlockStart) and isinstance(e.part, VendorPart)]
    assert len(starts) == 1
    assert starts[0].part.raw["type"] == "custom_tool_call"  # type: ignore[union-attr]
    assert starts[0].part.provider is Protocol.OPENAI_RESPONSES  # type: ignore[union-attr]
    deltas = [e.raw["type"] for e in events if isinstance(e, VendorDelta)]
    assert deltas[-2:] == ["response.custom_tool_call_input.done", "response.output_item.done"]


# ---------------------------------------------------------------------------------- non-stream


def _answer(name: str) -> bytes:
    return orjson.dumps(upstream_final(name))


@pytest.mark.parametrize("name", ["openai_upstream_custom_tool.sse", "openai_upstream_hosted_tools.sse"])
def test_every_output_item_reaches_a_responses_client_non_stream(name: str) -> None:
    request = parse({"model": "openai/gpt-5", "input": "go", "tools": [CUSTOM_TOOL, *HOSTED_TOOLS]})
    resp = OpenAIProvider().parse_response(_answer(name))
    out = orjson.loads(ResponsesIngress().render_response(resp, request))
    conforms("Response", out)
    assert out["output"] == upstream_final(name)["output"]


def test_chat_and_anthropic_clients_get_the_text_without_openai_items() -> None:
    """They have no form for these items (and reach OpenAI by Chat Completions anyway)."""
    resp = OpenAIProvider().parse_response(_answer("openai_upstream_hosted_tools.sse"))
    chat_req = ChatIngress().parse_request(
        orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "go"}]}), {}
    )
    chat = orjson.loads(ChatIngress().render_response(resp, chat_req))
    assert chat["choices"][0]["message"]["content"] == "Here is the lighthouse."
    anthropic_req = AnthropicIngress().parse_request(
        orjson.dumps({"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": "go"}]}), {}
    )
    message = orjson.loads(AnthropicIngress().render_response(resp, anthropic_req))
    assert message["content"] == [{"type": "text", "text": "Here is the lighthouse."}]
    stream = decode(golden("openai_upstream_custom_tool.sse"), 64)
    renderer = AnthropicIngress().stream_renderer(anthropic_req)
    wire = b"".join(renderer.render(e) for e in stream) + renderer.close()
    assert b"custom_tool_call" not in wire
    assert b"apply_patch" not in wire


# ------------------------------------------------------------------------------------- history

PATCH_CALL = upstream_final("openai_upstream_custom_tool.sse")["output"]
HOSTED_OUTPUT = upstream_final("openai_upstream_hosted_tools.sse")["output"]


def _history() -> list[dict[str, Any]]:
    """A stateless Codex conversation: the patch call, its output, the answer, then a web search
    and an image from an earlier turn, and the next question."""
    output = {"type": "custom_tool_call_output", "call_id": PATCH_CALL[1]["call_id"], "output": "Done!"}
    return [
        {"role": "user", "content": "turn debug off"},
        PATCH_CALL[1],
        output,
        {"role": "assistant", "content": [{"type": "output_text", "text": "Debug is off."}]},
        {"role": "user", "content": "draw it"},
        *HOSTED_OUTPUT,
        {"role": "user", "content": "thanks, and now?"},
    ]


def test_a_history_with_openai_items_goes_to_openai_as_sent() -> None:
    body = {"model": "openai/gpt-5", "input": _history(), "tools": [CUSTOM_TOOL], "store": False}
    request = parse(body)
    up = OpenAIProvider().build_request(request, "gpt-5", "sk")
    assert up.path == "/responses"
    assert orjson.loads(up.body) == {**body, "model": "gpt-5"}
    kinds = [p.raw["type"] for m in request.messages for p in m.content if isinstance(p, VendorPart)]
    assert kinds == [
        "custom_tool_call",
        "custom_tool_call_output",
        "web_search_call",
        "image_generation_call",
    ]
    # Built from the canonical request, the items come back verbatim and in order too.
    items = build_input(request)
    assert [i.get("type", "message") for i in items] == [i.get("type", "message") for i in body["input"]]
    assert [i for i in items if i.get("type") not in (None, "message")] == [
        i for i in body["input"] if i.get("type") not in (None, "message")
    ]


@pytest.mark.parametrize(
    "provider",
    [AnthropicProvider(), GeminiProvider(), ChatProvider(Dialect.DEEPSEEK)],
    ids=["anthropic", "gemini", "deepseek"],
)
def test_a_history_with_openai_items_goes_to_other_vendors_without_them(provider: Any) -> None:
    """Another model cannot read them: the conversation continues with its text."""
    request = parse({"model": "m", "input": _history()})
    body = orjson.loads(provider.build_request(request, "m", "k").body)
    wire = orjson.dumps(body)
    for leak in (b"custom_tool_call", b"apply_patch", b"Begin Patch", b"web_search", b"iVBOR", b"Done!"):
        assert leak not in wire, leak
    assert b"Debug is off." in wire
    assert b"thanks, and now?" in wire
    if isinstance(provider, AnthropicProvider):
        # No assistant turn left empty (Anthropic refuses one).
        assert all(m["content"] for m in body["messages"])


def test_an_item_reference_goes_to_openai_and_is_refused_for_other_vendors() -> None:
    body = {
        "model": "m",
        "input": [{"type": "item_reference", "id": "msg_1"}, {"role": "user", "content": "hi"}],
    }
    request = parse(body)
    assert orjson.loads(OpenAIProvider().build_request(request, "gpt-5", "k").body)["input"] == body["input"]
    for provider in (AnthropicProvider(), GeminiProvider(), ChatProvider(Dialect.COMPATIBLE)):
        with pytest.raises(InvalidRequest) as err:
            provider.build_request(request, "m", "k")
        assert err.value.param == "input[0].type"
        assert err.value.code == "unsupported_value"


def test_an_item_type_outside_the_spec_is_still_refused() -> None:
    with pytest.raises(InvalidRequest) as err:
        parse({"model": "m", "input": [{"type": "bogus_call"}]})
    assert err.value.param == "input[0].type"
    assert "custom_tool_call" in err.value.message


def test_responses_provider_answers_parse_the_same() -> None:
    resp = ResponsesProvider().parse_response(_answer("openai_upstream_custom_tool.sse"))
    assert resp.finish_reason is FinishReason.TOOL_USE
    assert [type(p).__name__ for p in resp.content] == ["TextPart", "VendorPart"]
