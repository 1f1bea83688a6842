from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from crossmodel_simulator.script import expected_completion


def client(base: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base, api_key="sk-test", max_retries=0)


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


async def test_plain_completion_through_the_openai_sdk(simulator_url: str) -> None:
    messages = user("what is the capital of France?")
    resp = await client(simulator_url + "/openai/v1").chat.completions.create(
        model="gpt-4o-mini", messages=messages
    )
    exp = expected_completion({"messages": messages})
    assert resp.id.startswith("chatcmpl-")
    assert len(resp.id) == len("chatcmpl-") + 29
    assert resp.model == "gpt-4o-mini"
    assert resp.system_fingerprint is not None
    assert resp.system_fingerprint.startswith("fp_")
    assert resp.choices[0].message.content == exp.text == "You said: what is the capital of France?"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == exp.prompt_tokens
    assert resp.usage.completion_tokens == exp.completion_tokens


async def test_stream_with_usage_through_the_openai_sdk(simulator_url: str) -> None:
    messages = user("stream me [sim:cached=2]")
    stream = await client(simulator_url + "/openai/v1").chat.completions.create(
        model="gpt-4.1", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    exp = expected_completion({"messages": messages})
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == exp.text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == exp.prompt_tokens
    assert chunks[-1].usage.completion_tokens == exp.completion_tokens
    assert chunks[-1].usage.prompt_tokens_details is not None
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == 2
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


async def test_stream_without_usage_has_no_usage_chunk(simulator_url: str) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            simulator_url + "/openai/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": user("a b"), "stream": True},
        ) as r,
    ):
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = await r.read()
    events = [e for e in raw.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    payloads = [orjson.loads(e[6:]) for e in events[:-1]]
    assert all("usage" not in p for p in payloads)
    assert payloads[-1]["choices"][0]["finish_reason"] == "stop"
    assert len(payloads) == 1 + len(expected_completion({"messages": user("a b")}).pieces) + 1


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_scripted_failure_before_first_byte(simulator_url: str, status: int) -> None:
    c = client(simulator_url + "/openai/v1")
    with pytest.raises(openai.APIStatusError) as err:
        await c.chat.completions.create(
            model="gpt-4o-mini", messages=user(f"x [sim:status={status}] [sim:retry_after_ms=1500]")
        )
    assert err.value.status_code == status
    body = err.value.body
    assert isinstance(body, dict)
    assert "Simulated" in body["message"]
    if status in (429, 503):
        assert err.value.response.headers["retry-after"] == "2"
        assert err.value.response.headers["retry-after-ms"] == "1500"
    else:
        assert "retry-after" not in err.value.response.headers


async def _read_stream(url: str, body: dict[str, Any], into: bytearray) -> None:
    async with aiohttp.ClientSession() as s, s.post(url, json=body) as r:
        async for data in r.content.iter_any():
            into.extend(data)


async def test_drop_after_n_chunks(simulator_url: str) -> None:
    got = bytearray()
    body = {"model": "m", "messages": user("[sim:words=9] [sim:drop_after=3]"), "stream": True}
    with pytest.raises(aiohttp.ClientPayloadError):
        await _read_stream(simulator_url + "/openai/v1/chat/completions", body, got)
    contents = [orjson.loads(e[6:])["choices"][0]["delta"].get("content") for e in got.split(b"\n\n") if e]
    assert contents == ["", "w1", " w2", " w3"]


async def test_error_after_n_chunks(simulator_url: str) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            simulator_url + "/openai/v1/chat/completions",
            json={"model": "m", "messages": user("[sim:words=5] [sim:error_after=2]"), "stream": True},
        ) as r,
    ):
        raw = await r.read()
    events = [orjson.loads(e[6:]) for e in raw.split(b"\n\n") if e]
    assert [e["choices"][0]["delta"].get("content") for e in events[:-1]] == ["", "w1", " w2"]
    assert events[-1]["error"]["type"] == "server_error"


