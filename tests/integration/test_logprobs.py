"""Token log probabilities through the whole system and the official `openai` SDK, for every
vendor that has them: OpenAI, DeepSeek, an OpenAI-compatible vendor from the catalog, and
Gemini (`responseLogprobs` / `logprobsResult` on its wire), in Chat Completions
(`logprobs`/`top_logprobs`) and Responses (`include: ["message.output_text.logprobs"]`,
`top_logprobs`), plain and streamed. Anthropic has none: asked of Claude they are a 400 naming
the field, never an answer without them.

The simulator gives reply token i the log probability -(i % 5 + 1) / 100, and as its `top`
alternatives the token itself, then "<token>~1", "<token>~2", … each 1.0 lower
(crossmodel_simulator.script.token_logprobs): the expectations below are computed, not copied."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from crossmodel_devstack.harness import AccountKey, Harness
from tests.integration import test_gemini_conformance, test_matrix

VENDORS = {
    "openai": "openai/gpt-4o-mini",
    "deepseek": "deepseek/deepseek-v4-pro",
    "compatible": "xai/grok-4",
    "google": "google/gemini-2.5-flash",
}
PROMPT = "Name three colours"
REPLY = ["You", " said:", " Name", " three", " colours"]  # the simulator's reply, one token each
TOP = 2


def expected(top: int = TOP) -> list[tuple[str, float, list[tuple[str, float]]]]:
    out = []
    for i, token in enumerate(REPLY):
        lp = -(i % 5 + 1) / 100
        alts = [(token, lp)] + [(f"{token}~{j}", lp - j) for j in range(1, top)]
        out.append((token, lp, alts[:top]))
    return out


def seen(entries: Any) -> list[tuple[str, float, list[tuple[str, float]]]]:
    """SDK objects (or dicts) of token log probabilities, as comparable tuples."""

    def get(e: Any, k: str) -> Any:
        return e[k] if isinstance(e, dict) else getattr(e, k)

    return [
        (
            get(e, "token"),
            pytest.approx(get(e, "logprob")),
            [(get(a, "token"), pytest.approx(get(a, "logprob"))) for a in get(e, "top_logprobs")],
        )
        for e in entries
    ]


@pytest.mark.parametrize("vendor", list(VENDORS))
async def test_chat_answer(client: openai.AsyncOpenAI, vendor: str) -> None:
    r = await client.chat.completions.create(
        model=VENDORS[vendor],
        messages=[{"role": "user", "content": PROMPT}],
        logprobs=True,
        top_logprobs=TOP,
    )
    lp = r.choices[0].logprobs
    assert lp is not None
    assert lp.content is not None
    assert seen(lp.content) == expected()
    # bytes are the token's UTF-8, whoever reported them
    assert [e.bytes for e in lp.content] == [list(t.encode()) for t in REPLY]
    assert "".join(e.token for e in lp.content) == r.choices[0].message.content


@pytest.mark.parametrize("vendor", list(VENDORS))
async def test_chat_stream(client: openai.AsyncOpenAI, vendor: str) -> None:
    stream = await client.chat.completions.create(
        model=VENDORS[vendor],
        messages=[{"role": "user", "content": PROMPT}],
        logprobs=True,
        top_logprobs=TOP,
        stream=True,
    )
    entries: list[Any] = []
    async for chunk in stream:
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        if choice.delta.content:
            assert choice.logprobs is not None
            assert choice.logprobs.content is not None
            assert "".join(e.token for e in choice.logprobs.content) == choice.delta.content
            entries += choice.logprobs.content
        else:
            assert choice.logprobs is None
    assert seen(entries) == expected()


@pytest.mark.parametrize("vendor", ["openai", "google"])
async def test_chat_not_asked_is_null(client: openai.AsyncOpenAI, vendor: str) -> None:
    r = await client.chat.completions.create(
        model=VENDORS[vendor], messages=[{"role": "user", "content": PROMPT}]
    )
    assert r.choices[0].logprobs is None


@pytest.mark.parametrize("vendor", list(VENDORS))
async def test_responses_answer(client: openai.AsyncOpenAI, vendor: str) -> None:
    r = await client.responses.create(
        model=VENDORS[vendor], input=PROMPT, include=["message.output_text.logprobs"], top_logprobs=TOP
    )
    assert r.top_logprobs == TOP
    texts = [
        c for item in r.output if item.type == "message" for c in item.content if c.type == "output_text"
    ]
    assert len(texts) == 1
    assert texts[0].logprobs is not None
    assert seen(texts[0].logprobs) == expected()
    assert [e.bytes for e in texts[0].logprobs] == [list(t.encode()) for t in REPLY]


@pytest.mark.parametrize("vendor", list(VENDORS))
async def test_responses_stream(client: openai.AsyncOpenAI, vendor: str) -> None:
    stream = await client.responses.create(
        model=VENDORS[vendor],
        input=PROMPT,
        include=["message.output_text.logprobs"],
        top_logprobs=TOP,
        stream=True,
    )
    deltas: list[Any] = []
    done: list[Any] = []
    final = None
    async for event in stream:
        if event.type == "response.output_text.delta":
            assert "".join(e.token for e in event.logprobs) == event.delta
            deltas += event.logprobs
        elif event.type == "response.output_text.done":
            done = list(event.logprobs or ())
        elif event.type == "response.completed":
            final = event.response
    assert seen(deltas) == expected()
    assert seen(done) == expected()
    assert final is not None
    text = final.output[-1].content[0]
    assert text.type == "output_text"
    assert seen(text.logprobs) == expected()


async def test_gemini_is_asked_in_its_own_fields(client: openai.AsyncOpenAI, harness: Harness) -> None:
    marker = test_matrix.tag()
    await client.chat.completions.create(
        model=VENDORS["google"],
        messages=[{"role": "user", "content": f"{PROMPT} {marker}"}],
        logprobs=True,
        top_logprobs=TOP,
    )
    async with httpx.AsyncClient(base_url=harness.stack.simulator_url, timeout=30) as sim:
        found = (await sim.get("/_sim/requests", params={"contains": marker})).json()
    assert len(found) == 1, found
    sent = found[0]["body"]
    test_gemini_conformance.conforms("GenerateContentRequest", sent, "chat with logprobs -> Gemini")
    assert sent["generationConfig"]["responseLogprobs"] is True
    assert sent["generationConfig"]["logprobs"] == TOP


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "hi"}], "logprobs": True},
            "logprobs",
        ),
        ("/v1/responses", {"input": "hi", "include": ["message.output_text.logprobs"]}, "include"),
        ("/v1/responses", {"input": "hi", "top_logprobs": 3}, "include"),
    ],
)
async def test_claude_has_none_and_says_so(
    harness: Harness, account: AccountKey, path: str, body: dict[str, Any], param: str
) -> None:
    async with httpx.AsyncClient(base_url=harness.edge_url, timeout=30) as http:
        r = await http.post(
            path,
            json={"model": "anthropic/claude-sonnet-4.6", **body},
            headers={"authorization": f"Bearer {account.api_key}"},
        )
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param
    assert err["code"] == "unsupported_parameter"
    assert "does not return log probabilities" in err["message"]
    assert r.headers["x-request-id"]
