"""Chat completions through edge -> auth -> router -> simulator, plain and streamed, with the
official OpenAI SDK and raw HTTP. Expected text and usage follow the simulator's documented rule
(crossmodel_simulator.script): the reply is "You said: " + the last user message, one token per
whitespace-separated word, prompt tokens = 3 + per message (4 + its words)."""

from __future__ import annotations

import json

import httpx
import openai

from crossmodel_devstack.harness import AccountKey, Harness


def expected(messages: list[dict[str, str]]) -> tuple[str, int, int]:
    """(reply, prompt_tokens, completion_tokens) for plain text messages."""
    prompt = " ".join(messages[-1]["content"].split())
    reply = "You said: " + prompt
    prompt_tokens = 3 + sum(4 + len(m["content"].split()) for m in messages)
    return reply, prompt_tokens, len(reply.split())


MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name three   colours of the rainbow"},
]


async def test_completion_through_the_openai_sdk(client: openai.AsyncOpenAI, model: str) -> None:
    raw = await client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES)  # type: ignore[arg-type]
    completion = raw.parse()
    reply, prompt_tokens, completion_tokens = expected(MESSAGES)
    assert raw.headers["x-request-id"]
    assert completion.choices[0].message.content == reply
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (
        prompt_tokens,
        completion_tokens,
    )
    assert completion.usage.total_tokens == prompt_tokens + completion_tokens


async def test_streamed_completion_through_the_openai_sdk(client: openai.AsyncOpenAI, model: str) -> None:
    reply, prompt_tokens, completion_tokens = expected(MESSAGES)
    raw = await client.chat.completions.with_raw_response.create(
        model=model,
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    assert raw.headers["x-request-id"]
    stream = raw.parse()
    text, usage, finish = [], None, None
    async for chunk in stream:
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
        if chunk.usage is not None:
            usage = chunk.usage
    assert "".join(text) == reply
    assert finish == "stop"
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (prompt_tokens, completion_tokens)


async def test_stream_framing_over_raw_http(harness: Harness, account: AccountKey, model: str) -> None:
    body = {"model": model, "messages": MESSAGES, "stream": True}
    async with (
        httpx.AsyncClient(base_url=harness.edge_url, timeout=30) as http,
        http.stream(
            "POST", "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {account.api_key}"}
        ) as resp,
    ):
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["x-request-id"]
        events = [line[len("data: ") :] async for line in resp.aiter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"].get("role") == "assistant"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    text = "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"])
    assert text == expected(MESSAGES)[0]
    # Usage only when the client asked for it (stream_options.include_usage), as OpenAI does.
    assert all(c.get("usage") is None for c in chunks)


async def test_x_api_key_authenticates_too(harness: Harness, account: AccountKey, model: str) -> None:
    async with httpx.AsyncClient(base_url=harness.edge_url, timeout=30) as http:
        resp = await http.post(
            "/v1/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
            headers={"x-api-key": account.api_key},
        )
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"] == "You said: hi"


async def test_models_list_has_the_catalog(harness: Harness, client: openai.AsyncOpenAI, model: str) -> None:
    listed = {m.id async for m in client.models.list()}
    assert listed == set(await harness.models())
    assert model in listed
