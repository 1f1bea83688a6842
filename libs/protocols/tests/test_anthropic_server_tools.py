"""Anthropic's server tools (web search, web fetch, code execution, …) on the way back: their
blocks in Claude's answer reach an Anthropic client verbatim, streamed or not, with the text's
citations, `usage.server_tool_use`, `container` and `pause_turn`; sent back in the history
(every later turn of such a conversation carries them) they reach Claude unchanged, and any
other vendor without them. Clients of the OpenAI protocols get the text only."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from crossmodel_protocols.anthropic import (
    VERBATIM_BLOCKS,
    AnthropicIngress,
    AnthropicProvider,
    AnthropicStreamParser,
)
from crossmodel_protocols.canonical import (
    FinishReason,
    InvalidRequest,
    Protocol,
    Request,
    StreamEvent,
    TextPart,
    VendorPart,
)
from crossmodel_protocols.openai_chat import ChatIngress
from crossmodel_protocols.openai_responses import ResponsesIngress
from libs.protocols.tests.test_anthropic import golden, parse, render_all
from libs.protocols.tests.test_upstream_robustness import PROVIDERS

SRV_ID = "srvtoolu_014hJH82Qum7Td6UV8gDXThB"
SERVER_TOOL_USE = {
    "type": "server_tool_use",
    "id": SRV_ID,
    "name": "web_search",
    "input": {"query": "weather NYC"},
}
SEARCH_RESULT = {
    "type": "web_search_tool_result",
    "tool_use_id": SRV_ID,
    "content": [
        {
            "type": "web_search_result",
            "title": "Weather in New York City",
            "url": "https://weather.example.com/nyc",
            "encrypted_content": "EqgfCioIARgBIiQ3YTAwMjY1Mi1mZjM5LTQ1NGUtODgxNC1kNjNjNTk1ZWI3Y2",
            "page_age": "June 4, 2025",
        }
    ],
}
CITATION = {
    "type": "web_search_result_location",
    "cited_text": "Sunny, high of 75F.",
    "url": "https://weather.example.com/nyc",
    "title": "Weather in New York City",
    "encrypted_index": "Eo8BCioIAhgBIiQyYjQ0OWJmZi1lNm",
}
CODE_RESULT = {
    "type": "bash_code_execution_tool_result",
    "tool_use_id": "srvtoolu_02",
    "content": {
        "type": "bash_code_execution_result",
        "stdout": "4\n",
        "stderr": "",
        "return_code": 0,
        "content": [],
    },
}
# Claude's answer with a web search and a code execution (the shapes of Anthropic's docs).
UPSTREAM: dict[str, Any] = {
    "id": "msg_01G5pQyNfTW7mPB4HbH8Zz6c",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-6",
    "content": [
        {"type": "text", "text": "I'll check the weather."},
        SERVER_TOOL_USE,
        SEARCH_RESULT,
        {"type": "text", "text": "It is sunny, with a high of 75F.", "citations": [CITATION]},
        {
            "type": "server_tool_use",
            "id": "srvtoolu_02",
            "name": "bash_code_execution",
            "input": {"command": "echo $((2+2))"},
        },
        CODE_RESULT,
        {"type": "text", "text": " 2 + 2 is 4."},
    ],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 2679,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 510,
        "server_tool_use": {"web_search_requests": 1, "web_fetch_requests": 0},
    },
    "container": {"id": "container_011CPR5CNjB747bTd36fQLFk", "expires_at": "2025-05-23T21:13:31.749448Z"},
}
MODEL = "anthropic/claude-sonnet-4.6"


def _request() -> Request:
    return parse({"model": MODEL, "max_tokens": 1024, "messages": [{"role": "user", "content": "Weather?"}]})


def test_an_answer_with_server_tool_blocks_reaches_an_anthropic_client_verbatim() -> None:
    resp = AnthropicProvider().parse_response(orjson.dumps(UPSTREAM))
    out = orjson.loads(AnthropicIngress().render_response(resp, _request()))
    assert out == dict(UPSTREAM, model=MODEL)


@pytest.mark.parametrize("reason", ["pause_turn", "end_turn"])
def test_pause_turn_reaches_an_anthropic_client(reason: str) -> None:
    data = dict(UPSTREAM, content=UPSTREAM["content"][1:3], stop_reason=reason)
    resp = AnthropicProvider().parse_response(orjson.dumps(data))
    assert resp.finish_reason is FinishReason(reason)
    out = orjson.loads(AnthropicIngress().render_response(resp, _request()))
    assert out["stop_reason"] == reason
    assert out["content"] == [SERVER_TOOL_USE, SEARCH_RESULT]


def _decode(wire: bytes, size: int) -> list[StreamEvent]:
    parser = AnthropicStreamParser()
    return [e for i in range(0, len(wire), size) for e in parser.feed(wire[i : i + size])] + parser.close()


@pytest.mark.parametrize("size", [1, 29, 100_000])
def test_a_streamed_server_tool_turn_reaches_an_anthropic_client_verbatim(size: int) -> None:
    """`server_tool_use` opens with an empty input and streams it as `input_json_delta`; the
    result block comes whole in its `content_block_start`; the cited text's `citations_delta`
    and `usage.server_tool_use` in `message_delta` pass as Anthropic sent them."""
    events = _decode(golden("anthropic/upstream_server_tools.sse"), size)
    assert render_all(_request(), events) == golden("anthropic/client_server_tools.sse")


def _blocks_of(sse: bytes) -> list[dict[str, Any]]:
    """The message an Anthropic SDK builds from a stream: blocks with deltas applied."""
    blocks: list[dict[str, Any]] = []
    partial: dict[int, str] = {}
    for frame in sse.split(b"\n\n"):
        if not frame:
            continue
        ev = orjson.loads(frame.split(b"\ndata: ", 1)[1])
        if ev["type"] == "content_block_start":
            blocks.append(copy.deepcopy(ev["content_block"]))
        elif ev["type"] == "content_block_delta":
            b, d = blocks[ev["index"]], ev["delta"]
            if d["type"] == "text_delta":
                b["text"] += d["text"]
            elif d["type"] == "citations_delta":
                b.setdefault("citations", []).append(d["citation"])
            elif d["type"] == "input_json_delta":
                partial[ev["index"]] = partial.get(ev["index"], "") + d["partial_json"]
        elif ev["type"] == "content_block_stop" and ev["index"] in partial:
            blocks[ev["index"]]["input"] = orjson.loads(partial[ev["index"]])
    return blocks


def test_the_streamed_golden_builds_the_blocks_anthropic_sent() -> None:
    built = _blocks_of(golden("anthropic/client_server_tools.sse"))
    assert built == [
        {"type": "text", "text": "I'll check the weather."},
        {
            "type": "server_tool_use",
            "id": SRV_ID,
            "name": "web_search",
            "input": {"query": "weather NYC today"},
        },
        SEARCH_RESULT,
        {"type": "text", "text": "It is sunny, with a high of 75F.", "citations": [CITATION]},
    ]


def test_clients_of_the_openai_protocols_get_the_text_only() -> None:
    resp = AnthropicProvider().parse_response(orjson.dumps(UPSTREAM))
    text = "I'll check the weather.It is sunny, with a high of 75F. 2 + 2 is 4."
    chat_req = ChatIngress().parse_request(
        orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Weather?"}]}), {}
    )
    chat = orjson.loads(ChatIngress().render_response(resp, chat_req))
    assert chat["choices"][0]["message"]["content"] == text
    assert chat["choices"][0]["finish_reason"] == "stop"
    resp_req = ResponsesIngress().parse_request(orjson.dumps({"model": MODEL, "input": "Weather?"}), {})
    out = orjson.loads(ResponsesIngress().render_response(resp, resp_req))
    assert [item["type"] for item in out["output"]] == ["message"]
    assert "".join(c["text"] for c in out["output"][0]["content"]) == text
    # Streamed: no server tool block or delta shows, the text does.
    events = _decode(golden("anthropic/upstream_server_tools.sse"), 29)
    for ingress, req in ((ChatIngress(), chat_req), (ResponsesIngress(), resp_req)):
        renderer = ingress.stream_renderer(req)
        wire = b"".join(renderer.render(e) for e in events) + renderer.close()
        assert b"It is sunny, with a high of 75F." in wire
        assert b"srvtoolu" not in wire
        assert b"web_search" not in wire


# A conversation that continues after a server tool turn: the blocks come back in the history.
HISTORY: dict[str, Any] = {
    "model": MODEL,
    "max_tokens": 1024,
    "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}],
    "messages": [
        {"role": "user", "content": "Weather in NYC?"},
        {"role": "assistant", "content": UPSTREAM["content"]},
        {
            "role": "user",
            "content": [
                {"type": "container_upload", "file_id": "file_011CNha8iCJcU1wXNR6q4V8w"},
                {
                    "type": "search_result",
                    "source": "https://docs.example.com/a",
                    "title": "A",
                    "content": [{"type": "text", "text": "Alpha."}],
                    "citations": {"enabled": True},
                },
                {"type": "text", "text": "And tomorrow?"},
            ],
        },
    ],
}


def test_server_tool_blocks_in_the_history_reach_claude_unchanged() -> None:
    request = parse(HISTORY)
    assert VendorPart(SERVER_TOOL_USE, Protocol.ANTHROPIC_MESSAGES) in request.messages[1].content
    sent = orjson.loads(PROVIDERS["anthropic"].build_request(request, "claude-sonnet-4-6", "sk").body)
    assert sent["messages"] == HISTORY["messages"]
    assert sent["tools"] == HISTORY["tools"]


@pytest.mark.parametrize("block", VERBATIM_BLOCKS)
def test_every_block_type_of_the_messages_api_is_accepted_in_either_role(block: str) -> None:
    raw = {"type": block, "id": "x"}
    for role in ("user", "assistant"):
        messages = [{"role": "user", "content": "hi"}, {"role": role, "content": [raw]}]
        if role == "user":
            messages = messages[1:]
        request = parse({"model": MODEL, "max_tokens": 10, "messages": messages})
        assert request.messages[-1].content == [VendorPart(raw, Protocol.ANTHROPIC_MESSAGES)]


def test_an_unknown_block_type_is_still_refused() -> None:
    body = {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": [{"type": "nope"}]}]}
    with pytest.raises(InvalidRequest) as caught:
        parse(body)
    assert caught.value.param == "messages[0].content[0].type"


@pytest.mark.parametrize("provider", ["openai", "deepseek", "compatible", "gemini"])
def test_other_vendors_get_the_history_without_them(provider: str) -> None:
    body = dict(HISTORY, tools=[])
    sent = PROVIDERS[provider].build_request(parse(body), "up", "sk").body
    for block in VERBATIM_BLOCKS:
        assert f'"{block}"'.encode() not in sent
    assert b"encrypted_index" not in sent
    for text in (b"I'll check the weather.", b"It is sunny, with a high of 75F.", b"And tomorrow?"):
        assert text in sent


def test_openai_annotations_are_not_sent_to_claude_as_citations() -> None:
    url_citation = {
        "type": "url_citation",
        "start_index": 0,
        "end_index": 2,
        "url": "https://a",
        "title": "A",
    }
    request = parse({"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})
    request.messages.append(
        request.messages[0].__class__("assistant", [TextPart("Hi there", annotations=[url_citation])])
    )
    sent = orjson.loads(PROVIDERS["anthropic"].build_request(request, "c", "sk").body)
    assert sent["messages"][1]["content"] == [{"type": "text", "text": "Hi there"}]
