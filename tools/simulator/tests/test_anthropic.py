from __future__ import annotations

from typing import Any

import aiohttp
import anthropic
import orjson
import pytest

from crossmodel_simulator.anthropic import expected_message, redacted_data_for, signature_for

HEADERS = {"anthropic-version": "2023-06-01", "x-api-key": "sk-ant-test"}


def client(base: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=base + "/anthropic", api_key="sk-ant-test", max_retries=0)


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


async def raw_events(base: str, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(base + "/anthropic/v1/messages", json=body, headers=HEADERS) as r,
    ):
        assert r.status == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["request-id"].startswith("req_")
        raw = await r.read()
    out = []
    for block in raw.split(b"\n\n"):
        if block:
            name, data = block.split(b"\n")
            out.append((name[7:].decode(), orjson.loads(data[6:])))
    return out


async def test_plain_message_through_the_anthropic_sdk(simulator_url: str) -> None:
    body: dict[str, Any] = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}}],
        "messages": user("what is the capital of France?"),
    }
    msg = await client(simulator_url).messages.create(**body)
    exp = expected_message(body)
    assert msg.id.startswith("msg_01")
    assert msg.model == "claude-sonnet-4-6"
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].type == "text"
    assert msg.content[0].text == exp.text == "You said: what is the capital of France?"
    assert msg.stop_reason == "end_turn"
    # 3 + system (4 + 2 words) + user (4 + 6 words)
    assert exp.prompt_tokens == 19
    assert msg.usage.input_tokens == 19
    assert msg.usage.cache_read_input_tokens == 0
    assert msg.usage.cache_creation_input_tokens == 0
    assert msg.usage.output_tokens == exp.output_tokens == 8


async def test_stream_with_thinking_tool_use_and_cache_through_the_stream_helper(simulator_url: str) -> None:
    prompt = (
        'weather? [sim:thinking] [sim:tool=get_weather:{"city":"Paris"}] [sim:tool=get_time] '
        "[sim:cached=3] [sim:cache_write=2]"
    )
    body: dict[str, Any] = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 4096,
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "tools": [
            {"name": "get_weather", "input_schema": {"type": "object"}},
            {"name": "get_time", "input_schema": {"type": "object"}},
        ],
        "messages": user(prompt),
    }
    async with client(simulator_url).messages.stream(**body) as stream:
        msg = await stream.get_final_message()
    exp = expected_message(body)
    assert [b.type for b in msg.content] == ["thinking", "text", "tool_use", "tool_use"]
    thinking, text, weather, time = msg.content
    assert thinking.type == "thinking"
    assert thinking.thinking == "Thinking about: weather?"
    assert thinking.signature == signature_for("Thinking about: weather?")
    assert text.type == "text"
    assert text.text == "You said: weather?"
    assert weather.type == "tool_use"
    assert time.type == "tool_use"
    assert (weather.name, weather.input) == ("get_weather", {"city": "Paris"})
    assert (time.name, time.input) == ("get_time", {"query": "weather?"})
    assert weather.id.startswith("toolu_")
    assert weather.id != time.id
    assert msg.stop_reason == "tool_use"
    assert msg.usage.cache_read_input_tokens == 3
    assert msg.usage.cache_creation_input_tokens == 2
    assert msg.usage.input_tokens == exp.prompt_tokens - 5
    # thinking 3 words + reply 3 words + get_weather (1 + 1) + get_time (1 + 1)
    assert msg.usage.output_tokens == exp.output_tokens == 10
    assert msg.usage.output_tokens_details is not None
    assert msg.usage.output_tokens_details.thinking_tokens == 3


WEB_SEARCH_TOOL = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}


@pytest.mark.parametrize("stream", [False, True])
async def test_a_server_tool_turn_with_web_search(simulator_url: str, stream: bool) -> None:
    body: dict[str, Any] = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 100,
        "tools": [WEB_SEARCH_TOOL],
        "messages": user("news today [sim:web_search] [sim:pause_turn]"),
    }
    if stream:
        async with client(simulator_url).messages.stream(**body) as s:
            msg = await s.get_final_message()
    else:
        msg = await client(simulator_url).messages.create(**body)
    exp = expected_message(body)
    dumped = [b.model_dump(exclude_none=True) for b in msg.content]
    text = {"type": "text", "text": "You said: news today", "citations": [exp.citation]}
    assert dumped == [exp.server_tool_use, exp.web_search_result, text]
    assert exp.server_tool_use["input"] == {"query": "news today"}
    assert msg.stop_reason == "pause_turn"
    assert msg.usage.server_tool_use is not None
    assert msg.usage.server_tool_use.web_search_requests == 1
    # reply 4 words + web_search (1) + {"query":"news today"} (2)
    assert msg.usage.output_tokens == exp.output_tokens == 7


