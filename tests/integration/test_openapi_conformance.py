"""The gateway's public OpenAI-protocol answers against OpenAI's own published schemas.

The JSON schemas of OpenAI's OpenAPI spec (vendored unchanged in tests/conformance/, see its
README for the source commit) are the contract the OpenAI SDKs and every other OpenAI client are
generated from. Each answer is fetched with raw HTTP, so the exact JSON bytes the edge sent are
validated (JSON Schema 2020-12, `jsonschema.Draft202012Validator`, the whole spec in one
`referencing.Registry` so that `#/components/schemas/...` refs resolve), not what an SDK made of
them. For every vendor of test_matrix.VENDORS:

- `POST /v1/chat/completions`, plain, with a forced tool call (`[sim:tool=NAME:{json}]`) and with
  `[sim:thinking]`: the body against `CreateChatCompletionResponse`;
- the same streamed (with and without `stream_options.include_usage`, a streamed tool call):
  every `data:` chunk but `[DONE]` against `CreateChatCompletionStreamResponse`;
- `POST /v1/responses`, plain, a tool call, `[sim:thinking]`, cut by `max_output_tokens`:
  `Response`; streamed: every event against `ResponseStreamEvent`;
- `GET /v1/models`: `ListModelsResponse`; `GET /v1/models/{vendor}/{model}`: `Model`;
- the error bodies of those endpoints (bad key 401, unknown model 404, malformed JSON 400, a
  field of the wrong type 400): `ErrorResponse`.

Streams that fail midway (`[sim:error_after=N]`) are checked too: a chat stream's in-stream
error is an `ErrorResponse` (what OpenAI sends as the last `data:` line), a Responses stream ends
in a `response.failed` event, itself a `ResponseStreamEvent`.

Every schema named here exists under that name in the spec (`SCHEMAS`, checked by the first
test); `ResponseStreamEvent` is a union of every Responses event, discriminated by `type`, and a
failure names the errors of the branch the event's `type` picks. Formats (`unixtime`, `uri`, …)
are annotations, as JSON Schema 2020-12 has them by default.

Where the spec's schemas are stricter than OpenAI's real API, the check is narrowed in one
place, `_narrowed`, and nowhere else; the vendored file stays as published:
- the document says OpenAPI 3.1 but still marks 111 schemas with OpenAPI 3.0's `nullable: true`,
  a keyword JSON Schema 2020-12 ignores. Read literally, the `finish_reason: null`,
  `logprobs: null` and `usage: null` of every streamed chat chunk would be invalid, although
  OpenAI sends exactly that and the spec's own descriptions say so. Those schemas are read as
  OpenAPI 3.0 meant them: the schema, or null;
- a few properties typed without null that the spec's own examples of real answers show as
  null (`NULL_IN_EXAMPLES`, each with the example that shows it);
- `oneOf` unions whose branches overlap, read as `anyOf` (`ONE_OF_OVERLAPS`; the request
  schemas test_upstream_conformance checks hit it).
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from jsonschema.exceptions import ValidationError, best_match  # type: ignore[import-untyped]
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from crossmodel_devstack.harness import Harness
from tests.integration import test_matrix

SPEC_PATH = Path(__file__).resolve().parents[1] / "conformance" / "openai-openapi.json"
# The URI the spec is registered under: never fetched, only the base its `#/...` refs resolve to.
SPEC_URI = "https://github.com/openai/openai-openapi/raw/f85dbe2/openapi.json"
SCHEMA_REF = SPEC_URI + "#/components/schemas/"

VENDORS = test_matrix.VENDORS
CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"


# ------------------------------------------------------------------------------- the schemas


# Properties whose schema has no null although the spec's own examples of OpenAI's answers
# carry null there; `_narrowed` lets them be null too (JSON pointers into the spec).
NULL_IN_EXAMPLES = {
    # POST /chat/completions, example "Logprobs": `"system_fingerprint": null`; a fingerprint is
    # deprecated and absent for many models (here: whenever the upstream vendor has none).
    "/components/schemas/CreateChatCompletionResponse/properties/system_fingerprint",
    "/components/schemas/CreateChatCompletionStreamResponse/properties/system_fingerprint",
    # ResponseCreatedEvent / ResponseInProgressEvent / ResponseCompletedEvent examples: the
    # response carries `"user": null` (its request had none).
    "/components/schemas/ModelResponseProperties/properties/user",
    # ResponseCreatedEvent / ResponseInProgressEvent examples: `"usage": null` before the answer
    # is done. test_answers_conform still requires usage of every finished response.
    "/components/schemas/Response/allOf/2/properties/usage",
}


# Unions whose branches overlap, so that JSON Schema's `oneOf` (exactly one branch) refuses what
# the API takes: a Responses input message `{"role": "user", "content": [{"type": "input_text",
# …}]}` is both an `EasyInputMessage` and an `InputMessage` (an `Item`). OpenAPI clients pick
# the first branch that fits; these are read as `anyOf`.
ONE_OF_OVERLAPS = {"/components/schemas/InputItem"}


def _narrowed(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec as validated: the one place where the check is narrower than the published
    schemas (see the module docstring). Everything not named here is validated as published."""

    def walk(node: Any, pointer: str) -> Any:
        if isinstance(node, list):
            return [walk(v, f"{pointer}/{i}") for i, v in enumerate(node)]
        if not isinstance(node, dict):
            return node
        out = {k: walk(v, f"{pointer}/{k}") for k, v in node.items() if not (k == "nullable" and v is True)}
        if pointer in ONE_OF_OVERLAPS:
            out["anyOf"] = out.pop("oneOf")
        # OpenAPI 3.0's `nullable: true` (ignored by JSON Schema 2020-12): the schema, or null.
        if node.get("nullable") is True or pointer in NULL_IN_EXAMPLES:
            return {"anyOf": [out, {"type": "null"}]}
        return out

    narrowed: dict[str, Any] = walk(spec, "")
    return narrowed


