"""Every failure answers in the protocol the client spoke, through the whole system: status,
body shape and type, the field named, `retry-after` where a retry makes sense, `x-request-id`
always (and Anthropic's `request-id` on /v1/messages); failures after the first byte end the
stream with the protocol's own error event. Upstream failures are scripted with the simulator's
markers (docs/protocols.md, "Provider simulator")."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import pytest

from crossmodel_devstack.harness import Harness

GPT = "openai/gpt-4o-mini"
CLAUDE = "anthropic/claude-sonnet-4.6"
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}
PATHS = {"chat": "/v1/chat/completions", "responses": "/v1/responses", "messages": "/v1/messages"}
BAD_KEY = "cm-" + "x" * 48
GEMINI = "google/gemini-2.5-flash"
FUNCTION_TOOL = {"type": "function", "name": "get_time", "parameters": {"type": "object"}}
SERVER_TOOL = {"type": "web_search_20250305", "name": "web_search", "max_uses": 2}
CUSTOM_TOOL = {"type": "custom", "custom": {"name": "run_sql"}}


def body_for(protocol: str, text: str, model: str = GPT, **extra: Any) -> dict[str, Any]:
    if protocol == "chat":
        return {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    if protocol == "responses":
        return {"model": model, "input": text, **extra}
    return {"model": model, "max_tokens": 200, "messages": [{"role": "user", "content": text}], **extra}


@dataclass(frozen=True)
class Case:
    name: str
    protocol: str
    body: Callable[[], dict[str, Any] | bytes]
    status: int
    openai_type: str = ""  # error.type on OpenAI endpoints
    anthropic_type: str = ""  # error.type on /v1/messages
    param: str | None = None  # OpenAI's error.param, or the field Anthropic's message names
    code: str | None = None
    retry_after: str | None = None  # the retry-after header, None when it must be absent
    key: str = "good"


IRE, AUTH, NOT_FOUND = "invalid_request_error", "authentication_error", "not_found_error"


def _cases() -> list[Case]:
    cases: list[Case] = []
    for p in PATHS:
        m = CLAUDE if p == "messages" else GPT

        def b(text: str = "hi", model: str = m, p: str = p, **extra: Any) -> Callable[[], dict[str, Any]]:
            return lambda: body_for(p, text, model, **extra)

        rate = "hi [sim:status=429] [sim:retry_after_ms=2500]"
        cases += [
            Case("bad key", p, b(), 401, IRE, AUTH, code="invalid_api_key", key="bad"),
            Case("no key", p, b(), 401, IRE, AUTH, key=""),
            Case("unknown model", p, b(model="nope/nope"), 404, IRE, NOT_FOUND, "model", "model_not_found"),
            Case("malformed JSON", p, lambda: b'{"model": "x", "messages": [', 400, IRE, IRE),
            Case("not an object", p, lambda: b"[1, 2]", 400, IRE, IRE),
            Case("model of the wrong type", p, b(model=42), 400, IRE, IRE, "model"),  # type: ignore[arg-type]
            Case("stream of the wrong type", p, b(stream="yes"), 400, IRE, IRE, "stream", "invalid_type"),
            Case("upstream 429", p, b(rate), 429, "rate_limit_error", "rate_limit_error", retry_after="3"),
            Case(
                "upstream 500",
                p,
                b("hi [sim:status=500]"),
                502,
                "server_error",
                "api_error",
                code="upstream_error",
            ),
            Case("upstream 400", p, b("hi [sim:status=400]"), 400, IRE, IRE),
        ]

    def chat(**extra: Any) -> Callable[[], dict[str, Any]]:
        return lambda: body_for("chat", "hi", **extra)

    def resp(**extra: Any) -> Callable[[], dict[str, Any]]:
        return lambda: body_for("responses", "hi") | extra

    def msgs(**extra: Any) -> Callable[[], dict[str, Any]]:
        return lambda: body_for("messages", "hi", CLAUDE) | extra

    def sim(protocol: str, model: str, status: int) -> Callable[[], dict[str, Any]]:
        return lambda: body_for(protocol, f"hi [sim:status={status}] [sim:retry_after_ms=1000]", model)

    bad_block = [{"role": "user", "content": [{"type": "text", "text": 5}]}]
    cases += [
        Case("temperature of the wrong type", "chat", chat(temperature="hot"), 400, IRE, param="temperature"),
        Case(
            "content of the wrong type",
            "chat",
            chat(messages=[{"role": "user", "content": 5}]),
            400,
            IRE,
            param="messages[0].content",
        ),
        Case(
            "max_output_tokens wrong",
            "responses",
            resp(max_output_tokens="x"),
            400,
            IRE,
            param="max_output_tokens",
            code="invalid_type",
        ),
        Case(
            "include value",
            "responses",
            resp(include=["bogus"]),
            400,
            IRE,
            param="include[0]",
            code="invalid_value",
        ),
        Case("unknown parameter", "responses", resp(frobnicate=True), 400, IRE, param="frobnicate"),
        Case(
            "legacy functions",
            "chat",
            chat(functions=[{"name": "f", "parameters": {"type": "object"}}]),
            400,
            IRE,
            param="functions",
            code="unsupported_parameter",
        ),
        Case("input of the wrong type", "responses", resp(input=5), 400, IRE, param="input"),
        Case(
            "max_tokens missing",
            "messages",
            msgs(max_tokens=None),
            400,
            anthropic_type=IRE,
            param="max_tokens",
        ),
        Case(
            "max_tokens wrong",
            "messages",
            msgs(max_tokens="many"),
            400,
            anthropic_type=IRE,
            param="max_tokens",
        ),
        Case(
            "block of the wrong type",
            "messages",
            msgs(messages=bad_block),
            400,
            anthropic_type=IRE,
            param="messages[0].content[0].text",
        ),
        Case("extra input", "messages", msgs(frobnicate=1), 400, anthropic_type=IRE, param="frobnicate"),
        # Overloaded is Anthropic's 529 on /v1/messages, whoever was overloaded; OpenAI clients
        # know 503.
        Case(
            "upstream 529",
            "messages",
            sim("messages", CLAUDE, 529),
            529,
            anthropic_type="overloaded_error",
            retry_after="1",
        ),
        Case(
            "upstream 503 on gpt",
            "messages",
            sim("messages", GPT, 503),
            529,
            anthropic_type="overloaded_error",
            retry_after="1",
        ),
        Case(
            "upstream 529 on claude",
            "chat",
            sim("chat", CLAUDE, 529),
            503,
            "server_error",
            code="overloaded",
            retry_after="1",
        ),
        Case(
            "upstream 429 on claude",
            "chat",
            sim("chat", CLAUDE, 429),
            429,
            "rate_limit_error",
            retry_after="1",
        ),
        Case(
            "upstream 429 on gpt",
            "messages",
            sim("messages", GPT, 429),
            429,
            anthropic_type="rate_limit_error",
            retry_after="1",
        ),
        # A vendor's own tool asked of another vendor's model: refused, never silently dropped.
        Case(
            "hosted tool on claude",
            "responses",
            lambda: body_for("responses", "hi", CLAUDE, tools=[FUNCTION_TOOL, {"type": "web_search"}]),
            400,
            IRE,
            param="tools[1].type",
            code="unsupported_value",
        ),
        Case(
            "server tool on gpt",
            "messages",
            lambda: body_for("messages", "hi", GPT, tools=[SERVER_TOOL]),
            400,
            anthropic_type=IRE,
            param="tools[0].type",
        ),
        # A field only one vendor serves, asked of another vendor's model: refused as well.
        Case(
            "logprobs on claude",
            "chat",
            lambda: body_for("chat", "hi", CLAUDE, logprobs=True),
            400,
            IRE,
            param="logprobs",
            code="unsupported_parameter",
        ),
        Case(
            "previous_response_id on claude",
            "responses",
            lambda: body_for("responses", "hi", CLAUDE, previous_response_id="resp_123"),
            400,
            IRE,
            param="previous_response_id",
            code="unsupported_parameter",
        ),
        Case(
            "custom tool on gemini",
            "chat",
            lambda: body_for("chat", "hi", GEMINI, tools=[CUSTOM_TOOL]),
            400,
            IRE,
            param="tools[0].type",
            code="unsupported_value",
        ),
    ]
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
async def key(harness: Harness) -> str:
    return (await harness.new_account("it-protocol-errors", credit_micros=50_000_000)).api_key


@pytest.fixture(scope="module")
async def http(harness: Harness) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=harness.edge_url, timeout=30) as c:
        yield c


def check_error(resp: httpx.Response, protocol: str) -> dict[str, Any]:
    """The protocol's error shape; returns the inner error object."""
    assert resp.headers.get("x-request-id", "").startswith("req_")
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    if protocol == "messages":
        assert body["type"] == "error"
        assert set(body["error"]) == {"type", "message"}
        assert resp.headers["request-id"] == resp.headers["x-request-id"]
    else:
        assert set(body) == {"error"}
        assert set(body["error"]) == {"message", "type", "param", "code"}
    error: dict[str, Any] = body["error"]
    assert isinstance(error["message"], str)
    assert error["message"]
    return error


