"""The provider simulator speaks the vendors' real wire formats: its answers against the same
published schemas the gateway's answers are checked against.

The simulator stands in for the vendors, so the adapters are only as right as it is. Called
directly (no gateway), with plain text, a tool call, reasoning and a cut-off answer, streamed and
not, its OpenAI Chat Completions (and the DeepSeek / OpenAI-compatible routes that share it) and
Responses answers are validated against OpenAI's OpenAPI schemas (test_openapi_conformance) and
its Anthropic Messages answers against the Anthropic SDK's types (test_anthropic_conformance).
Its Gemini answers are checked against Google's types and Google's SDK in
test_gemini_conformance.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from crossmodel_devstack.harness import Harness
from tests.integration import test_anthropic_conformance, test_matrix
from tests.integration.test_openapi_conformance import conforms

PROMPTS = {
    "plain": "say something",
    "tool": 'call it [sim:tool=get_time:{"tz":"UTC"}]',
    "thinking": "think first [sim:thinking]",
    "cut": "a long answer [sim:words=40]",
}
TOOLS_CHAT = [{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]
TOOLS_RESPONSES = [{"type": "function", "name": "get_time", "parameters": {"type": "object"}}]
TOOLS_MESSAGES = [{"name": "get_time", "input_schema": {"type": "object"}}]
CHAT_ROUTES = {
    "openai": "/openai/v1/chat/completions",
    "deepseek": "/deepseek/chat/completions",
    "xai": "/xai/v1/chat/completions",
}


@pytest.fixture(scope="module")
async def sim(harness: Harness) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=harness.stack.simulator_url,
        timeout=30,
        headers={
            "authorization": "Bearer sk-simulator",
            "x-api-key": "sk-simulator",
            "anthropic-version": "2023-06-01",
        },
    ) as c:
        yield c


async def _events(sim: httpx.AsyncClient, path: str, body: dict[str, Any]) -> list[tuple[str, str]]:
    resp, events = await test_matrix.sse(sim, path, body)
    assert resp.status_code == 200
    assert events
    return events


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("kind", list(PROMPTS))
@pytest.mark.parametrize("route", list(CHAT_ROUTES))
async def test_chat_completions_conform(sim: httpx.AsyncClient, route: str, kind: str, stream: bool) -> None:
    body: dict[str, Any] = {"model": "gpt-4.1", "messages": [{"role": "user", "content": PROMPTS[kind]}]}
    if kind == "tool":
        body["tools"] = TOOLS_CHAT
    if kind == "cut":
        body["max_tokens"] = 5
    what = f"simulator {route} {kind}"
    if not stream:
        resp = await sim.post(CHAT_ROUTES[route], json=body)
        assert resp.status_code == 200, resp.text
        conforms("CreateChatCompletionResponse", resp.json(), what)
        return
    body |= {"stream": True, "stream_options": {"include_usage": True}}
    for _, data in await _events(sim, CHAT_ROUTES[route], body):
        if data != "[DONE]":
            conforms("CreateChatCompletionStreamResponse", json.loads(data), f"{what} chunk")


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("kind", list(PROMPTS))
async def test_responses_conform(sim: httpx.AsyncClient, kind: str, stream: bool) -> None:
    body: dict[str, Any] = {"model": "gpt-4.1", "input": PROMPTS[kind]}
    if kind == "tool":
        body["tools"] = TOOLS_RESPONSES
    if kind == "thinking":
        # OpenAI takes reasoning only on its reasoning models.
        body["model"] = "o4-mini"
        body["reasoning"] = {"effort": "low", "summary": "auto"}
    if kind == "cut":
        body["max_output_tokens"] = 16
    what = f"simulator responses {kind}"
    if not stream:
        resp = await sim.post("/openai/v1/responses", json=body)
        assert resp.status_code == 200, resp.text
        conforms("Response", resp.json(), what)
        return
    for name, data in await _events(sim, "/openai/v1/responses", body | {"stream": True}):
        conforms("ResponseStreamEvent", json.loads(data), f"{what} {name}")


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("kind", list(PROMPTS))
async def test_messages_conform(sim: httpx.AsyncClient, kind: str, stream: bool) -> None:
    body: dict[str, Any] = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 5 if kind == "cut" else 2000,
        "messages": [{"role": "user", "content": PROMPTS[kind]}],
    }
    if kind == "tool":
        body["tools"] = TOOLS_MESSAGES
    if kind == "thinking":
        body["thinking"] = {"type": "enabled", "budget_tokens": 1024}
    what = f"simulator messages {kind}"
    if not stream:
        resp = await sim.post("/anthropic/v1/messages", json=body)
        assert resp.status_code == 200, resp.text
        test_anthropic_conformance.conforms("Message", resp.json(), what)
        return
    for name, data in await _events(sim, "/anthropic/v1/messages", body | {"stream": True}):
        event = json.loads(data)
        if name == "ping":
            assert event == {"type": "ping"}
        else:
            test_anthropic_conformance.conforms("RawMessageStreamEvent", event, f"{what} {name}")