@functools.cache
def _spec() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(SPEC_PATH.read_bytes())
    return spec


@functools.cache
def _registry() -> Registry[Any]:
    resource = Resource.from_contents(_narrowed(_spec()), default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)
    return registry


@functools.cache
def validator(schema: str) -> Draft202012Validator:
    """A validator of `components.schemas[schema]`, built once per name."""
    return Draft202012Validator({"$ref": SCHEMA_REF + schema}, registry=_registry())


def _leaves(error: ValidationError) -> Iterator[ValidationError]:
    """The errors that say what is wrong. A union (anyOf/oneOf) only says "not valid under any
    of the given schemas": descend into the branches meant for this instance, those whose
    discriminator (`type`) and JSON type matched, as an OpenAPI client picks its branch, or into
    the closest branch when none did."""
    if not error.context:
        yield error
        return
    prop = (error.schema.get("discriminator") or {}).get("propertyName", "type")

    def misfit(sub: ValidationError) -> bool:
        path = list(sub.relative_path)
        return path == [prop] or (path == [] and sub.validator == "type")

    branches: dict[Any, list[ValidationError]] = defaultdict(list)
    for sub in error.context:
        branches[sub.relative_schema_path[0]].append(sub)
    fitting = [subs for subs in branches.values() if not any(misfit(s) for s in subs)]
    for subs in fitting or [[best_match(error.context)]]:
        for sub in subs:
            yield from _leaves(sub)


def problems(schema: str, instance: Any) -> list[str]:
    """What makes `instance` invalid under `schema`, one line per error (empty when valid)."""
    out = []
    for error in validator(schema).iter_errors(instance):
        for leaf in _leaves(error):
            where = "/".join(str(p) for p in leaf.absolute_path) or "(top)"
            out.append(f"{where}: {leaf.message[:300]}")
    return out