@pytest.mark.parametrize("case", CASES, ids=[f"{c.protocol}-{c.name}" for c in CASES])
async def test_error_status_shape_and_headers(http: httpx.AsyncClient, key: str, case: Case) -> None:
    headers = {"content-type": "application/json"}
    if case.protocol == "messages":
        headers |= ANTHROPIC_HEADERS
    if case.key == "good":
        headers["authorization"] = f"Bearer {key}"
    elif case.key == "bad":
        headers["x-api-key"] = BAD_KEY
    body = case.body()
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp = await http.post(PATHS[case.protocol], content=content, headers=headers)
    assert resp.status_code == case.status, resp.text
    error = check_error(resp, case.protocol)
    if case.protocol == "messages":
        assert error["type"] == case.anthropic_type
        if case.param is not None:
            assert case.param in error["message"], "Anthropic's errors name the field in the message"
    else:
        assert error["type"] == case.openai_type
        if case.param is not None:
            assert error["param"] == case.param
        if case.code is not None:
            assert error["code"] == case.code
    assert resp.headers.get("retry-after") == case.retry_after
    if case.status == 402:
        assert "retry-after-ms" not in resp.headers


@pytest.mark.parametrize("protocol", list(PATHS))
async def test_oversized_body_is_413(harness: Harness, key: str, protocol: str) -> None:
    """A declared length over the limit (the stack runs the default 32 MiB) is refused before
    the body is read: the request is sent without its body, and the answer comes anyway."""
    host, port = harness.edge_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        head = (
            f"POST {PATHS[protocol]} HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {key}\r\n"
            f"anthropic-version: 2023-06-01\r\ncontent-type: application/json\r\n"
            f"content-length: {32 * 1024 * 1024 + 1}\r\n\r\n"
        )
        writer.write(head.encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
    status_line, _, rest = raw.partition(b"\r\n")
    assert status_line.split()[1] == b"413"
    header_block, _, body = rest.partition(b"\r\n\r\n")
    lines = (line.decode().partition(":") for line in header_block.split(b"\r\n"))
    headers = {k.strip().lower(): v.strip() for k, _, v in lines}
    assert headers["x-request-id"].startswith("req_")
    error = json.loads(body)["error"]
    assert error["type"] == ("request_too_large" if protocol == "messages" else "invalid_request_error")


async def test_402_has_no_retry_after(harness: Harness, http: httpx.AsyncClient) -> None:
    broke = await harness.new_account("it-protocol-errors-broke")  # no credit
    for protocol in PATHS:
        headers = {"x-api-key": broke.api_key} | ANTHROPIC_HEADERS
        model = CLAUDE if protocol == "messages" else GPT
        resp = await http.post(PATHS[protocol], json=body_for(protocol, "hi", model), headers=headers)
        assert resp.status_code == 402, resp.text
        error = check_error(resp, protocol)
        assert error["type"] == ("billing_error" if protocol == "messages" else "insufficient_quota")
        assert "retry-after" not in resp.headers
        assert "retry-after-ms" not in resp.headers


# --------------------------------------------------------------------- after the first byte


async def _stream(
    http: httpx.AsyncClient, path: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[int, str]:
    async with http.stream("POST", path, json={**body, "stream": True}, headers=headers) as resp:
        text = "".join([t async for t in resp.aiter_text()])
    return resp.status_code, text


@pytest.mark.parametrize("marker", ["[sim:error_after=2]", "[sim:drop_after=2]"])
@pytest.mark.parametrize("model", [GPT, CLAUDE])
async def test_failure_after_the_first_byte_ends_the_stream_in_the_protocol(
    http: httpx.AsyncClient, key: str, model: str, marker: str
) -> None:
    headers = {"authorization": f"Bearer {key}"} | ANTHROPIC_HEADERS
    text = f"one two three four five {marker}"

    status, chat = await _stream(http, PATHS["chat"], body_for("chat", text, model), headers)
    assert status == 200
    assert chat.startswith("data: ")
    assert "[DONE]" not in chat, "a failed chat stream never ends with [DONE]"
    last = chat.strip().split("\n\n")[-1]
    error = json.loads(last.removeprefix("data: "))["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "server_error"

    status, msgs = await _stream(http, PATHS["messages"], body_for("messages", text, model), headers)
    assert status == 200
    events = [e.split("\n") for e in msgs.strip().split("\n\n")]
    assert events[0][0] == "event: message_start"
    assert "event: message_stop" not in msgs
    assert events[-1][0] == "event: error"
    payload = json.loads(events[-1][1].removeprefix("data: "))
    assert payload["type"] == "error"
    assert payload["error"]["type"] in ("api_error", "overloaded_error")

    status, resp = await _stream(http, PATHS["responses"], body_for("responses", text, model), headers)
    assert status == 200
    events = [e.split("\n") for e in resp.strip().split("\n\n")]
    assert events[-1][0] == "event: response.failed"
    failed = json.loads(events[-1][1].removeprefix("data: "))
    first = json.loads(events[0][1].removeprefix("data: "))
    assert failed["response"]["id"] == first["response"]["id"]
    assert failed["response"]["status"] == "failed"
    assert failed["sequence_number"] == len(events) - 1


# ----------------------------------------------------------------------- through the SDKs


async def test_the_sdks_raise_their_own_exceptions(harness: Harness, key: str) -> None:
    async with (
        openai.AsyncOpenAI(base_url=f"{harness.edge_url}/v1", api_key=key, max_retries=0) as oa,
        anthropic.AsyncAnthropic(base_url=harness.edge_url, api_key=key, max_retries=0) as an,
    ):
        with pytest.raises(openai.RateLimitError) as rate:
            await oa.responses.create(model=GPT, input="hi [sim:status=429] [sim:retry_after_ms=1500]")
        assert rate.value.response.headers["retry-after-ms"] == "1500"
        with pytest.raises(openai.BadRequestError) as bad:
            await oa.responses.create(model=GPT, input="hi", extra_body={"frobnicate": True})
        assert bad.value.param == "frobnicate"
        with pytest.raises(anthropic.APIStatusError) as overloaded:
            await an.messages.create(
                model=CLAUDE, max_tokens=50, messages=[{"role": "user", "content": "hi [sim:status=529]"}]
            )
        assert overloaded.value.status_code == 529
        assert overloaded.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
        assert overloaded.value.request_id == overloaded.value.response.headers["x-request-id"]
        with pytest.raises(anthropic.NotFoundError):
            await an.messages.create(
                model="nope/nope", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
            )
        with pytest.raises(anthropic.APIStatusError) as mid_stream:
            async with an.messages.stream(
                model=CLAUDE,
                max_tokens=50,
                messages=[{"role": "user", "content": "a b c d [sim:error_after=2]"}],
            ) as stream:
                await stream.get_final_message()
        assert "overloaded" in str(mid_stream.value).lower()
        # Anthropic's own event type survives the hop, as Anthropic sends it.
        assert mid_stream.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


async def test_count_tokens_and_models_answer_in_anthropic_shape(
    harness: Harness, http: httpx.AsyncClient, key: str
) -> None:
    headers = {"x-api-key": key} | ANTHROPIC_HEADERS
    counted = await http.post(
        "/v1/messages/count_tokens",
        json={"model": CLAUDE, "system": "be brief", "messages": [{"role": "user", "content": "x" * 40}]},
        headers=headers,
    )
    assert counted.status_code == 200, counted.text
    # The estimate rule (docs/protocols.md): 3 + 4 per message + one token per 4 characters.
    assert counted.json() == {"input_tokens": 3 + 8 + 12}
    assert counted.headers["request-id"] == counted.headers["x-request-id"]
    unknown = await http.post(
        "/v1/messages/count_tokens",
        json={"model": "nope/nope", "messages": [{"role": "user", "content": "x"}]},
        headers=headers,
    )
    assert unknown.status_code == 404
    assert check_error(unknown, "messages")["type"] == "not_found_error"
    bad = await http.post(
        "/v1/messages/count_tokens",
        json={"model": CLAUDE, "messages": "x"},
        headers={"x-api-key": BAD_KEY} | ANTHROPIC_HEADERS,
    )
    assert bad.status_code == 401
    invalid = await http.post(
        "/v1/messages/count_tokens", json={"model": CLAUDE, "messages": "x"}, headers=headers
    )
    assert invalid.status_code == 400
    assert "messages" in check_error(invalid, "messages")["message"]

    listed = await http.get("/v1/models", headers=headers, params={"limit": 3})
    assert listed.status_code == 200
    page = listed.json()
    assert set(page) == {"data", "has_more", "first_id", "last_id"}
    assert len(page["data"]) == 3
    assert page["has_more"] is True
    fields = {"type", "id", "display_name", "created_at", "lifecycle", "max_input_tokens", "max_tokens"}
    assert all(set(m) == fields for m in page["data"])
    assert all(m["lifecycle"] == "active" for m in page["data"])
    assert page["data"][0]["created_at"].endswith("Z")
    rest = await http.get("/v1/models", headers=headers, params={"after_id": page["last_id"], "limit": 1000})
    ids = [m["id"] for m in page["data"] + rest.json()["data"]]
    assert ids == sorted(await harness.models())
    assert rest.json()["has_more"] is False
    one = await http.get(f"/v1/models/{CLAUDE}", headers=headers)
    assert one.json()["type"] == "model"
    assert one.json()["display_name"] == "Claude Sonnet 4.6"
    missing = await http.get("/v1/models/nope/nope", headers=headers)
    assert missing.status_code == 404
    assert check_error(missing, "messages")["type"] == "not_found_error"
    openai_shape = await http.get("/v1/models", headers={"authorization": f"Bearer {key}"})
    assert openai_shape.json()["object"] == "list"
    bad_limit = await http.get("/v1/models", headers=headers, params={"limit": 0})
    assert bad_limit.status_code == 400


async def test_rate_limit_headers_in_each_protocol(harness: Harness, http: httpx.AsyncClient) -> None:
    """From the admission's limiter state: OpenAI's `x-ratelimit-*` on OpenAI endpoints,
    Anthropic's `anthropic-ratelimit-*` (reset as RFC 3339) on /v1/messages; and a 429 past
    the limit, in each protocol, with retry-after."""
    from crossmodel.auth.v1 import auth_pb2

    account = await harness.new_account("it-protocol-errors-limits", credit_micros=5_000_000)
    created = await harness.auth.CreateKey(
        auth_pb2.CreateKeyRequest(
            account_id=account.account_id, name="limited", limits=auth_pb2.KeyLimits(rpm=3, tpm=1_000_000)
        ),
        timeout=10,
    )
    headers = {"x-api-key": created.secret} | ANTHROPIC_HEADERS
    chat = await http.post(PATHS["chat"], json=body_for("chat", "hi"), headers=headers)
    assert chat.status_code == 200, chat.text
    assert chat.headers["x-ratelimit-limit-requests"] == "3"
    assert chat.headers["x-ratelimit-remaining-requests"] == "2"
    assert chat.headers["x-ratelimit-limit-tokens"] == "1000000"
    assert chat.headers["x-ratelimit-reset-requests"].endswith("s")
    assert not any(h.startswith("anthropic-ratelimit") for h in chat.headers)
    msgs = await http.post(PATHS["messages"], json=body_for("messages", "hi", CLAUDE), headers=headers)
    assert msgs.status_code == 200, msgs.text
    assert msgs.headers["anthropic-ratelimit-requests-limit"] == "3"
    assert msgs.headers["anthropic-ratelimit-requests-remaining"] == "1"
    assert msgs.headers["anthropic-ratelimit-tokens-limit"] == "1000000"
    reset = msgs.headers["anthropic-ratelimit-requests-reset"]
    assert reset.endswith("Z")
    assert reset[10] == "T"
    assert not any(h.startswith("x-ratelimit") for h in msgs.headers)
    await http.post(PATHS["responses"], json=body_for("responses", "hi"), headers=headers)
    for protocol in PATHS:
        model = CLAUDE if protocol == "messages" else GPT
        refused = await http.post(PATHS[protocol], json=body_for(protocol, "hi", model), headers=headers)
        assert refused.status_code == 429
        error = check_error(refused, protocol)
        assert error["type"] == "rate_limit_error"
        assert int(refused.headers["retry-after"]) >= 1
        prefix = (
            "anthropic-ratelimit-requests-" if protocol == "messages" else "x-ratelimit-remaining-requests"
        )
        assert any(h.startswith(prefix) for h in refused.headers)
