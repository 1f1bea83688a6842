"""The simulator's Gemini API against Google's published types and Google's own SDK.

The simulator stands in for Gemini, so the router's Gemini adapter is only as right as the
simulator's wire format. Google publishes the Gemini API as protocol buffers
(`google.ai.generativelanguage.v1beta`); the REST API is their JSON mapping. The
`google-ai-generativelanguage` package ships those messages, and `conforms()` parses JSON into
them strictly (protobuf's JSON parser: an unknown field, a wrong type or an unknown enum name
fails), which is how the real API reads a request. test_upstream_conformance uses it for what
the router sends to Gemini; here it checks what the simulator answers:

- `generateContent`, plain, with a function call, with thoughts and cut off: the body against
  `GenerateContentResponse`;
- the same streamed (`streamGenerateContent?alt=sse`): every chunk against
  `GenerateContentResponse`;
- `GET /v1beta/models`: `ListModelsResponse`.

Then the official `google-genai` SDK, pointed at the simulator, must read every answer as Google's
servers give it: text, function calls, thought parts with their signature, finish reasons and
usage, streamed chunks, the model list, and an error with its status.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from google import genai
from google.ai import generativelanguage_v1beta as glm
from google.genai import errors as genai_errors
from google.genai import types as gt
from google.protobuf.json_format import ParseError

from crossmodel_devstack.harness import Harness
from tests.integration import test_matrix

MODEL = "gemini-2.5-flash"
TYPES: dict[str, Any] = {
    "GenerateContentRequest": glm.GenerateContentRequest,
    "GenerateContentResponse": glm.GenerateContentResponse,
    "ListModelsResponse": glm.ListModelsResponse,
}
PROMPTS = {
    "plain": "say something",
    "tool": 'call it [sim:tool=get_time:{"tz":"UTC"}]',
    "thinking": "think first [sim:thinking]",
    "cut": "a long answer [sim:words=40]",
    "logprobs": "say something likely",
}
TOOLS = [{"functionDeclarations": [{"name": "get_time", "parametersJsonSchema": {"type": "object"}}]}]


def conforms(name: str, document: Any, what: str) -> None:
    """`document` (parsed JSON) is a valid JSON form of the Gemini API message `name`."""
    try:
        TYPES[name].from_json(json.dumps(document), ignore_unknown_fields=False)
    except ParseError as exc:
        pytest.fail(f"{what}: not a {name}: {exc}\n{json.dumps(document)[:2000]}")


def test_conforms_refuses_what_the_api_refuses() -> None:
    good = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "generationConfig": {"topP": 0.5}}
    conforms("GenerateContentRequest", good, "a plain request")
    for bad in (
        good | {"generation_config_typo": {}},  # an unknown field
        good | {"generationConfig": {"maxOutputTokens": "many"}},  # a wrong type
        {"contents": [{"role": "user", "parts": [{"text": "hi", "thoughtSig": "x"}]}]},
        good | {"toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}}},  # an unknown enum
    ):
        with pytest.raises(pytest.fail.Exception):
            conforms("GenerateContentRequest", bad, "a bad request")


def _body(kind: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "contents": [{"role": "user", "parts": [{"text": f"{PROMPTS[kind]} {test_matrix.tag()}"}]}],
        "generationConfig": {"maxOutputTokens": 5 if kind == "cut" else 2000},
    }
    if kind == "tool":
        body["tools"] = TOOLS
    if kind == "thinking":
        body["generationConfig"]["thinkingConfig"] = {"includeThoughts": True, "thinkingBudget": 1024}
    if kind == "logprobs":
        body["generationConfig"] |= {"responseLogprobs": True, "logprobs": 3}
    conforms("GenerateContentRequest", body, f"the test's own {kind} request")
    return body


@pytest.fixture(scope="module")
async def sim(harness: Harness) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=harness.stack.simulator_url + "/gemini/v1beta",
        timeout=30,
        headers={"x-goog-api-key": "sk-simulator"},
    ) as c:
        yield c


@pytest.mark.parametrize("kind", list(PROMPTS))
async def test_generate_content_conforms(sim: httpx.AsyncClient, kind: str) -> None:
    resp = await sim.post(f"/models/{MODEL}:generateContent", json=_body(kind))
    assert resp.status_code == 200, resp.text
    conforms("GenerateContentResponse", resp.json(), f"simulator generateContent {kind}")
    result = resp.json()["candidates"][0].get("logprobsResult")
    assert (result is not None) == (kind == "logprobs")
    if result is not None:
        assert len(result["chosenCandidates"]) == len(result["topCandidates"]) > 0
        assert all(len(step["candidates"]) == 3 for step in result["topCandidates"])


@pytest.mark.parametrize("kind", list(PROMPTS))
async def test_stream_chunks_conform(sim: httpx.AsyncClient, kind: str) -> None:
    resp, events = await test_matrix.sse(
        sim, f"/models/{MODEL}:streamGenerateContent", _body(kind), params={"alt": "sse"}
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert len(events) > 1
    for _, data in events:
        conforms("GenerateContentResponse", json.loads(data), f"simulator stream {kind} chunk")


async def test_the_model_list_conforms(sim: httpx.AsyncClient) -> None:
    resp = await sim.get("/models")
    assert resp.status_code == 200, resp.text
    conforms("ListModelsResponse", resp.json(), "simulator models")
    assert f"models/{MODEL}" in [m["name"] for m in resp.json()["models"]]


# ------------------------------------------------------------------- Google's SDK as the client


@pytest.fixture(scope="module")
def google_client(harness: Harness) -> genai.Client:
    return genai.Client(
        api_key="sk-simulator",
        http_options=gt.HttpOptions(
            base_url=harness.stack.simulator_url + "/gemini/",
            # The router's API version; the SDK's own default (v1) is served as well.
            api_version="v1beta",
            timeout=30_000,
            retry_options=gt.HttpRetryOptions(attempts=1),
        ),
    )


async def test_the_sdk_reads_a_plain_answer(google_client: genai.Client) -> None:
    resp = await google_client.aio.models.generate_content(model=MODEL, contents="say hello")
    assert resp.text == "You said: say hello"
    assert resp.candidates
    assert resp.candidates[0].finish_reason == gt.FinishReason.STOP
    usage = resp.usage_metadata
    assert usage is not None
    assert usage.prompt_token_count
    assert usage.candidates_token_count == 4
    assert usage.total_token_count == usage.prompt_token_count + 4
    assert resp.response_id
    assert resp.model_version == MODEL


async def test_the_sdk_reads_function_calls_and_answers_them(google_client: genai.Client) -> None:
    tool = gt.Tool(
        function_declarations=[
            gt.FunctionDeclaration(name="get_time", parameters_json_schema={"type": "object"})
        ]
    )
    config = gt.GenerateContentConfig(
        tools=[tool],
        tool_config=gt.ToolConfig(
            function_calling_config=gt.FunctionCallingConfig(mode=gt.FunctionCallingConfigMode.ANY)
        ),
        automatic_function_calling=gt.AutomaticFunctionCallingConfig(disable=True),
    )
    first = await google_client.aio.models.generate_content(
        model=MODEL, contents='what time is it [sim:tool=get_time:{"tz":"UTC"}]', config=config
    )
    calls = first.function_calls
    assert calls
    assert calls[0].name == "get_time"
    assert calls[0].args == {"tz": "UTC"}
    assert first.candidates
    assert first.candidates[0].content
    # The call goes back with its result, as the SDK builds the next turn.
    contents: list[gt.ContentUnionDict] = [
        gt.Content(role="user", parts=[gt.Part(text="what time is it")]),
        first.candidates[0].content,
        gt.Content(
            role="user",
            parts=[gt.Part.from_function_response(name="get_time", response={"time": "noon"})],
        ),
    ]
    second = await google_client.aio.models.generate_content(model=MODEL, contents=contents)
    assert second.text
    assert not second.function_calls


async def test_the_sdk_reads_thoughts_with_their_signature(google_client: genai.Client) -> None:
    config = gt.GenerateContentConfig(thinking_config=gt.ThinkingConfig(include_thoughts=True))
    resp = await google_client.aio.models.generate_content(
        model=MODEL, contents="think first [sim:thinking]", config=config
    )
    assert resp.candidates
    assert resp.candidates[0].content
    assert resp.candidates[0].content.parts
    parts = resp.candidates[0].content.parts
    thoughts = [p for p in parts if p.thought]
    answers = [p for p in parts if not p.thought]
    assert thoughts
    assert thoughts[0].text
    assert thoughts[0].text.startswith("Thinking about:")
    assert answers
    assert answers[-1].thought_signature
    assert resp.usage_metadata
    assert resp.usage_metadata.thoughts_token_count


async def test_the_sdk_reads_a_cut_off_answer(google_client: genai.Client) -> None:
    resp = await google_client.aio.models.generate_content(
        model=MODEL,
        contents="a long answer [sim:words=40]",
        config=gt.GenerateContentConfig(max_output_tokens=5),
    )
    assert resp.candidates
    assert resp.candidates[0].finish_reason == gt.FinishReason.MAX_TOKENS
    assert resp.usage_metadata
    assert resp.usage_metadata.candidates_token_count == 5


async def test_the_sdk_reads_a_stream(google_client: genai.Client) -> None:
    chunks = [
        chunk
        async for chunk in await google_client.aio.models.generate_content_stream(
            model=MODEL, contents="say hello"
        )
    ]
    assert len(chunks) > 1
    assert "".join(c.text or "" for c in chunks) == "You said: say hello"
    last = chunks[-1]
    assert last.candidates
    assert last.candidates[0].finish_reason == gt.FinishReason.STOP
    assert last.usage_metadata
    assert last.usage_metadata.total_token_count


async def test_the_sdk_lists_the_models(google_client: genai.Client) -> None:
    names = [m.name async for m in await google_client.aio.models.list()]
    assert f"models/{MODEL}" in names


@pytest.mark.parametrize(("code", "status"), [(429, "RESOURCE_EXHAUSTED"), (503, "UNAVAILABLE")])
async def test_the_sdk_reads_an_error(google_client: genai.Client, code: int, status: str) -> None:
    with pytest.raises(genai_errors.APIError) as caught:
        await google_client.aio.models.generate_content(model=MODEL, contents=f"fail [sim:status={code}]")
    assert caught.value.code == code
    assert caught.value.status == status
    assert caught.value.message == f"Simulated upstream failure ({code})."


async def test_the_sdks_default_api_version_is_served(harness: Harness) -> None:
    client = genai.Client(
        api_key="sk-simulator",
        http_options=gt.HttpOptions(
            base_url=harness.stack.simulator_url + "/gemini/", retry_options=gt.HttpRetryOptions(attempts=1)
        ),
    )
    resp = await client.aio.models.generate_content(model=MODEL, contents="say hello")
    assert resp.text == "You said: say hello"
