"""Malformed upstream answers and client bodies are reported, never crashed on.

Every provider codec reads real vendor answers (the golden transcripts and bodies beside this
file). Here each of them is damaged in many seeded, reproducible ways — a field replaced by a
value of another JSON type, removed, or joined by an unknown one — and fed to the codec. The
contract: the codec returns a result or raises `ProtocolError` (which the router turns into an
upstream error in the client's protocol, with the attempt still accounted for). Any other
exception is a defect; a failure message carries the damaged input to reproduce it.

Client bodies get the same treatment at the ingress: accepted, or refused with InvalidRequest
(a 400 naming the problem), and whatever is accepted builds a request for every vendor.

Token counts that cannot be read drop the whole usage object (the router then estimates)
rather than being billed as zero or as nonsense.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from crossmodel_protocols.anthropic import AnthropicIngress, AnthropicProvider, usage_from_anthropic
from crossmodel_protocols.canonical import InvalidRequest, Protocol, ProtocolError, Usage
from crossmodel_protocols.codec import IngressCodec, ProviderCodec
from crossmodel_protocols.gemini import GeminiProvider, usage_from_gemini
from crossmodel_protocols.openai_chat import ChatIngress, ChatProvider, Dialect, usage_from_openai
from crossmodel_protocols.openai_responses import OpenAIProvider, ResponsesIngress, usage_from_responses

GOLDEN = Path(__file__).parent / "golden"
MUTANTS_PER_INPUT = 300

_CHAT_BODY = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1741570000,
    "model": "gpt-4.1",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "It is sunny.",
                "reasoning_content": "Looking it up.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"a":1}'},
                    }
                ],
            },
            "finish_reason": "tool_calls",
            "logprobs": None,
        }
    ],
    "usage": {
        "prompt_tokens": 30,
        "completion_tokens": 12,
        "total_tokens": 42,
        "prompt_cache_hit_tokens": 4,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 3},
    },
}
_ANTHROPIC_BODY = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-6",
    "content": [
        {"type": "thinking", "thinking": "Looking it up.", "signature": "sig"},
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 30,
        "output_tokens": 12,
        "cache_read_input_tokens": 4,
        "cache_creation_input_tokens": 0,
    },
}

PROVIDERS: dict[str, ProviderCodec] = {
    "openai": OpenAIProvider(),
    "deepseek": ChatProvider(Dialect.DEEPSEEK),
    "compatible": ChatProvider(Dialect.COMPATIBLE),
    "anthropic": AnthropicProvider(),
    "gemini": GeminiProvider(),
}
# (provider, a complete answer) — OpenAI's Responses body goes through the provider that
# serves Responses clients natively.
BODIES: list[tuple[str, Any]] = [
    ("openai", _CHAT_BODY),
    ("deepseek", _CHAT_BODY),
    ("compatible", _CHAT_BODY),
    ("anthropic", _ANTHROPIC_BODY),
    ("gemini", orjson.loads((GOLDEN / "gemini" / "upstream_response.json").read_bytes())),
    ("openai", orjson.loads((GOLDEN / "responses" / "openai_upstream_response.json").read_bytes())),
]
STREAMS: list[tuple[str, str]] = [
    ("openai", "openai_upstream_text.sse"),
    ("openai", "openai_upstream_tools.sse"),
    ("deepseek", "deepseek_upstream_reasoning.sse"),
    ("anthropic", "anthropic/upstream_text.sse"),
    ("anthropic", "anthropic/upstream_thinking_tools.sse"),
    ("anthropic", "anthropic/upstream_server_tools.sse"),
    ("gemini", "gemini/upstream_thoughts_tools.sse"),
    ("openai", "responses/openai_upstream_reasoning_tools.sse"),
    ("openai", "responses/openai_upstream_custom_tool.sse"),
    ("openai", "responses/openai_upstream_hosted_tools.sse"),
]

_STRINGS = ["", "x", "assistant", "tool_calls", "stop", "text", "function", "{", "[DONE]", "\u0000"]


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 2 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice([-1, 0, 7, 2**63, 10**30])
    if kind == 3:
        return rng.choice([0.5, -2.0, 1e300, 3.0])
    if kind in (4, 5):
        return rng.choice(_STRINGS)
    if kind == 6:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    return {rng.choice(["type", "text", "index", "id", "delta"]): _value(rng, depth + 1) for _ in range(2)}


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if prefix:
        yield prefix
    if isinstance(node, dict):
        for key, child in node.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            yield from _paths(child, (*prefix, i))


def mutant(rng: random.Random, original: Any) -> Any:
    """`original` with one field replaced by another type, removed, or joined by a new one."""
    doc = copy.deepcopy(original)
    paths = list(_paths(doc))
    if not paths:
        return _value(rng)
    path = rng.choice(paths)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    op = rng.randrange(3)
    if op == 0 and isinstance(parent, dict):
        del parent[path[-1]]
    elif op == 1 and isinstance(parent, dict):
        parent[rng.choice(["extra", "type", "index", "usage"])] = _value(rng)
    else:
        parent[path[-1]] = _value(rng)
    return doc


def _sse_events(raw: bytes) -> list[tuple[bytes | None, Any]]:
    """(event name, parsed data) per SSE event; data that is not JSON (`[DONE]`) stays bytes."""
    out: list[tuple[bytes | None, Any]] = []
    for block in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        name: bytes | None = None
        data: bytes | None = None
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip()
            elif line.startswith(b"data:"):
                data = line[5:].strip()
        if data is not None:
            try:
                out.append((name, orjson.loads(data)))
            except orjson.JSONDecodeError:
                out.append((name, data))
    return out


def _sse(events: list[tuple[bytes | None, Any]]) -> bytes:
    parts = []
    for name, data in events:
        head = b"event: " + name + b"\n" if name is not None else b""
        body = data if isinstance(data, bytes) else json.dumps(data).encode()
        parts.append(head + b"data: " + body + b"\n\n")
    return b"".join(parts)


def _survives(call: Callable[[], object], damaged: bytes) -> None:
    try:
        call()
    except ProtocolError:
        pass
    except Exception as exc:  # the defect this module looks for
        pytest.fail(f"{type(exc).__name__}: {exc} on the upstream input {damaged[:1500]!r}")


@pytest.mark.parametrize(("provider", "body"), BODIES, ids=[f"{p}-{i}" for i, (p, _) in enumerate(BODIES)])
def test_a_damaged_complete_answer_is_parsed_or_reported(provider: str, body: Any) -> None:
    codec = PROVIDERS[provider]
    codec.parse_response(orjson.dumps(body))  # the undamaged answer parses
    rng = random.Random(f"{provider}:{body.get('id') or body.get('responseId')}")
    for _ in range(MUTANTS_PER_INPUT):
        damaged = json.dumps(mutant(rng, body)).encode()  # orjson refuses integers past 64 bits
        _survives(lambda d=damaged: codec.parse_response(d), damaged)  # type: ignore[misc]


@pytest.mark.parametrize(("provider", "name"), STREAMS, ids=[n for _, n in STREAMS])
def test_a_damaged_stream_is_parsed_or_reported(provider: str, name: str) -> None:
    codec = PROVIDERS[provider]
    events = _sse_events((GOLDEN / name).read_bytes())
    objects = [i for i, (_, data) in enumerate(events) if not isinstance(data, bytes)]
    assert objects, name
    rng = random.Random(name)
    for _ in range(MUTANTS_PER_INPUT):
        damaged_events = list(events)
        i = rng.choice(objects)
        damaged_events[i] = (events[i][0], mutant(rng, events[i][1]))
        damaged = _sse(damaged_events)

        def feed(raw: bytes = damaged) -> None:
            parser = codec.stream_parser()
            # In two pieces, as a network delivers it: the cut lands inside an event.
            cut = len(raw) // 2
            parser.feed(raw[:cut])
            parser.feed(raw[cut:])
            parser.close()

        _survives(feed, damaged)


@pytest.mark.parametrize(
    ("parse", "usage"),
    [
        (usage_from_openai, {"prompt_tokens": 10, "completion_tokens": 5}),
        (usage_from_responses, {"input_tokens": 10, "output_tokens": 5}),
        (usage_from_gemini, {"promptTokenCount": 10, "candidatesTokenCount": 5}),
    ],
    ids=["openai", "responses", "gemini"],
)
@pytest.mark.parametrize("bad", ["10", -3, 2.5, True, [10], {"n": 10}])
def test_an_unreadable_token_count_drops_the_usage_for_an_estimate(
    parse: Callable[[Any], Usage | None], usage: dict[str, Any], bad: object
) -> None:
    parsed = parse(usage)
    assert parsed is not None
    assert (parsed.input_tokens, parsed.output_tokens) == (10, 5)
    first = next(iter(usage))
    assert parse({**usage, first: bad}) is None
    assert parse({**usage, first: 10.0}) == parsed  # an integral float is still a count


def test_anthropic_usage_keeps_what_it_can_read() -> None:
    # Anthropic's message_delta repeats only some counters: an unreadable one keeps the value
    # message_start reported, as an absent one does.
    start = usage_from_anthropic({"input_tokens": 10, "output_tokens": 1})
    assert start is not None
    delta = usage_from_anthropic({"input_tokens": "ten", "output_tokens": 7}, start)
    assert delta is not None
    assert (delta.input_tokens, delta.output_tokens) == (10, 7)


# ------------------------------------------------------------------------------ client bodies

_TOOL = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
CLIENT_BODIES: list[tuple[Protocol, dict[str, Any]]] = [
    (
        Protocol.OPENAI_CHAT,
        {
            "model": "m",
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": 10,
            "stop": ["x"],
            "user": "u1",
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": _TOOL}},
            "messages": [
                {"role": "system", "content": "be brief"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + _PNG}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            ],
            "tools": [{"type": "function", "function": {"name": "w", "parameters": _TOOL}}],
            "tool_choice": {"type": "function", "function": {"name": "w"}},
        },
    ),
    (
        Protocol.ANTHROPIC_MESSAGES,
        {
            "model": "m",
            "max_tokens": 100,
            "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "metadata": {"user_id": "u"},
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "x"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": _PNG},
                        },
                    ],
                },
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "t", "signature": "s"},
                        {"type": "tool_use", "id": "t1", "name": "w", "input": {"city": "P"}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t1",
                            "content": [{"type": "text", "text": "sunny"}],
                        }
                    ],
                },
            ],
            "tools": [{"name": "w", "input_schema": _TOOL}],
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        },
    ),
    (
        Protocol.OPENAI_RESPONSES,
        {
            "model": "m",
            "instructions": "be brief",
            "max_output_tokens": 20,
            "text": {"format": {"type": "json_object"}},
            "reasoning": {"effort": "low", "summary": "auto"},
            "input": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "x"},
                        {"type": "input_image", "image_url": "data:image/png;base64," + _PNG},
                    ],
                },
                {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            ],
            "tools": [{"type": "function", "name": "w", "parameters": _TOOL}],
            "tool_choice": "required",
        },
    ),
]
INGRESS: dict[Protocol, IngressCodec] = {
    Protocol.OPENAI_CHAT: ChatIngress(),
    Protocol.ANTHROPIC_MESSAGES: AnthropicIngress(),
    Protocol.OPENAI_RESPONSES: ResponsesIngress(),
}


@pytest.mark.parametrize(("protocol", "body"), CLIENT_BODIES, ids=[p.value for p, _ in CLIENT_BODIES])
def test_a_damaged_client_body_is_accepted_or_refused_naming_the_problem(
    protocol: Protocol, body: dict[str, Any]
) -> None:
    """Bad client input is a 400 in the client's protocol (InvalidRequest), never a 500; what
    the ingress accepts, every provider codec can build a request from."""
    ingress = INGRESS[protocol]
    ingress.parse_request(orjson.dumps(body), {})
    rng = random.Random(protocol.value)
    for _ in range(MUTANTS_PER_INPUT):
        damaged = json.dumps(mutant(rng, body)).encode()
        try:
            request = ingress.parse_request(damaged, {})
        except InvalidRequest:
            continue
        except Exception as exc:  # the defect this test looks for
            pytest.fail(f"{type(exc).__name__}: {exc} on the client body {damaged[:1500]!r}")
        for provider in PROVIDERS.values():
            try:
                provider.build_request(request, "upstream-model", "sk-test")
            except ProtocolError:
                pass  # a feature this vendor cannot take, reported as such
            except Exception as exc:
                pytest.fail(f"{type(exc).__name__} building for {provider}: {exc} from {damaged[:1500]!r}")


@pytest.mark.parametrize(
    ("parse", "usage"),
    [
        (
            usage_from_openai,
            {
                "prompt_tokens": 100,
                "completion_tokens": 5,
                "prompt_tokens_details": {"cached_tokens": 20, "cache_write_tokens": 30},
            },
        ),
        (
            usage_from_responses,
            {
                "input_tokens": 100,
                "output_tokens": 5,
                "input_tokens_details": {"cached_tokens": 20, "cache_write_tokens": 30},
            },
        ),
    ],
    ids=["chat", "responses"],
)
def test_openai_cache_reads_and_writes_are_both_kept(
    parse: Callable[[Any], Usage | None], usage: dict[str, Any]
) -> None:
    parsed = parse(usage)
    assert parsed is not None
    assert (parsed.input_tokens, parsed.cached_input_tokens, parsed.cache_write_tokens) == (100, 20, 30)