async def test_web_search_needs_the_tool_declared(simulator_url: str) -> None:
    body: dict[str, Any] = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 100,
        "messages": user("x [sim:web_search]"),
    }
    msg = await client(simulator_url).messages.create(**body)
    assert [b.type for b in msg.content] == ["text"]
    assert msg.usage.server_tool_use is None


async def test_stream_event_grammar(simulator_url: str) -> None:
    body = {
        "model": "claude-haiku-4-5",
        "max_tokens": 100,
        "stream": True,
        "messages": user("a b [sim:redacted_thinking] [sim:tool=f]"),
    }
    events = await raw_events(simulator_url, body)
    assert all(name == data["type"] for name, data in events)
    assert [n for n, _ in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_stop",
        "content_block_start",
        *["content_block_delta"] * 4,
        "content_block_stop",
        "content_block_start",
        *["content_block_delta"] * 2,  # {"query":"a b"} in 8-character pieces
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["usage"]["output_tokens"] == 1
    assert set(start["usage"]) == {
        "input_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
        "output_tokens",
    }
    assert events[1][1]["content_block"] == {"type": "redacted_thinking", "data": redacted_data_for("a b")}
    indices = [d["index"] for n, d in events if n.startswith("content_block")]
    assert indices == [0, 0] + [1] * 6 + [2] * 4
    partial = "".join(
        d["delta"]["partial_json"] for n, d in events if n == "content_block_delta" and d["index"] == 2
    )
    assert orjson.loads(partial) == {"query": "a b"}
    exp = expected_message(body)
    assert events[-2][1]["usage"]["output_tokens"] == exp.output_tokens


async def test_max_tokens_and_stop_sequences(simulator_url: str) -> None:
    c = client(simulator_url)
    cut = await c.messages.create(
        model="claude-sonnet-4-6", max_tokens=3, messages=user("one two three four")
    )
    assert cut.stop_reason == "max_tokens"
    assert cut.content[0].type == "text"
    assert cut.content[0].text == "You said: one"
    stopped = await c.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=50,
        stop_sequences=["zzz", "three"],
        messages=user("one two three four"),
    )
    assert stopped.stop_reason == "stop_sequence"
    assert stopped.stop_sequence == "three"
    assert stopped.content[0].type == "text"
    assert stopped.content[0].text == "You said: one two"


@pytest.mark.parametrize(
    ("status", "exc", "etype"),
    [
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.APIStatusError, "overloaded_error"),
    ],
)
async def test_failures_before_the_first_byte(
    simulator_url: str, status: int, exc: type[anthropic.APIStatusError], etype: str
) -> None:
    with pytest.raises(exc) as err:
        await client(simulator_url).messages.create(
            model="claude-sonnet-4-6",
            max_tokens=10,
            messages=user(f"x [sim:status={status}] [sim:retry_after_ms=1500]"),
        )
    assert err.value.status_code == status
    assert err.value.body == {
        "type": "error",
        "error": {"type": etype, "message": f"Simulated upstream failure ({status})."},
    }
    assert err.value.response.headers["request-id"].startswith("req_")
    if status in (429, 529):
        assert err.value.response.headers["retry-after"] == "2"
        assert err.value.response.headers["retry-after-ms"] == "1500"


async def test_error_event_after_n_deltas(simulator_url: str) -> None:
    body = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 50,
        "stream": True,
        "messages": user("[sim:words=5] [sim:error_after=2]"),
    }
    events = await raw_events(simulator_url, body)
    assert [n for n, _ in events].count("content_block_delta") == 2
    assert events[-1] == (
        "error",
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    )
    helper = {k: v for k, v in body.items() if k != "stream"}
    with pytest.raises(anthropic.APIStatusError):
        async with client(simulator_url).messages.stream(**helper) as stream:
            await stream.get_final_message()


async def _read_into(r: aiohttp.ClientResponse, chunks: list[bytes]) -> None:
    async for chunk in r.content.iter_any():
        chunks.append(chunk)


async def test_drop_after_n_deltas(simulator_url: str) -> None:
    body = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 50,
        "stream": True,
        "messages": user("[sim:words=5] [sim:drop_after=3]"),
    }
    async with (
        aiohttp.ClientSession() as s,
        s.post(simulator_url + "/anthropic/v1/messages", json=body, headers=HEADERS) as r,
    ):
        chunks: list[bytes] = []
        with pytest.raises(aiohttp.ClientPayloadError):
            await _read_into(r, chunks)
        # Everything written before the drop arrives; the connection then ends mid-body.
        raw = b"".join(chunks)
    assert raw.count(b"event: content_block_delta") == 3
    assert b"message_stop" not in raw


