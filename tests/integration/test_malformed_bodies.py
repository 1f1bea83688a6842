"""Bad input never breaks the gateway: rich, valid bodies of each client protocol, mutated at
random (a value swapped for one of the wrong type or out of range, a field removed, an unknown
field added), sent to every vendor's model. Each answer is either a success whose stream ends
the way its protocol ends streams, or a 4xx error in the client's protocol with a message; never
a 5xx, never a stream cut without its end. The mutations come from a fixed seed, so a failure
is reproducible by its case number.

The hand-written cases that pin the exact status, type and `param` of each refusal are in
test_protocol_errors.py; this module covers the combinations nobody wrote down."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from crossmodel_devstack.harness import Harness
from libs.protocols.tests.test_upstream_robustness import mutant
from tests.integration import test_matrix

SEED = 20261208
CASES_PER_PATH = 80
MODELS = list(test_matrix.VENDORS.values())
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
SCHEMA = {"type": "object", "properties": {"tz": {"type": "string"}}}
# One body per protocol that uses most of what the protocol has.
SEEDS: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {
        "messages": [
            {"role": "system", "content": "be terse"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what time is it"},
                    {
                        "type": "image_url",
                        "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "noon"},
        ],
        "tools": [
            {"type": "function", "function": {"name": "get_time", "description": "t", "parameters": SCHEMA}}
        ],
        "tool_choice": "auto",
        "max_completion_tokens": 50,
        "temperature": 0.5,
        "stop": ["zzz"],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "a", "schema": {"type": "object"}},
        },
        "stream": True,
        "stream_options": {"include_usage": True},
        "reasoning_effort": "low",
        "seed": 3,
        "user": "u",
    },
    "/v1/responses": {
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "what time is it"},
                    {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"},
                ],
            },
            {"type": "function_call", "call_id": "c1", "name": "get_time", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "noon"},
        ],
        "instructions": "be terse",
        "tools": [{"type": "function", "name": "get_time", "parameters": SCHEMA}],
        "tool_choice": "auto",
        "max_output_tokens": 64,
        "reasoning": {"effort": "low", "summary": "auto"},
        "text": {"format": {"type": "json_object"}},
        "stream": True,
        "store": False,
        "metadata": {"a": "b"},
    },
    "/v1/messages": {
        "max_tokens": 2048,
        "system": [{"type": "text", "text": "be terse", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what time is it"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "a clock", "signature": "sig"},
                    {"type": "tool_use", "id": "t1", "name": "get_time", "input": {}},
                ],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "noon"}]},
        ],
        "tools": [{"name": "get_time", "input_schema": SCHEMA}],
        "tool_choice": {"type": "auto"},
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "stream": True,
        "metadata": {"user_id": "u"},
        "stop_sequences": ["zzz"],
    },
}


def _mutate(body: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """One to three mutations of the protocols tests' kind (a value of another type or out of
    range, a field removed, a field added), then a model of the matrix."""
    out = body
    for _ in range(rng.randint(1, 3)):
        out = mutant(rng, out)
    out["model"] = rng.choice(MODELS)
    return out


def _cases() -> list[tuple[str, dict[str, Any]]]:
    rng = random.Random(SEED)
    return [(path, _mutate(seed, rng)) for path, seed in SEEDS.items() for _ in range(CASES_PER_PATH)]


CASES = _cases()
# How each protocol's stream ends (chat: the last data line; the others: the last event).
STREAM_ENDS = {
    "/v1/chat/completions": ("[DONE]",),
    "/v1/responses": ("response.completed", "response.incomplete"),
    "/v1/messages": ("message_stop",),
}


def _events(text: str) -> list[tuple[str, str]]:
    """[(event name, data)] of an SSE body."""
    out = []
    for block in text.split("\n\n"):
        name, data = "", []
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if data:
            out.append((name, "\n".join(data)))
    return out


@pytest.fixture(scope="module")
async def http(harness: Harness) -> AsyncIterator[httpx.AsyncClient]:
    account = await harness.new_account("it-malformed", credit_micros=200_000_000)
    headers = {"authorization": f"Bearer {account.api_key}", "anthropic-version": "2023-06-01"}
    async with httpx.AsyncClient(base_url=harness.edge_url, timeout=30, headers=headers) as c:
        yield c


def test_the_mutations_reach_every_protocol_model_and_kind_of_change() -> None:
    assert {p for p, _ in CASES} == set(SEEDS)
    assert {b["model"] for _, b in CASES} == set(MODELS)


@pytest.mark.parametrize(
    ("path", "body"), CASES, ids=[f"{p.rsplit('/', 1)[1]}-{i}" for i, (p, _) in enumerate(CASES)]
)
async def test_a_mutated_body_gets_an_answer_or_a_clear_error(
    http: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    resp = await http.post(path, json=body)
    events = _events(resp.text) if resp.headers["content-type"].startswith("text/event-stream") else []
    assert resp.headers["x-request-id"]
    assert resp.status_code < 500, (resp.status_code, events)
    if resp.status_code >= 400:
        payload = json.loads(resp.content)
        if path == "/v1/messages":
            assert payload["type"] == "error"
            assert payload["error"]["type"] == "invalid_request_error" or resp.status_code in (404, 413)
        assert payload["error"]["message"]
        return
    assert resp.headers["content-type"].startswith(
        "text/event-stream" if body.get("stream") is True else "application/json"
    )
    if body.get("stream") is True:
        assert events, "a stream with no event"
        last = events[-1][1] if path == "/v1/chat/completions" else events[-1][0]
        assert last in STREAM_ENDS[path], events[-3:]
        assert not any(name == "error" or '"error"' in data[:10] for name, data in events), events
