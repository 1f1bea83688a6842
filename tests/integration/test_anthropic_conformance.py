"""The gateway's public Anthropic-protocol answers against the types of Anthropic's own SDK.

Anthropic publishes its API reference, not an OpenAPI document in a public repository; the
official `anthropic` SDK's types are generated from that specification and are the closest
machine-readable form of it. Their JSON Schemas (pydantic's `TypeAdapter(...).json_schema()`:
required fields, types, enums and the `type` discriminators of blocks, deltas and events) are
checked here with `jsonschema` against the exact JSON bytes the edge sent (raw HTTP), which the
SDK's own lenient parsing would not do. For every vendor of test_matrix.VENDORS:

- `POST /v1/messages`, plain, a forced tool call and thinking: the body against `Message`;
- the same streamed: every event against `RawMessageStreamEvent` (the union of
  `message_start`, `content_block_start`/`_delta`/`_stop`, `message_delta`, `message_stop`),
  except `ping`, which is exactly `{"type": "ping"}`, and an `error` event, against
  `ErrorResponse`;
- `POST /v1/messages/count_tokens`: `MessageTokensCount`;
- `GET /v1/models` (with `anthropic-version`): every entry a `ModelInfo`; `GET
  /v1/models/{vendor}/{model}`: `ModelInfo`;
- the error bodies (bad key 401, unknown model 404, malformed JSON 400, a field of the wrong
  type 400, an upstream failure inside a stream): `ErrorResponse`.

Pydantic marks an SDK field that has a default as optional, so the schemas are looser than the
API about presence (test_matrix checks that `stop_reason`, `stop_sequence` and the usage
counters are always there); types and enums are checked as the SDK declares them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic.types as at
import anthropic.types.message_create_params as mcp
import httpx
import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from jsonschema.exceptions import best_match  # type: ignore[import-untyped]
from pydantic import TypeAdapter

from crossmodel_devstack.harness import Harness
from tests.integration import test_matrix

VENDORS = test_matrix.VENDORS
HEADERS = {"anthropic-version": "2023-06-01"}
TYPES: dict[str, Any] = {
    "Message": at.Message,
    "RawMessageStreamEvent": at.RawMessageStreamEvent,
    "MessageTokensCount": at.MessageTokensCount,
    "ModelInfo": at.ModelInfo,
    "ErrorResponse": at.ErrorResponse,
    # What a client (here: the router, test_upstream_conformance) sends to the Messages API.
    "MessageCreateParamsNonStreaming": mcp.MessageCreateParamsNonStreaming,
    "MessageCreateParamsStreaming": mcp.MessageCreateParamsStreaming,
}


@functools.cache
def _validator(name: str) -> Draft202012Validator:
    schema = TypeAdapter(TYPES[name]).json_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def conforms(name: str, document: Any, what: str) -> None:
    error = best_match(_validator(name).iter_errors(document))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top)"
        pytest.fail(f"{what}: not a {name} at {where}: {error.message}\n{json.dumps(document)[:2000]}")


@pytest.fixture(scope="module")
async def http(harness: Harness) -> AsyncIterator[httpx.AsyncClient]:
    key = (await harness.new_account("it-anthropic-conformance", credit_micros=100_000_000)).api_key
    async with httpx.AsyncClient(
        base_url=harness.edge_url, timeout=30, headers={"x-api-key": key, **HEADERS}
    ) as c:
        yield c


def _body(vendor: str, prompt: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": VENDORS[vendor],
        "max_tokens": 400,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": f"{prompt} {test_matrix.tag()}"}],
        **extra,
    }


TOOLS = [{"name": "get_time", "description": "the time", "input_schema": {"type": "object"}}]
FEATURES: dict[str, dict[str, Any]] = {
    "plain": {"prompt": "say hello"},
    "tool": {
        "prompt": 'what time is it [sim:tool=get_time:{"tz":"UTC"}]',
        "tools": TOOLS,
        "tool_choice": {"type": "tool", "name": "get_time"},
    },
    "thinking": {
        "prompt": "think first [sim:thinking]",
        "thinking": {"type": "enabled", "budget_tokens": 1024},
    },
}


def _request(vendor: str, feature: str, **extra: Any) -> dict[str, Any]:
    spec = dict(FEATURES[feature])
    return _body(vendor, spec.pop("prompt"), **spec, **extra)


@pytest.mark.parametrize("feature", list(FEATURES))
@pytest.mark.parametrize("vendor", list(VENDORS))
async def test_messages_conform(http: httpx.AsyncClient, vendor: str, feature: str) -> None:
    resp = await http.post("/v1/messages", json=_request(vendor, feature))
    assert resp.status_code == 200, resp.text
    message = resp.json()
    conforms("Message", message, f"{vendor} {feature}")
    kinds = [b["type"] for b in message["content"]]
    assert {"plain": "text", "tool": "tool_use", "thinking": "thinking"}[feature] in kinds or (
        # Only vendors that show their reasoning send a thinking block (OpenAI counts it).
        feature == "thinking" and vendor not in test_matrix.SHOWS_REASONING
    ), kinds


@pytest.mark.parametrize("feature", list(FEATURES))
@pytest.mark.parametrize("vendor", list(VENDORS))
async def test_stream_events_conform(http: httpx.AsyncClient, vendor: str, feature: str) -> None:
    resp, events = await test_matrix.sse(http, "/v1/messages", _request(vendor, feature, stream=True))
    assert resp.status_code == 200
    assert events
    for name, data in events:
        event = json.loads(data)
        assert event["type"] == name
        if name == "ping":
            assert event == {"type": "ping"}
        else:
            conforms("RawMessageStreamEvent", event, f"{vendor} {feature} {name}")


async def test_a_server_tool_turn_conforms(http: httpx.AsyncClient) -> None:
    """Claude's web search turn as relayed: server tool blocks, citations, server tool usage."""
    body = _body(
        "anthropic",
        "news [sim:web_search]",
        tools=[{"type": "web_search_20250305", "name": "web_search"}],
    )
    resp = await http.post("/v1/messages", json=body)
    assert resp.status_code == 200, resp.text
    message = resp.json()
    conforms("Message", message, "web search")
    assert [b["type"] for b in message["content"]] == ["server_tool_use", "web_search_tool_result", "text"]
    assert message["usage"]["server_tool_use"]["web_search_requests"] == 1
    resp, events = await test_matrix.sse(http, "/v1/messages", {**body, "stream": True})
    assert resp.status_code == 200
    for name, data in events:
        if name != "ping":
            conforms("RawMessageStreamEvent", json.loads(data), f"web search {name}")
    deltas = [json.loads(d)["delta"]["type"] for n, d in events if n == "content_block_delta"]
    assert {"input_json_delta", "citations_delta", "text_delta"} <= set(deltas)