async def test_drop_after_beyond_the_reply_completes(simulator_url: str) -> None:
    body = {
        "model": "c",
        "max_tokens": 50,
        "stream": True,
        "messages": user("[sim:words=2] [sim:drop_after=9]"),
    }
    events = await raw_events(simulator_url, body)
    assert events[-1][0] == "message_stop"


async def test_requests_without_anthropic_version_or_max_tokens_are_refused(simulator_url: str) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.post(
            simulator_url + "/anthropic/v1/messages",
            json={"model": "c", "max_tokens": 5, "messages": user("x")},
        ) as r:
            assert r.status == 400
            assert (await r.json())["error"]["type"] == "invalid_request_error"
        async with s.post(
            simulator_url + "/anthropic/v1/messages",
            json={"model": "c", "messages": user("x")},
            headers=HEADERS,
        ) as r:
            assert r.status == 400
            assert (await r.json())["error"]["message"] == "max_tokens: Field required"


async def _post(base: str, body: dict[str, Any]) -> tuple[int, Any]:
    # Raw: the SDK's typed parameters no longer include the sampling fields.
    async with (
        aiohttp.ClientSession() as s,
        s.post(base + "/anthropic/v1/messages", json=body, headers=HEADERS) as r,
    ):
        return r.status, await r.json()


THINK = {"type": "enabled", "budget_tokens": 1024}
_TOOL_TURN = [
    {"role": "user", "content": "wx?"},
    {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "wx", "input": {}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}]},
]
_SIGNED = {"type": "thinking", "thinking": "hm", "signature": signature_for("hm")}


def _signed_turn(*first: dict[str, Any]) -> list[Any]:
    assistant = {"role": "assistant", "content": [*first, *_TOOL_TURN[1]["content"]]}
    return [_TOOL_TURN[0], assistant, _TOOL_TURN[2]]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"temperature": 1.5}, "temperature: Input should be less than or equal to 1"),
        ({"temperature": 0.5, "top_p": 0.9}, "`temperature` and `top_p` cannot both be specified"),
        ({"thinking": THINK, "temperature": 0.5}, "`temperature` may only be set to 1 when thinking"),
        ({"thinking": THINK, "top_p": 0.9}, "`top_p` must be greater than or equal to 0.95"),
        ({"thinking": THINK, "top_k": 5}, "`top_k` must be unset when thinking"),
        (
            {
                "thinking": THINK,
                "tools": [{"name": "wx", "input_schema": {}}],
                "tool_choice": {"type": "any"},
            },
            "Thinking may not be enabled when tool_choice forces tool use.",
        ),
        (
            {"thinking": {"type": "adaptive"}, "messages": _TOOL_TURN},
            "messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found `tool_use`.",
        ),
        (
            {"messages": _signed_turn({**_SIGNED, "signature": "c2ln"})},
            "messages.1.content.0: Invalid `signature` in `thinking` block",
        ),
        (
            {"messages": _signed_turn(_SIGNED, {"type": "redacted_thinking", "data": "c2ln"})},
            "messages.1.content.1: Invalid `data` in `redacted_thinking` block",
        ),
    ],
)
async def test_what_anthropic_refuses_is_refused(
    simulator_url: str, extra: dict[str, Any], message: str
) -> None:
    status, answer = await _post(
        simulator_url, {"model": "c", "max_tokens": 2048, "messages": user("x"), **extra}
    )
    assert status == 400
    assert answer["type"] == "error"
    assert answer["error"]["type"] == "invalid_request_error"
    assert answer["error"]["message"].startswith(message)


@pytest.mark.parametrize(
    "extra",
    [
        {"temperature": 1, "thinking": THINK},
        {"top_p": 0.95, "thinking": THINK},
        {"top_p": 0.5, "top_k": 5},
        {"thinking": THINK, "tools": [{"name": "wx", "input_schema": {}}], "tool_choice": {"type": "auto"}},
        {"messages": _TOOL_TURN},  # without thinking, a tool turn needs no thinking block
        {"thinking": THINK, "messages": _signed_turn(_SIGNED)},
        {
            "thinking": THINK,
            "messages": _signed_turn({"type": "redacted_thinking", "data": redacted_data_for("x")}),
        },
    ],
)
async def test_what_anthropic_accepts_is_answered(simulator_url: str, extra: dict[str, Any]) -> None:
    status, answer = await _post(
        simulator_url, {"model": "c", "max_tokens": 2048, "messages": user("x"), **extra}
    )
    assert status == 200, answer
    assert answer["content"]


async def test_models_list_in_anthropic_shape(simulator_url: str) -> None:
    page = await client(simulator_url).models.list()
    ids = [m.id async for m in page]
    assert "claude-sonnet-4-6" in ids
