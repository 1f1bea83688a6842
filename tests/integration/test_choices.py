"""Chat `n`: several choices from one request, through the whole system and the official
`openai` SDK. OpenAI-family upstreams answer them (the router relays their answer on its
pass-through path); the vendors whose APIs have no such parameter, or whose answer the gateway
builds through its one-choice canonical model, refuse with a 400 naming `n` rather than answer
one choice where several were asked.

The simulator answers `n` choices with the same reply, and n times the completion tokens
(crossmodel_simulator.script)."""

from __future__ import annotations

from collections import defaultdict

import openai
import pytest

ANSWERING = {
    "openai": "openai/gpt-4o-mini",
    "deepseek": "deepseek/deepseek-v4-pro",
    "compatible": "xai/grok-4",
}
REFUSING = {"anthropic": "anthropic/claude-sonnet-4.6", "google": "google/gemini-2.5-flash"}
PROMPT = "Name three colours"
REPLY = "You said: Name three colours"
N = 3


@pytest.mark.parametrize("vendor", list(ANSWERING))
async def test_several_choices(client: openai.AsyncOpenAI, vendor: str) -> None:
    r = await client.chat.completions.create(
        model=ANSWERING[vendor], messages=[{"role": "user", "content": PROMPT}], n=N
    )
    assert [c.index for c in r.choices] == list(range(N))
    assert [c.message.content for c in r.choices] == [REPLY] * N
    assert all(c.finish_reason == "stop" for c in r.choices)
    assert r.usage is not None
    assert r.usage.completion_tokens == N * len(REPLY.split())
    assert r.model == ANSWERING[vendor]


@pytest.mark.parametrize("vendor", list(ANSWERING))
async def test_several_choices_streamed(client: openai.AsyncOpenAI, vendor: str) -> None:
    stream = await client.chat.completions.create(
        model=ANSWERING[vendor],
        messages=[{"role": "user", "content": PROMPT}],
        n=N,
        stream=True,
        stream_options={"include_usage": True},
    )
    text: dict[int, str] = defaultdict(str)
    finish: dict[int, str] = {}
    usage = None
    async for chunk in stream:
        for c in chunk.choices:
            text[c.index] += c.delta.content or ""
            if c.finish_reason:
                finish[c.index] = c.finish_reason
        if chunk.usage is not None:
            usage = chunk.usage
    assert dict(text) == dict.fromkeys(range(N), REPLY)
    assert finish == dict.fromkeys(range(N), "stop")
    assert usage is not None
    assert usage.completion_tokens == N * len(REPLY.split())


@pytest.mark.parametrize("vendor", list(REFUSING))
async def test_vendors_without_them_refuse(client: openai.AsyncOpenAI, vendor: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model=REFUSING[vendor], messages=[{"role": "user", "content": PROMPT}], n=2
        )
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["param"] == "n"
    assert body["code"] == "unsupported_value"
    assert caught.value.request_id
    # One choice asked explicitly is what every vendor gives.
    r = await client.chat.completions.create(
        model=REFUSING[vendor], messages=[{"role": "user", "content": PROMPT}], n=1
    )
    assert [c.message.content for c in r.choices] == [REPLY]