async def test_delay_before_first_byte_is_observable_with_a_client_timeout(simulator_url: str) -> None:
    c = openai.AsyncOpenAI(base_url=simulator_url + "/openai/v1", api_key="k", max_retries=0, timeout=0.2)
    with pytest.raises(openai.APITimeoutError):
        await c.chat.completions.create(model="m", messages=user("slow [sim:delay_ms=1000]"))


async def test_length_finish_and_no_usage(simulator_url: str) -> None:
    resp = await client(simulator_url + "/openai/v1").chat.completions.create(
        model="m", messages=user("[sim:words=8] [sim:no_usage]"), max_tokens=3
    )
    assert resp.choices[0].message.content == "w1 w2 w3"
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage is None


async def test_deepseek_and_generic_vendor_paths(simulator_url: str) -> None:
    messages = user("hola [sim:cached=1]")
    ds = await client(simulator_url + "/deepseek").chat.completions.create(
        model="deepseek-chat", messages=messages
    )
    assert ds.usage is not None
    extra = ds.usage.model_extra or {}
    exp = expected_completion({"messages": messages})
    assert extra["prompt_cache_hit_tokens"] == 1
    assert extra["prompt_cache_miss_tokens"] == exp.prompt_tokens - 1
    xai = await client(simulator_url + "/xai/v1").chat.completions.create(model="grok-4", messages=messages)
    assert xai.model == "grok-4"
    assert xai.choices[0].message.content == exp.text


async def test_models_and_bad_bodies(simulator_url: str) -> None:
    models = await client(simulator_url + "/openai/v1").models.list()
    assert "gpt-4o-mini" in [m.id for m in models.data]
    async with aiohttp.ClientSession() as s:
        async with s.post(simulator_url + "/openai/v1/chat/completions", data=b"{nope") as r:
            assert r.status == 400
            assert (await r.json())["error"]["type"] == "invalid_request_error"
        async with s.post(simulator_url + "/openai/v1/chat/completions", json={"model": "m"}) as r:
            assert r.status == 400
            assert (await r.json())["error"]["param"] == "messages"


