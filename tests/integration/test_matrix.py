"""Every ingress × every vendor × every feature, through the official SDKs against the whole
running system: `openai` (Chat Completions, Responses) and `anthropic` (Messages) in front of
one model of each vendor family of the catalog. The SDKs' own parsers must accept every answer.

Expectations follow the simulator's documented rule (docs/protocols.md, "Provider simulator"),
the same for every vendor's wire format: the reply is "You said: " + the last user text without
its markers; one token per whitespace-separated word; prompt = 3 + per message (system
included) 4 + its words (+85 per image); output = reply words + thinking words + each tool
call's name and compact-JSON argument words. `[sim:cached=N]` reports N cached prompt tokens,
`[sim:thinking]` makes the model reason "Thinking about: " + prompt, `[sim:tool=NAME:{json}]`
makes it call NAME with those arguments (repeatable: parallel calls).

One table (FEATURES × VENDORS) drives the parametrization; one account and one pair of SDK
clients serve the module.

Then the same vendors on the wire, raw HTTP, for what SDKs smooth over: stream framing per
protocol (OpenAI chunks: role first, `[DONE]` last, the usage chunk with empty `choices` only
when `stream_options.include_usage` was asked; Anthropic's event sequence: `message_start` with
complete usage, blocks framed start/delta/stop, `ping`, `message_delta` with cumulative usage,
`message_stop`; Responses events numbered 0, 1, 2, … ending in `response.completed`,
`.incomplete` or `.failed`), the end-user id of each protocol reaching each vendor in its own
field and the request log, and usage requested from every upstream whatever the client asked.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import pytest

from crossmodel_devstack.harness import Harness, eventually

# One catalog model per vendor family; "compatible" is served by the generic OpenAI-compatible
# adapter from catalog configuration alone.
VENDORS: dict[str, str] = {
    "openai": "openai/gpt-4.1",
    "anthropic": "anthropic/claude-sonnet-4.6",
    "google": "google/gemini-2.5-flash",
    "deepseek": "deepseek/deepseek-v4-pro",
    "compatible": "xai/grok-4",
}
# Models of the table without `vision` in the catalog: images sent to them are a 400.
NO_VISION = {"deepseek/deepseek-v4-pro"}
# OpenAI takes reasoning settings on its reasoning models only (400 on gpt-4.1).
REASONING_MODELS = {**VENDORS, "openai": "openai/o4-mini"}
# Vendors whose chat API shows reasoning text; OpenAI's Chat Completions only counts it.
SHOWS_REASONING = {"anthropic", "google", "deepseek", "compatible"}

_MARKER = re.compile(r"\[sim:[a-z_]+(?:=[^\]]*)?\]")
IMAGE_TOKENS = 85
# A 1x1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
WEATHER_TOOLS = [
    {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
    {
        "name": "get_time",
        "description": "Current time in a time zone",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
    },
]
CALLS = [("get_weather", {"city": "Paris, FR"}), ("get_time", {"tz": "Europe/Paris"})]
TOOL_MARKERS = " ".join(f"[sim:tool={n}:{json.dumps(a, separators=(',', ':'))}]" for n, a in CALLS)


def words(text: str) -> int:
    return len(text.split())


def clean(prompt: str) -> str:
    return " ".join(_MARKER.sub(" ", prompt).split())


def reply_to(prompt: str) -> str:
    return "You said: " + clean(prompt)


def thinking_about(prompt: str) -> str:
    return "Thinking about: " + clean(prompt)


def prompt_tokens(*texts: str, images: int = 0) -> int:
    """3 + per message 4 + its words, + 85 per image."""
    return 3 + sum(4 + words(t) for t in texts) + IMAGE_TOKENS * images


def call_tokens() -> int:
    return sum(words(n) + words(json.dumps(a, separators=(",", ":"))) for n, a in CALLS)


def tag() -> str:
    """A word no other request sends, to find this request among those the simulator saw."""
    return "t" + secrets.token_hex(5)


@dataclass
class Ctx:
    harness: Harness
    oa: openai.AsyncOpenAI
    an: anthropic.AsyncAnthropic
    http: httpx.AsyncClient  # the simulator

    async def upstream(self, marker: str) -> dict[str, Any]:
        """The one request the gateway sent upstream whose body carries `marker`."""
        resp = await self.http.get("/_sim/requests", params={"contains": marker})
        found = resp.json()
        assert len(found) == 1, found
        sent: dict[str, Any] = found[0]
        return sent


@pytest.fixture(scope="module")
async def ctx(harness: Harness) -> AsyncIterator[Ctx]:
    account = await harness.new_account("it-matrix", credit_micros=200_000_000)
    async with (
        openai.AsyncOpenAI(
            base_url=f"{harness.edge_url}/v1", api_key=account.api_key, max_retries=0, timeout=30
        ) as oa,
        anthropic.AsyncAnthropic(
            base_url=harness.edge_url, api_key=account.api_key, max_retries=0, timeout=30
        ) as an,
        httpx.AsyncClient(base_url=harness.stack.simulator_url, timeout=10) as http,
    ):
        yield Ctx(harness, oa, an, http)


def chat_tools() -> list[Any]:
    return [{"type": "function", "function": t} for t in WEATHER_TOOLS]


def anthropic_tools() -> list[Any]:
    return [
        {"name": t["name"], "description": t["description"], "input_schema": t["parameters"]}
        for t in WEATHER_TOOLS
    ]


def responses_tools() -> list[Any]:
    return [{"type": "function", **t} for t in WEATHER_TOOLS]


# ---------------------------------------------------------------------------------------- chat

SYSTEM = "You are terse."


async def chat_plain(c: Ctx, vendor: str, model: str) -> None:
    prompt = f"Name three colours of the rainbow {tag()} [sim:cached=2]"
    raw = await c.oa.chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
        temperature=0.2,
    )
    assert raw.headers["x-request-id"]
    r = raw.parse()
    assert r.object == "chat.completion"
    assert r.model == model
    choice = r.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == reply_to(prompt)
    assert choice.finish_reason == "stop"
    assert r.usage is not None
    assert r.usage.prompt_tokens == prompt_tokens(SYSTEM, prompt)
    assert r.usage.completion_tokens == words(reply_to(prompt))
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.usage.prompt_tokens_details is not None
    assert r.usage.prompt_tokens_details.cached_tokens == 2


async def chat_stream(c: Ctx, vendor: str, model: str) -> None:
    prompt = f"Stream me a short answer please {tag()}"
    stream = await c.oa.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [ch async for ch in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({ch.id for ch in chunks}) == 1
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == reply_to(prompt)
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finishes == ["stop"]
    # The usage chunk comes last, with empty choices, and only that one carries usage.
    assert chunks[-1].choices == []
    assert all(ch.usage is None for ch in chunks[:-1])
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        prompt_tokens(SYSTEM, prompt),
        words(reply_to(prompt)),
    )


async def chat_tools_call(c: Ctx, vendor: str, model: str) -> None:
    prompt = f"What is the weather and time in Paris {tag()} {TOOL_MARKERS}"
    messages: list[Any] = [{"role": "user", "content": prompt}]
    r = await c.oa.chat.completions.create(
        model=model, messages=messages, tools=chat_tools(), tool_choice="auto"
    )
    msg = r.choices[0].message
    assert r.choices[0].finish_reason == "tool_calls"
    assert msg.tool_calls is not None
    got = [(tc.function.name, json.loads(tc.function.arguments)) for tc in msg.tool_calls]  # type: ignore[union-attr]
    assert got == CALLS
    assert len({tc.id for tc in msg.tool_calls}) == 2
    assert all(tc.id for tc in msg.tool_calls)
    assert r.usage is not None
    assert r.usage.completion_tokens == words(reply_to(prompt)) + call_tokens()

    # Streamed: OpenAI deltas keyed by index, id/type/name on each call's first delta, then the
    # argument fragments, which concatenate to the exact JSON text.
    stream = await c.oa.chat.completions.create(
        model=model,
        messages=messages,
        tools=chat_tools(),
        stream=True,
        stream_options={"include_usage": True},
    )
    names: dict[int, str] = {}
    ids: dict[int, str] = {}
    args: dict[int, str] = {}
    fragments = 0
    finish = None
    async for ch in stream:
        for choice in ch.choices:
            finish = choice.finish_reason or finish
            for tc in choice.delta.tool_calls or ():
                if tc.id:
                    assert tc.index not in ids, "a call's id comes once, on its first delta"
                    ids[tc.index] = tc.id
                    assert tc.type == "function"
                if tc.function is not None:
                    if tc.function.name:
                        names[tc.index] = tc.function.name
                    if tc.function.arguments:
                        fragments += 1
                        args[tc.index] = args.get(tc.index, "") + tc.function.arguments
    assert finish == "tool_calls"
    assert sorted(ids) == [0, 1]
    assert [(names[i], json.loads(args[i])) for i in sorted(args)] == CALLS
    assert fragments >= 2

    # The tool results go back on the next turn.
    assert msg.tool_calls is not None
    follow = f"Thanks {tag()}"
    messages += [
        msg.model_dump(exclude_none=True),
        *({"role": "tool", "tool_call_id": tc.id, "content": "sunny, 21C"} for tc in msg.tool_calls),
        {"role": "user", "content": follow},
    ]
    r2 = await c.oa.chat.completions.create(model=model, messages=messages, tools=chat_tools())
    assert r2.choices[0].message.content == reply_to(follow)
    assert r2.choices[0].finish_reason == "stop"


async def chat_images(c: Ctx, vendor: str, model: str) -> None:
    b64 = "data:image/png;base64," + base64.b64encode(PNG).decode()
    for url in (b64, "https://example.com/cat.png"):
        text = f"Describe this image {tag()}"
        messages: Any = [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": text},
                    {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
                ],
            }
        ]
        if model in NO_VISION:
            # Refused before anything is sent, naming the image (DeepSeek would answer 400 too).
            with pytest.raises(openai.BadRequestError) as err:
                await c.oa.chat.completions.create(model=model, messages=messages)
            assert err.value.body["param"] == "messages[0].content[1]"  # type: ignore[index]
            assert err.value.body["code"] == "unsupported_value"  # type: ignore[index]
            continue
        r = await c.oa.chat.completions.create(model=model, messages=messages)
        assert r.choices[0].message.content == reply_to(text)
        assert r.usage is not None
        assert r.usage.prompt_tokens == prompt_tokens(text, images=1)


async def chat_reasoning(c: Ctx, vendor: str, model: str) -> None:
    model = REASONING_MODELS[vendor]
    prompt = f"Think before answering {tag()} [sim:thinking]"
    messages: list[Any] = [{"role": "user", "content": prompt}]
    thinking = thinking_about(prompt)
    r = await c.oa.chat.completions.create(model=model, messages=messages, reasoning_effort="low")
    msg = r.choices[0].message
    assert msg.content == reply_to(prompt), "reasoning never lands in the text"
    shown = (msg.model_extra or {}).get("reasoning_content")
    assert shown == (thinking if vendor in SHOWS_REASONING else None)
    assert r.usage is not None
    assert r.usage.completion_tokens_details is not None
    assert r.usage.completion_tokens_details.reasoning_tokens == words(thinking)
    assert r.usage.completion_tokens == words(reply_to(prompt)) + words(thinking)

    stream = await c.oa.chat.completions.create(
        model=model,
        messages=messages,
        reasoning_effort="low",
        stream=True,
        stream_options={"include_usage": True},
    )
    text, reasoning = "", ""
    usage = None
    async for ch in stream:
        usage = ch.usage or usage
        for choice in ch.choices:
            text += choice.delta.content or ""
            reasoning += (choice.delta.model_extra or {}).get("reasoning_content") or ""
    assert text == reply_to(prompt)
    assert reasoning == (thinking if vendor in SHOWS_REASONING else "")
    assert usage is not None
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == words(thinking)


async def chat_reasoning_tools(c: Ctx, vendor: str, model: str) -> None:
    """Reasoning with a forced tool call and OpenAI's sampling range, then the tool loop: a chat
    client has no field for a thinking signature, so Claude is asked without thinking there.
    OpenAI's reasoning models take no sampling settings (a chat client's reach OpenAI as sent),
    so o4-mini is asked without them; DeepSeek gets thinking off for the forced call."""
    model = REASONING_MODELS[vendor]
    marker = tag()
    prompt = f"Weather and time in Paris {marker} [sim:thinking] {TOOL_MARKERS}"
    messages: list[Any] = [{"role": "user", "content": prompt}]
    sampling: dict[str, Any] = {} if vendor == "openai" else {"temperature": 1.5, "top_p": 0.9}
    r = await c.oa.chat.completions.create(
        model=model,
        messages=messages,
        tools=chat_tools(),
        tool_choice="required",
        reasoning_effort="low",
        **sampling,
    )
    msg = r.choices[0].message
    assert msg.tool_calls is not None
    assert [(tc.function.name, json.loads(tc.function.arguments)) for tc in msg.tool_calls] == CALLS  # type: ignore[union-attr]
    if vendor == "anthropic":
        sent = (await c.upstream(marker))["body"]
        assert (sent["tool_choice"], sent.get("thinking")) == ({"type": "any"}, None)
        assert (sent["temperature"], sent.get("top_p")) == (1, None)
    if vendor == "deepseek":
        assert (await c.upstream(marker))["body"]["thinking"] == {"type": "disabled"}

    follow = f"Thanks {tag()}"
    messages += [
        msg.model_dump(exclude_none=True),
        *({"role": "tool", "tool_call_id": tc.id, "content": "sunny"} for tc in msg.tool_calls),
        {"role": "user", "content": follow},
    ]
    r2 = await c.oa.chat.completions.create(
        model=model, messages=messages, tools=chat_tools(), reasoning_effort="low"
    )
    assert r2.choices[0].message.content == reply_to(follow)
    if vendor == "anthropic":
        assert "thinking" not in (await c.upstream(follow))["body"]


async def chat_json_mode(c: Ctx, vendor: str, model: str) -> None:
    prompt = f"Answer in JSON {tag()}"
    r = await c.oa.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": "Reply with a JSON object."},
            {"role": "user", "content": prompt},
        ],
        response_format={"type": "json_object"},
        seed=7,
    )
    assert r.choices[0].message.content == reply_to(prompt)
    schema: Any = {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {"a": {"type": "string"}},
                "required": ["a"],
                "additionalProperties": False,
            },
        },
    }
    marker = tag()
    if vendor == "deepseek":
        # No structured outputs there (DeepSeek takes text and json_object only): refused, naming
        # the field, rather than an answer not held to the schema.
        with pytest.raises(openai.BadRequestError) as caught:
            await c.oa.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": f"Schema {marker}"}],
                response_format=schema,
            )
        assert caught.value.param == "response_format.type"
        assert caught.value.code == "unsupported_value"
        return
    r = await c.oa.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": f"Schema {marker}"}],
        response_format=schema,
    )
    assert r.choices[0].message.content == reply_to(f"Schema {marker}")
    sent = (await c.upstream(marker))["body"]
    # Each vendor gets the schema in its own field.
    if vendor == "anthropic":
        assert sent["output_config"]["format"]["schema"] == schema["json_schema"]["schema"]
    elif vendor == "google":
        assert sent["generationConfig"]["responseMimeType"] == "application/json"
        assert sent["generationConfig"]["responseJsonSchema"] == schema["json_schema"]["schema"]
    else:
        assert sent["response_format"]["type"] == "json_schema"


async def chat_limits(c: Ctx, vendor: str, model: str) -> None:
    prompt = f"one two three four five six {tag()}"
    r = await c.oa.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], max_completion_tokens=3
    )
    assert r.choices[0].message.content == " ".join(reply_to(prompt).split()[:3])
    assert r.choices[0].finish_reason == "length"
    stop_prompt = f"alpha beta gamma delta {tag()}"
    r = await c.oa.chat.completions.create(
        model=model, messages=[{"role": "user", "content": stop_prompt}], stop=["gamma"]
    )
    assert r.choices[0].message.content == "You said: alpha beta"
    assert r.choices[0].finish_reason == "stop"


# ----------------------------------------------------------------------------------- responses


async def responses_plain(c: Ctx, vendor: str, model: str) -> None:
    prompt = f"Tell me something {tag()} [sim:cached=2]"
    raw = await c.oa.responses.with_raw_response.create(model=model, instructions=SYSTEM, input=prompt)
    assert raw.headers["x-request-id"]
    r = raw.parse()
    assert r.object == "response"
    assert r.status == "completed"
    assert r.model == model
    assert r.output_text == reply_to(prompt)
    assert r.usage is not None
    assert r.usage.input_tokens == prompt_tokens(SYSTEM, prompt)
    assert r.usage.output_tokens == words(reply_to(prompt))
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert r.usage.input_tokens_details.cached_tokens == 2


async def responses_stream(c: Ctx, vendor: str, model: str) -> None:
    prompt = f"Stream a response please {tag()}"
    async with c.oa.responses.stream(model=model, instructions=SYSTEM, input=prompt) as stream:
        events = [ev async for ev in stream]
        final = await stream.get_final_response()
    seqs = [ev.sequence_number for ev in events]
    assert seqs == sorted(set(seqs)), "sequence_number strictly increases"
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    deltas = "".join(ev.delta for ev in events if ev.type == "response.output_text.delta")
    assert deltas == reply_to(prompt)
    assert final.output_text == reply_to(prompt)
    assert final.usage is not None
    assert final.usage.input_tokens == prompt_tokens(SYSTEM, prompt)
    assert final.usage.output_tokens == words(reply_to(prompt))


async def responses_tools_call(c: Ctx, vendor: str, model: str) -> None:
    prompt = f"Weather and time in Paris {tag()} {TOOL_MARKERS}"
    r = await c.oa.responses.create(model=model, input=prompt, tools=responses_tools())
    calls = [o for o in r.output if o.type == "function_call"]
    assert [(o.name, json.loads(o.arguments)) for o in calls] == CALLS
    assert all(o.call_id for o in calls)
    assert r.output_text == reply_to(prompt)
    assert r.usage is not None
    assert r.usage.output_tokens == words(reply_to(prompt)) + call_tokens()

    stream = await c.oa.responses.create(model=model, input=prompt, tools=responses_tools(), stream=True)
    args: dict[str, str] = {}
    done: dict[str, str] = {}
    last = None
    async for ev in stream:
        last = ev
        if ev.type == "response.function_call_arguments.delta":
            args[ev.item_id] = args.get(ev.item_id, "") + ev.delta
        elif ev.type == "response.function_call_arguments.done":
            done[ev.item_id] = ev.arguments
    assert last is not None
    assert last.type == "response.completed"
    assert args == done
    assert [json.loads(a) for a in args.values()] == [a for _, a in CALLS]

    # The results go back as function_call_output items.
    follow = f"Thanks {tag()}"
    items: list[Any] = [
        {"role": "user", "content": prompt},
        *(
            {"type": "function_call", "call_id": o.call_id, "name": o.name, "arguments": o.arguments}
            for o in calls
        ),
        *({"type": "function_call_output", "call_id": o.call_id, "output": "sunny"} for o in calls),
        {"role": "user", "content": follow},
    ]
    r2 = await c.oa.responses.create(model=model, input=items, tools=responses_tools())
    assert r2.output_text == reply_to(follow)


async def responses_reasoning_tools(c: Ctx, vendor: str, model: str) -> None:
    """A stateless tool loop with reasoning: the output goes back as input, and each vendor gets
    its own reasoning state back from `encrypted_content` (Claude its signed thinking)."""
    model = REASONING_MODELS[vendor]
    prompt = f"Weather and time in Paris {tag()} [sim:thinking] {TOOL_MARKERS}"
    kw: dict[str, Any] = {
        "tools": responses_tools(),
        "reasoning": {"effort": "low"},
        "include": ["reasoning.encrypted_content"],
    }
    r = await c.oa.responses.create(model=model, input=prompt, **kw)
    calls = [o for o in r.output if o.type == "function_call"]
    assert [(o.name, json.loads(o.arguments)) for o in calls] == CALLS
    states = [o.encrypted_content or "" for o in r.output if o.type == "reasoning"]
    follow = f"Thanks {tag()}"
    items: list[Any] = [
        {"role": "user", "content": prompt},
        *(o.model_dump(exclude_none=True) for o in r.output),
        *({"type": "function_call_output", "call_id": o.call_id, "output": "sunny"} for o in calls),
        {"role": "user", "content": follow},
    ]
    r2 = await c.oa.responses.create(model=model, input=items, **kw)
    assert r2.output_text == reply_to(follow)
    sent = (await c.upstream(follow))["body"]
    if vendor == "anthropic":
        assert states[0].startswith("anthropic:signature:")
        assert sent["thinking"]["type"] == "enabled"
        assert sent["messages"][1]["content"][0] == {
            "type": "thinking",
            "thinking": thinking_about(prompt),
            "signature": states[0].removeprefix("anthropic:signature:"),
        }
    elif vendor == "google":
        signed = [s.removeprefix("gemini:signature:") for s in states if s.startswith("gemini:signature:")]
        assert len(signed) == 1
        parts = sent["contents"][1]["parts"]
        assert [p.get("thoughtSignature") for p in parts if "functionCall" in p] == [signed[0], None]
    else:
        assert not any(s.startswith(("anthropic:", "gemini:")) for s in states)


async def responses_limits(c: Ctx, vendor: str, model: str) -> None:
    prompt = f"[sim:words=40] {tag()}"
    r = await c.oa.responses.create(model=model, input=prompt, max_output_tokens=16)
    assert r.status == "incomplete"
    assert r.incomplete_details is not None
    assert r.incomplete_details.reason == "max_output_tokens"
    assert r.output_text == " ".join(f"w{i}" for i in range(1, 17))


# ------------------------------------------------------------------------------------ messages


async def messages_plain(c: Ctx, vendor: str, model: str) -> None:
    prompt = f"Name a colour {tag()} [sim:cached=2]"
    raw = await c.an.messages.with_raw_response.create(
        model=model, max_tokens=200, system=SYSTEM, messages=[{"role": "user", "content": prompt}]
    )
    assert raw.headers["request-id"] == raw.headers["x-request-id"]
    m = await raw.parse()
    assert m.type == "message"
    assert m.role == "assistant"
    assert m.model == model
    assert m.id.startswith("msg_")
    assert [b.type for b in m.content] == ["text"]
    assert m.content[0].text == reply_to(prompt)  # type: ignore[union-attr]
    assert m.stop_reason == "end_turn"
    # Anthropic's usage: input_tokens is the uncached part of the prompt.
    assert m.usage.cache_read_input_tokens == 2
    assert m.usage.input_tokens == prompt_tokens(SYSTEM, prompt) - 2
    assert m.usage.output_tokens == words(reply_to(prompt))


async def messages_stream(c: Ctx, vendor: str, model: str) -> None:
    prompt = f"Stream a message please {tag()}"
    async with c.an.messages.stream(
        model=model, max_tokens=200, system=SYSTEM, messages=[{"role": "user", "content": prompt}]
    ) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert text == reply_to(prompt)
    assert final.content[0].text == reply_to(prompt)  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == prompt_tokens(SYSTEM, prompt)
    assert final.usage.output_tokens == words(reply_to(prompt))


async def messages_tools_call(c: Ctx, vendor: str, model: str) -> None:
    prompt = f"Weather and time in Paris {tag()} {TOOL_MARKERS}"
    messages: list[Any] = [{"role": "user", "content": prompt}]
    partials: dict[int, str] = {}
    async with c.an.messages.stream(
        model=model, max_tokens=500, messages=messages, tools=anthropic_tools(), tool_choice={"type": "auto"}
    ) as stream:
        async for ev in stream:
            if ev.type == "content_block_delta" and ev.delta.type == "input_json_delta":
                partials[ev.index] = partials.get(ev.index, "") + ev.delta.partial_json
        final = await stream.get_final_message()
    assert final.stop_reason == "tool_use"
    uses = [b for b in final.content if b.type == "tool_use"]
    assert [(b.name, b.input) for b in uses] == CALLS
    assert all(b.id for b in uses)
    assert [json.loads(p) for p in partials.values()] == [a for _, a in CALLS]
    assert final.usage.output_tokens == words(reply_to(prompt)) + call_tokens()

    m = await c.an.messages.create(model=model, max_tokens=500, messages=messages, tools=anthropic_tools())
    uses = [b for b in m.content if b.type == "tool_use"]
    assert [(b.name, b.input) for b in uses] == CALLS
    follow = f"Thanks {tag()}"
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]},
        {
            "role": "user",
            "content": [
                *({"type": "tool_result", "tool_use_id": b.id, "content": "sunny"} for b in uses),
                {"type": "text", "text": follow},
            ],
        },
    ]
    r2 = await c.an.messages.create(model=model, max_tokens=500, messages=messages, tools=anthropic_tools())
    assert r2.content[-1].text == reply_to(follow)  # type: ignore[union-attr]
    assert r2.stop_reason == "end_turn"


async def messages_thinking(c: Ctx, vendor: str, model: str) -> None:
    model = REASONING_MODELS[vendor]
    prompt = f"Think it over {tag()} [sim:thinking]"
    thinking = thinking_about(prompt)
    messages: list[Any] = [{"role": "user", "content": prompt}]
    budget: Any = {"type": "enabled", "budget_tokens": 1024}
    m = await c.an.messages.create(model=model, max_tokens=2048, thinking=budget, messages=messages)
    blocks = [b for b in m.content if b.type == "thinking"]
    assert [b.type for b in m.content] == ["thinking"] * len(blocks) + ["text"]
    assert m.content[-1].text == reply_to(prompt), "thinking never lands in the text"  # type: ignore[union-attr]
    # OpenAI's Chat Completions keeps reasoning hidden (it is only counted); Gemini may add an
    # empty block that carries its thought signature.
    assert "".join(b.thinking for b in blocks) == ("" if vendor == "openai" else thinking)
    assert m.usage.output_tokens == words(thinking) + words(reply_to(prompt))
    if vendor == "anthropic":
        assert [bool(b.signature) for b in blocks] == [True]

    async with c.an.messages.stream(
        model=model, max_tokens=2048, thinking=budget, messages=messages
    ) as stream:
        streamed = "".join([ev.thinking async for ev in stream if ev.type == "thinking"])
        final = await stream.get_final_message()
    assert streamed == ("" if vendor == "openai" else thinking)
    assert [b.signature for b in final.content if b.type == "thinking"] == [b.signature for b in blocks]
    assert final.usage.output_tokens == m.usage.output_tokens

    # The next turn carries the thinking blocks back; Anthropic gets its own signature back.
    follow = f"And then {tag()}"
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]},
        {"role": "user", "content": follow},
    ]
    r2 = await c.an.messages.create(model=model, max_tokens=2048, thinking=budget, messages=messages)
    assert r2.content[-1].text == reply_to(follow)  # type: ignore[union-attr]
    if vendor == "anthropic":
        sent = (await c.upstream(follow))["body"]
        back = sent["messages"][1]["content"][0]
        assert back == {"type": "thinking", "thinking": thinking, "signature": blocks[0].signature}


async def messages_limits(c: Ctx, vendor: str, model: str) -> None:
    prompt = f"one two three four five {tag()}"
    m = await c.an.messages.create(model=model, max_tokens=3, messages=[{"role": "user", "content": prompt}])
    assert m.content[0].text == " ".join(reply_to(prompt).split()[:3])  # type: ignore[union-attr]
    assert m.stop_reason == "max_tokens"
    stop_prompt = f"alpha beta gamma delta {tag()}"
    m = await c.an.messages.create(
        model=model,
        max_tokens=100,
        stop_sequences=["gamma"],
        messages=[{"role": "user", "content": stop_prompt}],
    )
    assert m.content[0].text == "You said: alpha beta"  # type: ignore[union-attr]
    if vendor == "anthropic":
        assert (m.stop_reason, m.stop_sequence) == ("stop_sequence", "gamma")
    else:
        # Other vendors end a stop-sequence cut like a natural end and do not say which
        # sequence matched, so no gateway can know it.
        assert (m.stop_reason, m.stop_sequence) == ("end_turn", None)


# ------------------------------------------------------------------------------------- the table

Feature = Callable[[Ctx, str, str], Awaitable[None]]
FEATURES: dict[str, Feature] = {
    "chat-plain": chat_plain,
    "chat-stream": chat_stream,
    "chat-tools": chat_tools_call,
    "chat-images": chat_images,
    "chat-reasoning": chat_reasoning,
    "chat-reasoning-tools": chat_reasoning_tools,
    "chat-json": chat_json_mode,
    "chat-limits": chat_limits,
    "responses-plain": responses_plain,
    "responses-stream": responses_stream,
    "responses-tools": responses_tools_call,
    "responses-reasoning-tools": responses_reasoning_tools,
    "responses-limits": responses_limits,
    "messages-plain": messages_plain,
    "messages-stream": messages_stream,
    "messages-tools": messages_tools_call,
    "messages-thinking": messages_thinking,
    "messages-limits": messages_limits,
}


@pytest.mark.parametrize("vendor", list(VENDORS))
@pytest.mark.parametrize("feature", list(FEATURES))
async def test_matrix(ctx: Ctx, feature: str, vendor: str) -> None:
    await FEATURES[feature](ctx, vendor, VENDORS[vendor])


# ============================================================================ on the wire

ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}


@pytest.fixture(scope="module")
async def key(harness: Harness) -> str:
    return (await harness.new_account("it-matrix-wire", credit_micros=100_000_000)).api_key


@pytest.fixture(scope="module")
async def http(harness: Harness, key: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=harness.edge_url, timeout=30, headers={"authorization": f"Bearer {key}"}
    ) as c:
        yield c


async def sse(
    http: httpx.AsyncClient, path: str, body: dict[str, Any], **kw: Any
) -> tuple[httpx.Response, list[tuple[str, str]]]:
    """(response, [(event name, data)]) of a streamed request."""
    events: list[tuple[str, str]] = []
    async with http.stream("POST", path, json=body, **kw) as resp:
        name, data = "", []
        async for line in resp.aiter_lines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif line == "" and data:
                events.append((name, "\n".join(data)))
                name, data = "", []
        if data:
            events.append((name, "\n".join(data)))
    return resp, events


def user_turn(prompt: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]


# ------------------------------------------------------------------------------ OpenAI chat


@pytest.mark.parametrize("vendor", list(VENDORS))
@pytest.mark.parametrize("include_usage", [True, False])
async def test_chat_stream_framing(http: httpx.AsyncClient, vendor: str, include_usage: bool) -> None:
    prompt = f"frame me please {tag()} [sim:thinking]"
    body: dict[str, Any] = {"model": VENDORS[vendor], "messages": user_turn(prompt), "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    resp, events = await sse(http, "/v1/chat/completions", body)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert resp.headers["x-request-id"]
    assert all(name == "" for name, _ in events), "chat chunks are unnamed data lines"
    assert events[-1][1] == "[DONE]"
    chunks = [json.loads(d) for _, d in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all(c["model"] == VENDORS[vendor] for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    text = "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"])
    assert text == reply_to(prompt)
    finishes = [ch["finish_reason"] for c in chunks for ch in c["choices"] if ch.get("finish_reason")]
    assert finishes == ["stop"]
    empty = [c for c in chunks if c["choices"] == []]
    if include_usage:
        assert empty == [chunks[-1]]
        usage = chunks[-1]["usage"]
        assert usage["prompt_tokens"] == prompt_tokens(SYSTEM, prompt)
        assert usage["completion_tokens"] == words(reply_to(prompt)) + words(thinking_about(prompt))
        assert usage["completion_tokens_details"]["reasoning_tokens"] == words(thinking_about(prompt))
        assert all(c.get("usage") is None for c in chunks[:-1])
    else:
        assert empty == []
        assert all(c.get("usage") is None for c in chunks)


# ------------------------------------------------------------------------- Anthropic Messages


@pytest.mark.parametrize("vendor", list(VENDORS))
async def test_anthropic_event_sequence(http: httpx.AsyncClient, vendor: str) -> None:
    prompt = f'frame me please {tag()} [sim:tool=get_time:{{"tz":"UTC"}}] [sim:cached=2]'
    body = {
        "model": VENDORS[vendor],
        "max_tokens": 300,
        "system": SYSTEM,
        "messages": [{"role": "user", "content": prompt}],
        "tools": [{"name": "get_time", "input_schema": {"type": "object"}}],
        "stream": True,
    }
    resp, events = await sse(http, "/v1/messages", body, headers=ANTHROPIC_HEADERS)
    assert resp.status_code == 200
    assert resp.headers["request-id"] == resp.headers["x-request-id"]
    names = [n for n, _ in events]
    datas = [json.loads(d) for _, d in events]
    assert all(d["type"] == n for n, d in zip(names, datas, strict=True)), "event name = data type"
    assert names[0] == "message_start"
    assert names[-2:] == ["message_delta", "message_stop"]
    assert "ping" in names
    start = datas[0]["message"]
    assert start["content"] == []
    assert start["role"] == "assistant"
    assert start["stop_reason"] is None
    assert set(start["usage"]) >= {
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
    }
    # Blocks: each started, given deltas and stopped before the next one starts.
    blocks: list[dict[str, Any]] = []
    open_index: int | None = None
    for n, d in zip(names, datas, strict=True):
        if n == "content_block_start":
            assert open_index is None
            assert d["index"] == len(blocks)
            open_index = d["index"]
            blocks.append(dict(d["content_block"], _json=""))
        elif n == "content_block_delta":
            assert d["index"] == open_index
            delta = d["delta"]
            if delta["type"] == "text_delta":
                blocks[-1]["text"] += delta["text"]
            elif delta["type"] == "input_json_delta":
                blocks[-1]["_json"] += delta["partial_json"]
        elif n == "content_block_stop":
            assert d["index"] == open_index
            open_index = None
    assert open_index is None
    assert [b["type"] for b in blocks] == ["text", "tool_use"]
    assert blocks[0]["text"] == reply_to(prompt)
    assert json.loads(blocks[1]["_json"]) == {"tz": "UTC"}
    final = datas[-2]
    assert final["delta"]["stop_reason"] == "tool_use"
    tool_words = words("get_time") + words('{"tz":"UTC"}')
    # Cumulative: the whole answer's output tokens, and the prompt split Anthropic's way.
    assert final["usage"]["output_tokens"] == words(reply_to(prompt)) + tool_words
    assert final["usage"]["cache_read_input_tokens"] == 2
    assert final["usage"]["input_tokens"] == prompt_tokens(SYSTEM, prompt) - 2


# ---------------------------------------------------------------------------------- Responses


def _responses_events(events: list[tuple[str, str]]) -> list[dict[str, Any]]:
    datas = [json.loads(d) for _, d in events]
    assert all(d["type"] == n for (n, _), d in zip(events, datas, strict=True))
    assert [d["sequence_number"] for d in datas] == list(range(len(datas)))
    return datas


@pytest.mark.parametrize("vendor", list(VENDORS))
async def test_responses_event_sequence(http: httpx.AsyncClient, vendor: str) -> None:
    model = VENDORS[vendor]
    prompt = f"frame me please {tag()}"
    resp, events = await sse(http, "/v1/responses", {"model": model, "input": prompt, "stream": True})
    assert resp.status_code == 200
    datas = _responses_events(events)
    assert [d["type"] for d in datas[:2]] == ["response.created", "response.in_progress"]
    assert datas[-1]["type"] == "response.completed"
    assert datas[-1]["response"]["status"] == "completed"
    assert datas[-1]["response"]["id"] == datas[0]["response"]["id"]
    assert "".join(d["delta"] for d in datas if d["type"] == "response.output_text.delta") == reply_to(prompt)
    assert datas[-1]["response"]["usage"]["output_tokens"] == words(reply_to(prompt))

    _, events = await sse(
        http,
        "/v1/responses",
        {"model": model, "input": f"[sim:words=30] {tag()}", "max_output_tokens": 16, "stream": True},
    )
    datas = _responses_events(events)
    assert datas[-1]["type"] == "response.incomplete"
    assert datas[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}

    _, events = await sse(
        http,
        "/v1/responses",
        {"model": model, "input": f"fail me midway now {tag()} [sim:error_after=2]", "stream": True},
    )
    datas = _responses_events(events)
    assert datas[-1]["type"] == "response.failed"
    assert datas[-1]["response"]["status"] == "failed"
    assert datas[-1]["response"]["id"] == datas[0]["response"]["id"]
    assert datas[-1]["response"]["error"]["message"]


# ------------------------------------------------------------------------------- end-user ids


async def _logged_end_user(harness: Harness, request_id: str) -> str:
    async def row() -> Any:
        rows = await harness.fetch(
            "usage", "SELECT end_user FROM request_log WHERE request_id = $1", request_id
        )
        return rows[0] if rows else None

    found = await eventually(row, what=f"request log row {request_id}")
    end_user: str = found["end_user"]
    return end_user


END_USER_CASES = [
    ("chat", "safety_identifier"),
    ("chat", "user"),
    ("responses", "safety_identifier"),
    ("messages", "metadata.user_id"),
]


@pytest.mark.parametrize("vendor", list(VENDORS))
@pytest.mark.parametrize(("ingress", "field"), END_USER_CASES, ids=[f"{i}-{f}" for i, f in END_USER_CASES])
async def test_end_user_id_reaches_the_vendor_and_the_request_log(
    harness: Harness, http: httpx.AsyncClient, vendor: str, ingress: str, field: str
) -> None:
    marker = tag()
    end_user = "user-" + marker[::-1]
    model = VENDORS[vendor]
    if ingress == "chat":
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": "user", "content": f"hi {marker}"}],
            field: end_user,
        }
        resp = await http.post("/v1/chat/completions", json=body)
    elif ingress == "responses":
        resp = await http.post(
            "/v1/responses", json={"model": model, "input": f"hi {marker}", field: end_user}
        )
    else:
        body = {
            "model": model,
            "max_tokens": 100,
            "messages": [{"role": "user", "content": f"hi {marker}"}],
            "metadata": {"user_id": end_user},
        }
        resp = await http.post("/v1/messages", json=body, headers=ANTHROPIC_HEADERS)
    assert resp.status_code == 200, resp.text

    async with httpx.AsyncClient(base_url=harness.stack.simulator_url, timeout=10) as sim:
        found = (await sim.get("/_sim/requests", params={"contains": marker})).json()
    assert len(found) == 1
    sent = found[0]["body"]
    if vendor == "openai" and (ingress, field) == ("chat", "user"):
        # A chat client's own body reaches OpenAI untouched: OpenAI still reads the legacy field.
        assert sent["user"] == end_user
    elif vendor == "openai":
        assert sent["safety_identifier"] == end_user
        assert "user" not in sent
    elif vendor == "anthropic":
        assert sent["metadata"] == {"user_id": end_user}
    else:
        # Gemini, DeepSeek and generic compatible APIs document no end-user field.
        assert end_user not in json.dumps(sent)
    assert await _logged_end_user(harness, resp.headers["x-request-id"]) == end_user


@pytest.mark.parametrize("vendor", list(VENDORS))
async def test_usage_is_requested_upstream_whatever_the_client_asked(
    harness: Harness, http: httpx.AsyncClient, vendor: str
) -> None:
    marker = tag()
    body = {
        "model": VENDORS[vendor],
        "messages": [{"role": "user", "content": f"hi {marker}"}],
        "stream": True,
    }
    resp, events = await sse(http, "/v1/chat/completions", body)
    assert resp.status_code == 200
    assert all(json.loads(d).get("usage") is None for _, d in events[:-1])
    async with httpx.AsyncClient(base_url=harness.stack.simulator_url, timeout=10) as sim:
        sent = (await sim.get("/_sim/requests", params={"contains": marker})).json()[0]
    if vendor in ("openai", "deepseek", "compatible"):
        assert sent["body"]["stream_options"]["include_usage"] is True
    # Anthropic and Gemini always report usage in streams.
    rows = await eventually(
        lambda: harness.fetch(
            "usage",
            "SELECT input_tokens, output_tokens, usage_estimated FROM request_log WHERE request_id = $1",
            resp.headers["x-request-id"],
        ),
        what="request log row",
    )
    assert (rows[0]["input_tokens"], rows[0]["output_tokens"]) == (
        prompt_tokens(f"hi {marker}"),
        words(reply_to(f"hi {marker}")),
    )
    assert rows[0]["usage_estimated"] is False


@pytest.mark.parametrize("vendor", ["google", "deepseek"])
async def test_an_answer_without_vendor_usage_shows_and_bills_the_estimate(
    harness: Harness, http: httpx.AsyncClient, vendor: str
) -> None:
    """No usage from the vendor, non-stream: the client reads the estimate the request log
    records and billing charges, never zeros."""
    body = {"model": VENDORS[vendor], "input": f"hello there {tag()} [sim:no_usage]"}
    resp = await http.post("/v1/responses", json=body)
    assert resp.status_code == 200, resp.text
    shown = resp.json()["usage"]
    assert shown["input_tokens"] > 0
    assert shown["output_tokens"] > 0
    rows = await eventually(
        lambda: harness.fetch(
            "usage",
            "SELECT input_tokens, output_tokens, usage_estimated, cost_micros FROM request_log "
            "WHERE request_id = $1",
            resp.headers["x-request-id"],
        ),
        what="request log row",
    )
    assert (rows[0]["input_tokens"], rows[0]["output_tokens"]) == (
        shown["input_tokens"],
        shown["output_tokens"],
    )
    assert rows[0]["usage_estimated"] is True
    assert rows[0]["cost_micros"] > 0