@pytest.mark.parametrize("vendor", list(VENDORS))
async def test_an_error_inside_a_stream_conforms(http: httpx.AsyncClient, vendor: str) -> None:
    body = _body(vendor, "[sim:words=6] [sim:error_after=2]", stream=True)
    resp, events = await test_matrix.sse(http, "/v1/messages", body)
    assert resp.status_code == 200
    name, data = events[-1]
    assert name == "error"
    conforms("ErrorResponse", json.loads(data), f"{vendor} in-stream error")
    for name, data in events[:-1]:
        if name != "ping":
            conforms("RawMessageStreamEvent", json.loads(data), f"{vendor} {name} before the error")


async def test_count_tokens_and_models_conform(http: httpx.AsyncClient) -> None:
    counted = await http.post(
        "/v1/messages/count_tokens",
        json={k: v for k, v in _body("anthropic", "hi").items() if k != "max_tokens"},
    )
    assert counted.status_code == 200, counted.text
    conforms("MessageTokensCount", counted.json(), "count_tokens")

    listed = await http.get("/v1/models", params={"limit": 1000})
    assert listed.status_code == 200
    page = listed.json()
    assert isinstance(page["has_more"], bool)
    assert page["first_id"] == page["data"][0]["id"]
    assert page["last_id"] == page["data"][-1]["id"]
    for model in page["data"]:
        conforms("ModelInfo", model, f"model {model.get('id')}")
    one = await http.get(f"/v1/models/{VENDORS['anthropic']}")
    assert one.status_code == 200
    conforms("ModelInfo", one.json(), "model retrieve")


async def test_error_bodies_conform(http: httpx.AsyncClient) -> None:
    cases = [
        (
            await http.post(
                "/v1/messages",
                json=_body("anthropic", "hi"),
                headers={"x-api-key": "cm-not-a-key-at-all-000"},
            ),
            401,
        ),
        (await http.post("/v1/messages", json=_body("anthropic", "hi") | {"model": "nobody/nothing"}), 404),
        (
            await http.post(
                "/v1/messages", content=b"{not json", headers={"content-type": "application/json"}
            ),
            400,
        ),
        (await http.post("/v1/messages", json=_body("anthropic", "hi") | {"max_tokens": "many"}), 400),
        (await http.post("/v1/messages", json=_body("anthropic", "hi [sim:status=500]")), 502),
    ]
    for resp, status in cases:
        assert resp.status_code == status, resp.text
        conforms("ErrorResponse", resp.json(), f"error {status}")
        assert resp.headers["request-id"] == resp.headers["x-request-id"]