async def test_runs_as_a_process() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "crossmodel_simulator", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(200):
                try:
                    async with s.get(f"http://127.0.0.1:{port}/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            else:
                pytest.fail("simulator did not become ready")
            async with s.get(f"http://127.0.0.1:{port}/openai/v1/models") as r:
                assert r.status == 200
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0


async def _stats(base: str) -> dict[str, int]:
    async with aiohttp.ClientSession() as s, s.get(base + "/_sim/stats") as r:
        data: dict[str, int] = await r.json()
        return data


async def test_a_caller_leaving_mid_stream_is_counted(simulator_url: str) -> None:
    before = (await _stats(simulator_url))["client_disconnects"]
    body = {"model": "m", "messages": user("[sim:words=200] [sim:chunk_delay_ms=20]"), "stream": True}
    async with (
        aiohttp.ClientSession() as s,
        s.post(simulator_url + "/openai/v1/chat/completions", json=body) as r,
    ):
        await r.content.readany()
    for _ in range(200):
        if (await _stats(simulator_url))["client_disconnects"] > before:
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("the simulator did not notice the caller leaving")


async def test_chat_tool_calls_and_reasoning(simulator_url: str) -> None:
    """`[sim:tool=…]` and `[sim:thinking]` in chat: parallel calls (streamed arguments keyed by
    index), DeepSeek's `reasoning_content`, and OpenAI's hidden reasoning counted in usage."""
    from crossmodel_simulator.responses import reply_for_chat_view

    text = 'weather? [sim:thinking] [sim:tool=get_weather:{"city":"Paris, FR"}] [sim:tool=get_time]'
    messages = user(text)
    reply = reply_for_chat_view({"messages": messages}, text)
    assert [t.name for t in reply.tools] == ["get_weather", "get_time"]
    for vendor, base in (("deepseek", "/deepseek"), ("openai", "/openai/v1")):
        c = client(simulator_url + base)
        plain = await c.chat.completions.create(model="m", messages=messages)
        msg = plain.choices[0].message
        assert plain.choices[0].finish_reason == "tool_calls"
        assert msg.content == reply.text
        assert msg.tool_calls is not None
        assert [(tc.function.name, tc.function.arguments) for tc in msg.tool_calls] == [  # type: ignore[union-attr]
            ("get_weather", '{"city":"Paris, FR"}'),
            ("get_time", '{"query":"weather?"}'),
        ]
        shown = (msg.model_extra or {}).get("reasoning_content")
        assert shown == (None if vendor == "openai" else reply.thinking)
        assert plain.usage is not None
        assert plain.usage.completion_tokens == reply.output_tokens
        assert plain.usage.completion_tokens_details is not None
        assert plain.usage.completion_tokens_details.reasoning_tokens == reply.thinking_tokens > 0

        stream = await c.chat.completions.create(
            model="m", messages=messages, stream=True, stream_options={"include_usage": True}
        )
        chunks = [ch async for ch in stream]
        deltas = [ch.choices[0].delta for ch in chunks if ch.choices]
        reasoning = "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas)
        assert reasoning == ("" if vendor == "openai" else reply.thinking)
        args: dict[int, str] = {}
        for d in deltas:
            for tc in d.tool_calls or ():
                args[tc.index] = args.get(tc.index, "") + (tc.function.arguments or "" if tc.function else "")
        assert args == {0: '{"city":"Paris, FR"}', 1: '{"query":"weather?"}'}
        assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "tool_calls"
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.completion_tokens == reply.output_tokens


async def test_requests_are_recorded_without_credentials(simulator_url: str) -> None:
    c = client(simulator_url + "/openai/v1")
    await c.chat.completions.create(model="m", messages=user("find me zq7x"), safety_identifier="u-1")
    async with aiohttp.ClientSession() as http:
        async with http.get(simulator_url + "/_sim/requests", params={"contains": "zq7x"}) as resp:
            found = await resp.json()
        async with http.get(simulator_url + "/_sim/requests", params={"contains": "absent-9"}) as resp:
            absent = await resp.json()
    assert [r["path"] for r in found] == ["/openai/v1/chat/completions"]
    assert found[0]["body"]["safety_identifier"] == "u-1"
    assert "authorization" not in found[0]["headers"]
    assert absent == []


PNG_URL = "data:image/png;base64,iVBORw0KGgo="
TURN = [
    {"role": "user", "content": "shoot"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "shot", "arguments": "{}"}}],
    },
]


@pytest.mark.parametrize(
    ("extra", "param", "code"),
    [
        ({"model": "gpt-4.1", "reasoning_effort": "low"}, "reasoning_effort", "unsupported_parameter"),
        ({"model": "gpt-4o-mini", "reasoning_effort": "medium"}, "reasoning_effort", "unsupported_parameter"),
        ({"model": "o4-mini", "reasoning_effort": "minimal"}, "reasoning_effort", "unsupported_value"),
        ({"model": "o4-mini", "temperature": 0}, "temperature", "unsupported_value"),
        ({"model": "gpt-5", "top_p": 0.5}, "top_p", "unsupported_value"),
        ({"model": "o4-mini", "stop": ["END"]}, "stop", "unsupported_parameter"),
        ({"safety_identifier": "u" * 65}, "safety_identifier", "string_above_max_length"),
        (
            {
                "messages": [
                    *TURN,
                    {
                        "role": "tool",
                        "tool_call_id": "c1",
                        "content": [{"type": "image_url", "image_url": {"url": PNG_URL}}],
                    },
                ]
            },
            "messages[2].content[0].type",
            "invalid_value",
        ),
    ],
)
async def test_openai_refuses_what_openai_refuses(
    simulator_url: str, extra: dict[str, Any], param: str, code: str
) -> None:
    body = {"model": "gpt-4.1", "messages": user("hi"), **extra}
    async with aiohttp.ClientSession() as s:
        async with s.post(simulator_url + "/openai/v1/chat/completions", json=body) as r:
            assert r.status == 400
            error = (await r.json())["error"]
        assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
        # Another vendor answers the same request.
        async with s.post(simulator_url + "/xai/v1/chat/completions", json=body) as r:
            assert r.status == 200


