"""What the router sends to each vendor, against that vendor's published request schema.

The simulator answers whatever it is sent; the real vendors refuse a request that does not
follow their API. So the requests the real adapters send are checked here: every ingress
(chat, Responses, Messages) carries a rich request (a system prompt, a multi-turn history with a
tool call and its result, an image, tools, stop sequences, sampling settings, an end-user id;
then reasoning with JSON output; then the rich one streamed) to each vendor; the request the
simulator received for it is found by a unique word and validated:

- OpenAI Chat Completions (`openai` for chat and Messages clients, `deepseek`, the generic
  OpenAI-compatible vendor): `CreateChatCompletionRequest` of OpenAI's OpenAPI spec (see
  test_openapi_conformance, same narrowing);
- OpenAI Responses (`openai` for Responses clients, served natively): `CreateResponse`;
- Anthropic Messages: `MessageCreateParamsNonStreaming` / `MessageCreateParamsStreaming` of the
  official `anthropic` SDK, as JSON Schema (see test_anthropic_conformance);
- Gemini `generateContent` / `streamGenerateContent`: Google's `GenerateContentRequest`
  (v1beta), parsed strictly as Google parses it (see test_gemini_conformance).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from crossmodel_devstack.harness import Harness
from tests.integration import test_anthropic_conformance, test_gemini_conformance, test_matrix
from tests.integration.test_openapi_conformance import conforms

VENDORS = test_matrix.VENDORS
PNG = base64.b64encode(test_matrix.PNG).decode()
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}


def chat_body(model: str, marker: str, case: str) -> dict[str, Any]:
    if case == "reasoning-json":
        return {
            "model": model,
            "messages": [{"role": "user", "content": f"answer in JSON {marker} [sim:thinking]"}],
            "reasoning_effort": "low",
            "response_format": {"type": "json_object"},
            "max_completion_tokens": 500,
        }
    body: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture, and the weather?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "user", "content": f"and tomorrow? {marker}"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {"name": "get_weather", "description": "w", "parameters": WEATHER},
            }
        ],
        "tool_choice": "auto",
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": ["STOP"],
        "max_tokens": 300,
        "user": "end-user-1",
    }
    if case == "rich-stream":
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


def responses_body(model: str, marker: str, case: str) -> dict[str, Any]:
    if case == "reasoning-json":
        return {
            "model": model,
            "input": f"answer in JSON {marker} [sim:thinking]",
            "reasoning": {"effort": "low", "summary": "auto"},
            "text": {"format": {"type": "json_object"}},
            "max_output_tokens": 500,
        }
    body: dict[str, Any] = {
        "model": model,
        "instructions": "You are terse.",
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is in this picture, and the weather?"},
                    {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}", "detail": "auto"},
                ],
            },
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city":"Paris"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            {"role": "user", "content": f"and tomorrow? {marker}"},
        ],
        "tools": [{"type": "function", "name": "get_weather", "parameters": WEATHER, "strict": False}],
        "tool_choice": "auto",
        "temperature": 0.5,
        "top_p": 0.9,
        "max_output_tokens": 300,
        "safety_identifier": "end-user-1",
    }
    if case == "rich-stream":
        body["stream"] = True
    return body


def messages_body(model: str, marker: str, case: str) -> dict[str, Any]:
    if case == "reasoning-json":
        return {
            "model": model,
            "max_tokens": 2000,
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "messages": [{"role": "user", "content": f"think, then answer {marker} [sim:thinking]"}],
        }
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": 300,
        "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture, and the weather?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                    {"type": "text", "text": f"and tomorrow? {marker}"},
                ],
            },
        ],
        "tools": [{"name": "get_weather", "description": "w", "input_schema": WEATHER}],
        "tool_choice": {"type": "auto"},
        "temperature": 0.5,
        "stop_sequences": ["STOP"],
        "metadata": {"user_id": "end-user-1"},
    }
    if case == "rich-stream":
        body["stream"] = True
    return body


INGRESS = {
    "chat": ("/v1/chat/completions", chat_body),
    "responses": ("/v1/responses", responses_body),
    "messages": ("/v1/messages", messages_body),
}
CASES = ["rich", "reasoning-json", "rich-stream"]


@pytest.fixture(scope="module")
async def clients(harness: Harness) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    key = (await harness.new_account("it-upstream-conformance", credit_micros=100_000_000)).api_key
    headers = {"authorization": f"Bearer {key}", "anthropic-version": "2023-06-01"}
    async with (
        httpx.AsyncClient(base_url=harness.edge_url, timeout=30, headers=headers) as edge,
        httpx.AsyncClient(base_url=harness.stack.simulator_url, timeout=10) as simulator,
    ):
        yield edge, simulator


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("vendor", list(VENDORS))
@pytest.mark.parametrize("ingress", list(INGRESS))
async def test_the_upstream_request_follows_the_vendors_schema(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient], ingress: str, vendor: str, case: str
) -> None:
    edge, simulator = clients
    path, build = INGRESS[ingress]
    marker = test_matrix.tag()
    models = test_matrix.REASONING_MODELS if case == "reasoning-json" else VENDORS
    body = build(models[vendor], marker, case)
    if models[vendor] in test_matrix.NO_VISION:
        # Images are refused for a model without vision (test_matrix.chat_images): none is sent.
        turns = body.get("messages") or body.get("input")
        for m in turns if isinstance(turns, list) else ():
            if isinstance(m.get("content"), list):
                m["content"] = [
                    p for p in m["content"] if p["type"] not in ("image_url", "input_image", "image")
                ]
    async with edge.stream("POST", path, json=body) as resp:
        answer = await resp.aread()
    assert resp.status_code == 200, answer[:500]
    found = (await simulator.get("/_sim/requests", params={"contains": marker})).json()
    assert len(found) == 1, found
    sent, upstream_path = found[0]["body"], found[0]["path"]
    what = f"{ingress} -> {vendor} ({case}) at {upstream_path}"
    if upstream_path.endswith("/chat/completions"):
        conforms("CreateChatCompletionRequest", sent, what)
    elif upstream_path.endswith("/responses"):
        conforms("CreateResponse", sent, what)
    elif upstream_path.endswith("/messages"):
        params = "MessageCreateParamsStreaming" if sent.get("stream") else "MessageCreateParamsNonStreaming"
        test_anthropic_conformance.conforms(params, sent, what)
    elif upstream_path.endswith((":generateContent", ":streamGenerateContent")):
        test_gemini_conformance.conforms("GenerateContentRequest", sent, what)
        # Gemini streams by its method (and `alt=sse`), not by a body field.
        assert upstream_path.endswith(":streamGenerateContent") == (case == "rich-stream"), what
        return
    else:
        pytest.fail(f"{what}: no schema for this upstream path")
    assert bool(sent.get("stream")) == (case == "rich-stream"), what