def conforms(schema: str, instance: Any, what: str) -> None:
    found = problems(schema, instance)
    assert not found, (
        f"{what} is not a valid {schema}:\n  " + "\n  ".join(found) + ("\n" + json.dumps(instance)[:2000])
    )


# Every schema the module validates against; the first test checks the spec still has them.
SCHEMAS = [
    "CreateChatCompletionResponse",
    "CreateChatCompletionStreamResponse",
    "Response",
    "ResponseStreamEvent",
    "ListModelsResponse",
    "Model",
    "ErrorResponse",
]


def test_the_spec_has_every_schema_and_the_check_can_fail() -> None:
    spec = _spec()
    assert spec["openapi"].startswith("3.1")
    assert set(SCHEMAS) <= set(spec["components"]["schemas"])
    for pointer in NULL_IN_EXAMPLES:  # each narrowing still names a schema without null
        node: Any = spec
        for part in pointer.strip("/").split("/"):
            node = node[int(part)] if isinstance(node, list) else node[part]
        assert "null" not in json.dumps(node), (pointer, node)
    # The validators do reject: a chunk without its id, a wrong object type, a `finish_reason`
    # outside the enum, a number where a string belongs, an unknown stream event.
    choice = {"index": 0, "delta": {"content": "hi"}, "finish_reason": None, "logprobs": None}
    chunk: dict[str, Any] = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [choice],
        "usage": None,
    }
    assert problems("CreateChatCompletionStreamResponse", chunk) == []
    assert problems("CreateChatCompletionStreamResponse", {k: v for k, v in chunk.items() if k != "id"})
    assert problems("CreateChatCompletionStreamResponse", {**chunk, "object": "chat.completion"})
    bad_finish = [{**choice, "finish_reason": "done"}]
    assert problems("CreateChatCompletionStreamResponse", {**chunk, "choices": bad_finish})
    wrong = {"error": {"message": 1, "type": "x", "param": None, "code": None}}
    assert problems("ErrorResponse", wrong) == ["error/message: 1 is not of type 'string'"]
    event = {"type": "response.output_text.delta", "item_id": "i", "output_index": 0, "content_index": 0}
    event |= {"delta": "hi", "sequence_number": 3, "logprobs": []}
    assert problems("ResponseStreamEvent", event) == []
    assert problems("ResponseStreamEvent", {**event, "type": "response.output_text.deltas"})
    missing = problems("ResponseStreamEvent", {k: v for k, v in event.items() if k != "item_id"})
    assert missing == ["(top): 'item_id' is a required property"], "the discriminated branch speaks"


# ------------------------------------------------------------------------------------ the wire


@pytest.fixture(scope="module")
async def http(harness: Harness) -> AsyncIterator[httpx.AsyncClient]:
    """One funded account's key for the module (a fresh account per test would cost more time
    than the requests themselves)."""
    account = await harness.new_account("it-openapi-conformance", credit_micros=100_000_000)
    async with httpx.AsyncClient(
        base_url=harness.edge_url, timeout=30, headers={"authorization": f"Bearer {account.api_key}"}
    ) as c:
        yield c


def _json(resp: httpx.Response) -> Any:
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    return json.loads(resp.content)