@pytest.mark.parametrize(
    "extra",
    [
        {"model": "o4-mini", "reasoning_effort": "low"},
        {"model": "gpt-5", "reasoning_effort": "minimal"},
        {"model": "o4-mini", "temperature": 1, "top_p": 1},
        {"model": "o3-mini", "stop": ["END"]},
        {"temperature": 0, "top_p": 0.5, "stop": ["END"]},
        {"safety_identifier": "u" * 64},
        {
            "messages": [
                *TURN,
                {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "ok"}]},
            ]
        },
    ],
)
async def test_openai_takes_what_openai_takes(simulator_url: str, extra: dict[str, Any]) -> None:
    body = {"model": "gpt-4.1", "messages": user("hi"), **extra}
    async with (
        aiohttp.ClientSession() as s,
        s.post(simulator_url + "/openai/v1/chat/completions", json=body) as r,
    ):
        assert r.status == 200, await r.text()


SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"response_format": SCHEMA_FORMAT}, "This response_format type is unavailable now"),
        (
            {"tools": [WEATHER_TOOL], "tool_choice": "required"},
            "Thinking mode does not support this tool_choice",
        ),
        (
            {
                "tools": [WEATHER_TOOL],
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
                "thinking": {"type": "enabled"},
            },
            "Thinking mode does not support this tool_choice",
        ),
    ],
)
async def test_deepseek_refuses_what_deepseek_refuses(
    simulator_url: str, extra: dict[str, Any], message: str
) -> None:
    body = {"model": "deepseek-v4-pro", "messages": user("hi"), **extra}
    async with aiohttp.ClientSession() as s:
        async with s.post(simulator_url + "/deepseek/chat/completions", json=body) as r:
            assert r.status == 400
            error = (await r.json())["error"]
        assert error == {
            "message": message,
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_request_error",
        }
        async with s.post(simulator_url + "/xai/v1/chat/completions", json=body) as r:
            assert r.status == 200


@pytest.mark.parametrize(
    "extra",
    [
        {"response_format": {"type": "json_object"}},
        {"tools": [WEATHER_TOOL], "tool_choice": "auto"},
        {"tools": [WEATHER_TOOL], "tool_choice": "required", "thinking": {"type": "disabled"}},
        {"model": "deepseek-chat", "tools": [WEATHER_TOOL], "tool_choice": "required"},
    ],
)
async def test_deepseek_takes_what_deepseek_takes(simulator_url: str, extra: dict[str, Any]) -> None:
    body = {"model": "deepseek-v4-pro", "messages": user("hi"), **extra}
    async with (
        aiohttp.ClientSession() as s,
        s.post(simulator_url + "/deepseek/chat/completions", json=body) as r,
    ):
        assert r.status == 200, await r.text()


async def test_openai_responses_refuses_reasoning_for_a_model_without_it(simulator_url: str) -> None:
    async with aiohttp.ClientSession() as s:
        for model, status in (("gpt-4.1", 400), ("o4-mini", 200)):
            body = {"model": model, "input": "hi", "reasoning": {"effort": "low"}}
            async with s.post(simulator_url + "/openai/v1/responses", json=body) as r:
                assert r.status == status
                if status == 400:
                    assert (await r.json())["error"]["param"] == "reasoning.effort"
        body = {"model": "gpt-4.1", "input": "hi", "safety_identifier": "u" * 65}
        async with s.post(simulator_url + "/openai/v1/responses", json=body) as r:
            assert (r.status, (await r.json())["error"]["param"]) == (400, "safety_identifier")
