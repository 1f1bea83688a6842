"""Token log probabilities read from every vendor that has them (OpenAI chat, OpenAI Responses,
Gemini), plain and streamed, and written in each OpenAI client protocol's own shape: chat
`choices[].logprobs.content` (and per chunk), Responses `output_text.logprobs` (with `bytes`)
and the `logprobs` of its text delta and done events (without). Asked and not asked."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from crossmodel_protocols.canonical import Request, StreamEvent, TextPart, TokenLogprob
from crossmodel_protocols.codec import IngressCodec, ProviderCodec
from crossmodel_protocols.gemini import GeminiProvider
from crossmodel_protocols.openai_chat import ChatIngress, ChatProvider
from crossmodel_protocols.openai_responses import ResponsesIngress, ResponsesProvider

# Two tokens, two alternatives each: what every upstream below reports, in its own shape.
TOKENS = [("Hi", -0.01, [("Hi", -0.01), ("Hey", -4.5)]), (" there", -0.25, [(" there", -0.25), ("!", -2.0)])]
EXPECTED = [
    TokenLogprob(t, lp, list(t.encode()), [TokenLogprob(a, b, list(a.encode())) for a, b in top])
    for t, lp, top in TOKENS
]


def _openai(t: str, lp: float, *, with_bytes: bool = True) -> dict[str, Any]:
    return (
        {"token": t, "logprob": lp, "bytes": list(t.encode())} if with_bytes else {"token": t, "logprob": lp}
    )


def openai_logprobs(tokens: list[Any] = TOKENS, *, with_bytes: bool = True) -> list[dict[str, Any]]:
    return [
        {
            **_openai(t, lp, with_bytes=with_bytes),
            "top_logprobs": [_openai(a, b, with_bytes=with_bytes) for a, b in top],
        }
        for t, lp, top in tokens
    ]


def gemini_logprobs(tokens: list[Any]) -> dict[str, Any]:
    def cand(t: str, lp: float) -> dict[str, Any]:
        return {"token": t, "tokenId": 7, "logProbability": lp}

    return {
        "topCandidates": [{"candidates": [cand(a, b) for a, b in top]} for _, _, top in tokens],
        "chosenCandidates": [cand(t, lp) for t, lp, _ in tokens],
    }


CHAT_ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hi there"},
            "logprobs": {"content": openai_logprobs(), "refusal": None},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
}
RESPONSES_ANSWER = {
    "id": "resp_1",
    "object": "response",
    "created_at": 1,
    "status": "completed",
    "model": "gpt-4o-mini",
    "output": [
        {
            "id": "msg_1",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [
                {"type": "output_text", "annotations": [], "logprobs": openai_logprobs(), "text": "Hi there"}
            ],
        }
    ],
    "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5},
}
GEMINI_ANSWER = {
    "candidates": [
        {
            "content": {"parts": [{"text": "Hi there"}], "role": "model"},
            "finishReason": "STOP",
            "index": 0,
            "logprobsResult": gemini_logprobs(TOKENS),
        }
    ],
    "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 5},
    "modelVersion": "gemini-2.5-flash",
    "responseId": "r1",
}


def _sse(payloads: list[Any]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(p) + b"\n\n" for p in payloads)


def _chat_stream() -> bytes:
    def chunk(delta: dict[str, Any], lps: Any = None, finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": delta, "logprobs": lps, "finish_reason": finish}],
        }

    return (
        _sse(
            [
                chunk({"role": "assistant", "content": ""}),
                *(
                    chunk({"content": t}, {"content": openai_logprobs([tok]), "refusal": None})
                    for tok in TOKENS
                    for t in [tok[0]]
                ),
                chunk({}, None, "stop"),
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": "m",
                    "choices": [],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
                },
            ]
        )
        + b"data: [DONE]\n\n"
    )


def _responses_stream() -> bytes:
    item = {"id": "msg_1", "type": "message", "status": "in_progress", "role": "assistant", "content": []}
    common = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {**RESPONSES_ANSWER, "status": "in_progress", "output": []}},
        {"type": "response.output_item.added", "output_index": 0, "item": item},
        {
            "type": "response.content_part.added",
            **common,
            "part": {"type": "output_text", "annotations": [], "logprobs": [], "text": ""},
        },
        *(
            {
                "type": "response.output_text.delta",
                **common,
                "delta": tok[0],
                "logprobs": openai_logprobs([tok], with_bytes=False),
            }
            for tok in TOKENS
        ),
        {
            "type": "response.output_text.done",
            **common,
            "text": "Hi there",
            "logprobs": openai_logprobs(with_bytes=False),
        },
        {"type": "response.completed", "response": RESPONSES_ANSWER},
    ]
    return b"".join(
        b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps({**e, "sequence_number": i}) + b"\n\n"
        for i, e in enumerate(events)
    )


def _gemini_stream() -> bytes:
    def chunk(text: str, tok: Any, finish: str | None = None) -> dict[str, Any]:
        cand: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
        cand["logprobsResult"] = gemini_logprobs([tok])
        if finish:
            cand["finishReason"] = finish
        return {"candidates": [cand], "modelVersion": "gemini-2.5-flash", "responseId": "r1"}

    return _sse([chunk(TOKENS[0][0], TOKENS[0]), chunk(TOKENS[1][0], TOKENS[1], "STOP")])


UPSTREAMS: dict[str, tuple[ProviderCodec, dict[str, Any], bytes]] = {
    "openai-chat": (ChatProvider(), CHAT_ANSWER, _chat_stream()),
    "openai-responses": (ResponsesProvider(), RESPONSES_ANSWER, _responses_stream()),
    "gemini": (GeminiProvider(), GEMINI_ANSWER, _gemini_stream()),
}
# Gemini reports no bytes; they are the token's UTF-8 when written for OpenAI clients.
WITHOUT_BYTES = [
    TokenLogprob(t.token, t.logprob, None, [TokenLogprob(a.token, a.logprob) for a in t.top])
    for t in EXPECTED
]


def _request(ingress: IngressCodec, *, asked: bool, stream: bool = False) -> Request:
    if isinstance(ingress, ChatIngress):
        body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        if asked:
            body |= {"logprobs": True, "top_logprobs": 2}
    else:
        body = {"model": "m", "input": "hi"}
        if asked:
            body |= {"include": ["message.output_text.logprobs"], "top_logprobs": 2}
    return ingress.parse_request(orjson.dumps(body | {"stream": stream}), {})


def _events(upstream: str) -> list[StreamEvent]:
    codec, _, wire = UPSTREAMS[upstream]
    parser = codec.stream_parser()
    events: list[StreamEvent] = []
    for i in range(0, len(wire), 37):  # cut anywhere
        events.extend(parser.feed(wire[i : i + 37]))
    return events + parser.close()


@pytest.mark.parametrize("upstream", list(UPSTREAMS))
def test_every_vendor_answer_is_read_with_its_logprobs(upstream: str) -> None:
    codec, answer, _ = UPSTREAMS[upstream]
    response = codec.parse_response(orjson.dumps(answer))
    texts = [p for p in response.content if isinstance(p, TextPart)]
    assert [p.text for p in texts] == ["Hi there"]
    assert texts[0].logprobs == (WITHOUT_BYTES if upstream == "gemini" else EXPECTED)


@pytest.mark.parametrize("upstream", list(UPSTREAMS))
def test_answers_carry_them_in_each_openai_protocol(upstream: str) -> None:
    codec, answer, _ = UPSTREAMS[upstream]
    response = codec.parse_response(orjson.dumps(answer))
    chat = orjson.loads(ChatIngress().render_response(response, _request(ChatIngress(), asked=True)))
    assert chat["choices"][0]["logprobs"] == {"content": openai_logprobs(), "refusal": None}
    resp = orjson.loads(
        ResponsesIngress().render_response(response, _request(ResponsesIngress(), asked=True))
    )
    assert resp["output"][0]["content"][0]["logprobs"] == openai_logprobs()
    assert resp["top_logprobs"] == 2


def test_not_asked_they_are_null_in_chat() -> None:
    response = ChatProvider().parse_response(orjson.dumps({**CHAT_ANSWER}))
    chat = orjson.loads(ChatIngress().render_response(response, _request(ChatIngress(), asked=False)))
    assert chat["choices"][0]["logprobs"] is None


def _chat_chunks(wire: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(b[6:]) for b in wire.split(b"\n\n") if b.startswith(b"data: {")]


@pytest.mark.parametrize("upstream", list(UPSTREAMS))
def test_streams_carry_them_per_chunk_in_chat(upstream: str) -> None:
    renderer = ChatIngress().stream_renderer(_request(ChatIngress(), asked=True, stream=True))
    wire = b"".join(renderer.render(e) for e in _events(upstream)) + renderer.close()
    content = [c for c in _chat_chunks(wire) if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert [c["choices"][0]["delta"]["content"] for c in content] == ["Hi", " there"]
    assert [c["choices"][0]["logprobs"] for c in content] == [
        {"content": openai_logprobs([tok]), "refusal": None} for tok in TOKENS
    ]
    others = [c for c in _chat_chunks(wire) if c not in content and c["choices"]]
    assert others
    assert all(c["choices"][0]["logprobs"] is None for c in others)


@pytest.mark.parametrize("upstream", list(UPSTREAMS))
def test_streams_carry_them_in_responses_events(upstream: str) -> None:
    renderer = ResponsesIngress().stream_renderer(_request(ResponsesIngress(), asked=True, stream=True))
    wire = b"".join(renderer.render(e) for e in _events(upstream)) + renderer.close()
    events = [orjson.loads(b.split(b"\ndata: ", 1)[1]) for b in wire.split(b"\n\n") if b]
    by_type: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_type.setdefault(e["type"], []).append(e)
    deltas = by_type["response.output_text.delta"]
    assert [d["logprobs"] for d in deltas] == [openai_logprobs([tok], with_bytes=False) for tok in TOKENS]
    assert by_type["response.output_text.done"][0]["logprobs"] == openai_logprobs(with_bytes=False)
    assert by_type["response.content_part.done"][0]["part"]["logprobs"] == openai_logprobs()
    final = by_type["response.completed"][0]["response"]
    assert final["output"][0]["content"][0]["logprobs"] == openai_logprobs()