async def _stream(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> list[tuple[str, str]]:
    resp, events = await test_matrix.sse(http, path, body)
    assert resp.status_code == 200, events
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert events, "the stream sent no event"
    return events


# ---------------------------------------------------------------------------- the table


def _chat(model: str, prompt: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": test_matrix.user_turn(prompt), **extra}


def _responses(model: str, prompt: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "instructions": test_matrix.SYSTEM, "input": prompt, **extra}


_TOOLS = f"Weather and time in Paris {test_matrix.TOOL_MARKERS}"
_THINK = "Think before answering [sim:thinking] [sim:cached=2]"
_USAGE = {"stream_options": {"include_usage": True}}


# What an answer is checked against, by endpoint and streaming: the body, or each event.
SCHEMA_OF = {
    (CHAT, False): "CreateChatCompletionResponse",
    (CHAT, True): "CreateChatCompletionStreamResponse",
    (RESPONSES, False): "Response",
    (RESPONSES, True): "ResponseStreamEvent",
}


@dataclass(frozen=True)
class Case:
    name: str
    path: str  # CHAT or RESPONSES
    prompt: str
    tools: bool = False  # offer test_matrix's two tools (the prompt's markers call them)
    stream: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def schema(self) -> str:
        return SCHEMA_OF[self.path, self.stream]

    def body(self, model: str) -> dict[str, Any]:
        extra = dict(self.extra, stream=True) if self.stream else dict(self.extra)
        if self.path == CHAT:
            if self.tools:
                extra["tools"] = test_matrix.chat_tools()
            return _chat(model, self.prompt, **extra)
        if self.tools:
            extra["tools"] = test_matrix.responses_tools()
        return _responses(model, self.prompt, **extra)


CASES = [
    Case("chat", CHAT, "Name three colours [sim:cached=2]", extra={"temperature": 0.2}),
    Case("chat-tools", CHAT, _TOOLS, tools=True, extra={"tool_choice": "auto"}),
    Case("chat-thinking", CHAT, _THINK),
    Case("chat-stream", CHAT, "Stream me", stream=True),
    Case("chat-stream-usage", CHAT, "Stream me with usage", stream=True, extra=_USAGE),
    Case("chat-stream-tools", CHAT, _TOOLS, tools=True, stream=True, extra=_USAGE),
    Case("chat-stream-thinking", CHAT, _THINK, stream=True, extra=_USAGE),
    Case("responses", RESPONSES, "Tell me something [sim:cached=2]"),
    Case("responses-tools", RESPONSES, _TOOLS, tools=True),
    Case("responses-thinking", RESPONSES, _THINK),
    Case("responses-incomplete", RESPONSES, "[sim:words=40]", extra={"max_output_tokens": 16}),
    Case("responses-stream", RESPONSES, "Stream a response", stream=True),
    Case("responses-stream-tools", RESPONSES, _TOOLS, tools=True, stream=True),
    Case("responses-stream-thinking", RESPONSES, _THINK, stream=True),
]


_LOGPROBS = {"logprobs": True, "top_logprobs": 2}
_INCLUDE = {"include": ["message.output_text.logprobs"], "top_logprobs": 2}
# Log probabilities, of every vendor but Anthropic (which has none: test_logprobs.py).
LOGPROB_CASES = [
    Case("chat-logprobs", CHAT, "Name three colours", extra=_LOGPROBS),
    Case("chat-stream-logprobs", CHAT, "Stream me", stream=True, extra=_LOGPROBS),
    Case("responses-logprobs", RESPONSES, "Tell me something", extra=_INCLUDE),
    Case("responses-stream-logprobs", RESPONSES, "Stream a response", stream=True, extra=_INCLUDE),
]


@pytest.mark.parametrize("vendor", list(VENDORS))
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_answers_conform(http: httpx.AsyncClient, case: Case, vendor: str) -> None:
    await _conforms(http, case, vendor)


@pytest.mark.parametrize("vendor", [v for v in VENDORS if v != "anthropic"])
@pytest.mark.parametrize("case", LOGPROB_CASES, ids=[c.name for c in LOGPROB_CASES])
async def test_answers_with_logprobs_conform(http: httpx.AsyncClient, case: Case, vendor: str) -> None:
    text = await _conforms(http, case, vendor)
    assert '"logprobs":[{' in text or '"logprobs":{"content":[{' in text, "no log probabilities came back"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_a_custom_tool_call_conforms(http: httpx.AsyncClient, stream: bool) -> None:
    """OpenAI's items other than messages, function calls and reasoning, relayed verbatim on the
    native path: a `custom` tool's call (Codex's freeform `apply_patch`) and its input events."""
    tool = {"type": "custom", "name": "apply_patch", "format": {"type": "text"}}
    case = Case("responses-custom-tool", RESPONSES, "Patch it [sim:tool=apply_patch]", stream=stream)
    body = case.body(VENDORS["openai"]) | {"tools": [tool]}
    text = await _conforms_body(http, case, body, "openai")
    assert '"type":"custom_tool_call"' in text
    if stream:
        assert '"type":"response.custom_tool_call_input.delta"' in text


async def _conforms(http: httpx.AsyncClient, case: Case, vendor: str) -> str:
    return await _conforms_body(http, case, case.body(VENDORS[vendor]), vendor)


async def _conforms_body(http: httpx.AsyncClient, case: Case, body: dict[str, Any], vendor: str) -> str:
    """Check the answer to `case` (sent as `body`) against its schema; return its text."""
    if not case.stream:
        resp = await http.post(case.path, json=body)
        assert resp.status_code == 200, resp.text
        answer = _json(resp)
        conforms(case.schema, answer, f"{case.name} ({vendor})")
        if case.path == RESPONSES:
            assert isinstance(answer["usage"], dict), "a finished response has usage (NULL_IN_EXAMPLES)"
        return resp.text
    events = await _stream(http, case.path, body)
    if case.path == CHAT:
        assert events[-1][1] == "[DONE]"
        events = events[:-1]
    assert events
    datas = [json.loads(data) for _, data in events]
    for i, data in enumerate(datas):
        conforms(case.schema, data, f"{case.name} ({vendor}) event {i}")
    if case.path == RESPONSES:
        assert isinstance(datas[-1]["response"]["usage"], dict), (
            "the final event has usage (NULL_IN_EXAMPLES)"
        )
    return "\n".join(json.dumps(d, separators=(",", ":")) for d in datas)


@pytest.mark.parametrize("vendor", list(VENDORS))
async def test_streams_failing_midway_conform(http: httpx.AsyncClient, vendor: str) -> None:
    model = VENDORS[vendor]
    fail = "fail me midway now [sim:error_after=2]"
    # Chat: chunks, then OpenAI's in-stream error object as the last data line.
    events = await _stream(http, CHAT, _chat(model, fail, stream=True, **_USAGE))
    datas = [json.loads(d) for _, d in events if d != "[DONE]"]
    assert "error" in datas[-1], datas[-1]
    for i, data in enumerate(datas[:-1]):
        conforms("CreateChatCompletionStreamResponse", data, f"failing chat stream ({vendor}) event {i}")
    conforms("ErrorResponse", datas[-1], f"failing chat stream ({vendor}) error")
    # Responses: events ending in `response.failed`.
    events = await _stream(http, RESPONSES, _responses(model, fail, stream=True))
    datas = [json.loads(d) for _, d in events]
    assert datas[-1]["type"] == "response.failed"
    for i, data in enumerate(datas):
        conforms("ResponseStreamEvent", data, f"failing Responses stream ({vendor}) event {i}")


async def test_model_list_conforms(http: httpx.AsyncClient) -> None:
    resp = await http.get("/v1/models")
    assert resp.status_code == 200, resp.text
    listed = _json(resp)
    conforms("ListModelsResponse", listed, "GET /v1/models")
    assert set(VENDORS.values()) <= {m["id"] for m in listed["data"]}


@pytest.mark.parametrize("vendor", list(VENDORS))
async def test_model_conforms(http: httpx.AsyncClient, vendor: str) -> None:
    resp = await http.get(f"/v1/models/{VENDORS[vendor]}")
    assert resp.status_code == 200, resp.text
    model = _json(resp)
    conforms("Model", model, f"GET /v1/models/{VENDORS[vendor]}")
    assert model["id"] == VENDORS[vendor]


@pytest.mark.parametrize("vendor", list(VENDORS))
async def test_input_token_counts_conform(http: httpx.AsyncClient, vendor: str) -> None:
    """`POST /v1/responses/input_tokens` (the SDK's `responses.input_tokens.count`) counts what
    the Responses request would send, for any vendor's model, as Anthropic's count_tokens does."""
    body = _responses(VENDORS[vendor], "Tell me a joke.", instructions="Be brief.")
    resp = await http.post("/v1/responses/input_tokens", json=body)
    assert resp.status_code == 200, resp.text
    counted = _json(resp)
    conforms("TokenCountsResource", counted, f"input_tokens ({vendor})")
    assert counted["input_tokens"] > 0
    longer = await http.post("/v1/responses/input_tokens", json=body | {"input": "Tell me a joke. " * 50})
    assert _json(longer)["input_tokens"] > counted["input_tokens"]
    sdk = openai.AsyncOpenAI(
        base_url=str(http.base_url) + "/v1", api_key=http.headers["authorization"].removeprefix("Bearer ")
    )
    async with sdk:
        assert (await sdk.responses.input_tokens.count(**body)).input_tokens == counted["input_tokens"]
    unknown = await http.post("/v1/responses/input_tokens", json=body | {"model": "nope/nope"})
    assert unknown.status_code == 404
    conforms("ErrorResponse", _json(unknown), "input_tokens, unknown model")


# ------------------------------------------------------------------------------------ errors


@dataclass(frozen=True)
class ErrorCase:
    name: str
    method: str
    path: str
    status: int
    # The body for a catalog model (bytes are sent as they are), or None for a GET.
    body: Callable[[str], dict[str, Any] | bytes] | None = None
    bad_key: bool = False


def _chat_hi(model: str) -> dict[str, Any]:
    return _chat(model, "hi")


def _responses_hi(model: str) -> dict[str, Any]:
    return _responses(model, "hi")


UNKNOWN = "nope/not-a-model"
ERROR_CASES = [
    ErrorCase("chat-bad-key", "POST", CHAT, 401, _chat_hi, bad_key=True),
    ErrorCase("chat-unknown-model", "POST", CHAT, 404, lambda _: _chat(UNKNOWN, "hi")),
    ErrorCase("chat-unknown-model-streamed", "POST", CHAT, 404, lambda _: _chat(UNKNOWN, "hi", stream=True)),
    ErrorCase("chat-malformed-json", "POST", CHAT, 400, lambda _: b'{"model": "x", "messages": ['),
    ErrorCase("chat-wrong-type", "POST", CHAT, 400, lambda m: _chat(m, "hi", temperature="hot")),
    ErrorCase("chat-messages-not-a-list", "POST", CHAT, 400, lambda m: {"model": m, "messages": "hi"}),
    ErrorCase("responses-bad-key", "POST", RESPONSES, 401, _responses_hi, bad_key=True),
    ErrorCase("responses-unknown-model", "POST", RESPONSES, 404, lambda _: _responses(UNKNOWN, "hi")),
    ErrorCase("responses-malformed-json", "POST", RESPONSES, 400, lambda _: b'{"model": "x", "input": '),
    ErrorCase("responses-wrong-type", "POST", RESPONSES, 400, lambda m: _responses(m, "hi", top_p="all")),
    ErrorCase("responses-input-not-text", "POST", RESPONSES, 400, lambda m: {"model": m, "input": 42}),
    ErrorCase("models-bad-key", "GET", "/v1/models", 401, bad_key=True),
    ErrorCase("model-bad-key", "GET", "/v1/models/{model}", 401, bad_key=True),
    ErrorCase("model-unknown", "GET", f"/v1/models/{UNKNOWN}", 404),
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=[c.name for c in ERROR_CASES])
async def test_errors_conform(http: httpx.AsyncClient, case: ErrorCase) -> None:
    model = VENDORS["openai"]
    headers = {"content-type": "application/json"}
    if case.bad_key:
        headers["authorization"] = "Bearer cm-" + "x" * 48
    body = case.body(model) if case.body else None
    content = body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
    path = case.path.format(model=model)
    resp = await http.request(case.method, path, content=content, headers=headers)
    assert resp.status_code == case.status, resp.text
    conforms("ErrorResponse", _json(resp), f"{case.method} {path} ({case.name})")
