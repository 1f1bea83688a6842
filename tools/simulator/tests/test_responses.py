from __future__ import annotations

from typing import Any

import aiohttp
import openai
import orjson
import pytest

from crossmodel_simulator.responses import THINKING_PREFIX, expected_response, signature_for


def client(base: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base + "/openai/v1", api_key="sk-test", max_retries=0)


async def test_plain_response_through_the_openai_sdk(simulator_url: str) -> None:
    body: dict[str, Any] = {
        "model": "gpt-5-mini",
        "input": "what is the capital of France?",
        "instructions": "Be brief.",
    }
    resp = await client(simulator_url).responses.create(**body)
    exp = expected_response(body)
    assert resp.id.startswith("resp_")
    assert resp.status == "completed"
    assert resp.output_text == exp.text == "You said: what is the capital of France?"
    assert resp.usage is not None
    assert resp.usage.input_tokens == exp.prompt_tokens == 3 + 4 + 2 + 4 + 6
    assert resp.usage.output_tokens == exp.output_tokens == len(exp.text.split())
    assert resp.instructions == "Be brief."


async def test_stream_with_reasoning_and_tools_through_the_sdk_helper(simulator_url: str) -> None:
    body: dict[str, Any] = {
        "model": "gpt-5-mini",
        "input": [
            {
                "role": "user",
                "content": "weather in Paris [sim:thinking] "
                '[sim:tool=get_weather:{"city":"Paris"}] [sim:cached=3]',
            }
        ],
        "reasoning": {"effort": "low", "summary": "auto"},
        "include": ["reasoning.encrypted_content"],
        "tools": [
            {"type": "function", "name": "get_weather", "parameters": {"type": "object"}, "strict": False}
        ],
    }
    exp = expected_response(body)
    async with client(simulator_url).responses.stream(**body) as stream:
        events = [e async for e in stream]
        final = await stream.get_final_response()
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].type == "response.completed"
    summary = "".join(e.delta for e in events if e.type == "response.reasoning_summary_text.delta")
    assert summary == THINKING_PREFIX + "weather in Paris"
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert args == '{"city":"Paris"}'
    assert [o.type for o in final.output] == ["reasoning", "message", "function_call"]
    reasoning = final.output[0]
    assert reasoning.type == "reasoning"
    assert reasoning.encrypted_content == signature_for(THINKING_PREFIX + "weather in Paris")
    assert final.output_text == exp.text
    assert final.usage is not None
    assert final.usage.output_tokens == exp.output_tokens
    assert final.usage.output_tokens_details.reasoning_tokens == exp.thinking_tokens == 5
    assert final.usage.input_tokens_details.cached_tokens == 3


CUSTOM_TOOL = {"type": "custom", "name": "apply_patch", "format": {"type": "text"}}


async def test_a_declared_custom_tool_is_called_as_a_custom_tool_call(simulator_url: str) -> None:
    """Codex's freeform tools: the call streams its `input` as OpenAI streams it."""
    body: dict[str, Any] = {
        "model": "gpt-5",
        "input": 'turn debug off [sim:tool=apply_patch:{"patch":"-DEBUG = True"}]',
        "tools": [CUSTOM_TOOL],
    }
    exp = expected_response(body)
    async with client(simulator_url).responses.stream(**body) as stream:
        events = [e async for e in stream]
        final = await stream.get_final_response()
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" not in kinds
    deltas = "".join(e.delta for e in events if e.type == "response.custom_tool_call_input.delta")
    assert deltas == '{"patch":"-DEBUG = True"}'
    done = [e for e in events if e.type == "response.custom_tool_call_input.done"]
    assert [e.input for e in done] == [deltas]
    call = final.output[-1]
    assert call.type == "custom_tool_call"
    assert call.name == "apply_patch"
    assert call.id.startswith("ctc_")
    assert call.input == deltas
    assert final.usage is not None
    assert final.usage.output_tokens == exp.output_tokens
    plain = await client(simulator_url).responses.create(**body)
    assert [o.type for o in plain.output] == ["message", "custom_tool_call"]


async def test_max_output_tokens_makes_it_incomplete(simulator_url: str) -> None:
    stream = await client(simulator_url).responses.create(
        model="gpt-5-mini", input="[sim:words=40]", max_output_tokens=16, stream=True
    )
    events = [e async for e in stream]
    last = events[-1]
    assert last.type == "response.incomplete"
    assert last.response.incomplete_details is not None
    assert last.response.incomplete_details.reason == "max_output_tokens"
    assert last.response.output_text == " ".join(f"w{i}" for i in range(1, 17))


@pytest.mark.parametrize(("status", "exc"), [(429, openai.RateLimitError), (500, openai.InternalServerError)])
async def test_failure_before_the_first_byte(simulator_url: str, status: int, exc: type[Exception]) -> None:
    with pytest.raises(exc):
        await client(simulator_url).responses.create(model="m", input=f"x [sim:status={status}]")


async def test_failure_after_the_first_byte_is_response_failed(simulator_url: str) -> None:
    stream = await client(simulator_url).responses.create(
        model="m", input="a b c [sim:error_after=2]", stream=True
    )
    events = [e async for e in stream]
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) == 2
    assert events[-1].type == "response.failed"
    assert events[-1].sequence_number == len(events) - 1


async def test_dropped_connection_mid_stream(simulator_url: str) -> None:
    body = {"model": "m", "input": "a b c d [sim:drop_after=1]", "stream": True}
    async with (
        aiohttp.ClientSession() as http,
        http.post(simulator_url + "/openai/v1/responses", data=orjson.dumps(body)) as r,
    ):
        assert r.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await r.read()
