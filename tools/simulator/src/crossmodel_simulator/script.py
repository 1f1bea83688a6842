"""What the simulator answers to a request: pure and deterministic, so tests compute the expected
reply and usage with the same functions instead of hard-coding them.

The reply
---------
- The prompt is the text of the last `user` message (string content, or its `text` parts
  joined by a space), with every `[sim:…]` marker removed and whitespace collapsed.
- Reply text: `"You said: " + prompt`. With `[sim:words=N]` it is instead `"w1 w2 … wN"`.
- `max_tokens` / `max_completion_tokens` cut the reply to that many words
  (`finish_reason: "length"`); a `stop` string cuts it before its first occurrence
  (`finish_reason: "stop"`).

Token counts
------------
- One token per whitespace-separated word: `count_tokens(text) = len(text.split())`.
- `prompt_tokens` = 3 + for every message (system, developer, user, assistant, tool):
  4 + tokens of its text parts (markers included, as sent) + 85 per image part
  + tokens of each tool call's name and arguments.
- `completion_tokens` = words of the reply. A stream sends the reply one word per chunk
  (the first word bare, each later one with its leading space), so chunks = completion tokens.
- `[sim:cached=N]` reports `min(N, prompt_tokens)` cached prompt tokens.

Choices
-------
Chat `n` > 1 answers the same reply n times (choices 0 … n-1), with n times the completion
tokens; a stream sends each chunk once per choice, in index order.

Log probabilities
-----------------
When asked (chat `logprobs`, Responses `include: ["message.output_text.logprobs"]`, Gemini
`generationConfig.responseLogprobs`), every reply token (each stream piece) gets one:
`token_logprobs(pieces, top)`. Token i has log probability `-(i % 5 + 1) / 100`; its `top`
alternatives are the token itself, then `"<token>~1"`, `"<token>~2"`, … each 1.0 lower.

Markers (anywhere in the last user message)
-------------------------------------------
- `[sim:status=429]` (any 4xx/5xx): fail before the first byte with that status and an
  OpenAI-shaped error body; 429 and 503 carry `retry-after` / `retry-after-ms`.
- `[sim:retry_after_ms=N]`: the `retry-after-ms` of that failure (`retry-after` is whole
  seconds, rounded up); default 1000.
- `[sim:delay_ms=N]`: wait N ms before the first byte (headers included).
- `[sim:chunk_delay_ms=N]`: wait N ms before each stream content chunk.
- `[sim:drop_after=N]`: streams: drop the connection after N content chunks (no finish, no
  usage, no `[DONE]`); non-stream: drop before any byte.
- `[sim:error_after=N]`: streams: after N content chunks send `data: {"error":{…}}` and end.
- `[sim:no_usage]`: never report usage (not even when asked).
- `[sim:words=N]`: reply with N words `w1 … wN`.
- `[sim:cached=N]`: report N cached prompt tokens (capped at prompt tokens).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_MARKER = re.compile(r"\[sim:([a-z_]+)(?:=([^\]]*))?\]")
IMAGE_TOKENS = 85
REPLY_PREFIX = "You said: "


def count_tokens(text: str) -> int:
    return len(text.split())


@dataclass(frozen=True, slots=True)
class Script:
    status: int = 0
    retry_after_ms: int = 1000
    delay_ms: int = 0
    chunk_delay_ms: int = 0
    drop_after: int | None = None
    error_after: int | None = None
    no_usage: bool = False
    words: int | None = None
    cached: int = 0


@dataclass(frozen=True, slots=True)
class Expected:
    """What the simulator will answer for a request (when no failure is scripted)."""

    text: str
    pieces: tuple[str, ...]  # stream content chunks, in order
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    finish_reason: str
    script: Script

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    out: list[str] = []
    if isinstance(content, list):
        for p in content:
            if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str):
                out.append(p["text"])
    return out


def _images(content: Any) -> int:
    if not isinstance(content, list):
        return 0
    return sum(1 for p in content if isinstance(p, dict) and p.get("type") == "image_url")


def last_user_text(messages: list[Any]) -> str:
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            return " ".join(_texts(m.get("content")))
    return ""


def parse_script(text: str) -> Script:
    values: dict[str, Any] = {}
    for name, raw in _MARKER.findall(text):
        if name == "no_usage":
            values["no_usage"] = True
        elif name in (
            "status",
            "retry_after_ms",
            "delay_ms",
            "chunk_delay_ms",
            "drop_after",
            "error_after",
            "words",
            "cached",
        ):
            try:
                values[name] = int(raw)
            except ValueError:
                continue
    return Script(**values)


def prompt_tokens(messages: list[Any]) -> int:
    total = 3
    for m in messages:
        if not isinstance(m, dict):
            continue
        total += 4
        content = m.get("content")
        total += sum(count_tokens(t) for t in _texts(content)) + IMAGE_TOKENS * _images(content)
        for tc in m.get("tool_calls") or ():
            fn = tc.get("function") or {} if isinstance(tc, dict) else {}
            total += count_tokens(str(fn.get("name") or "")) + count_tokens(str(fn.get("arguments") or ""))
    return total


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    token: str
    logprob: float
    top: tuple[tuple[str, float], ...]  # the `top` most likely tokens here, the chosen one first


def token_logprobs(pieces: tuple[str, ...] | list[str], top: int) -> list[TokenLogprob]:
    """The log probabilities the simulator reports for these reply tokens, with `top`
    alternatives each."""
    out = []
    for i, token in enumerate(pieces):
        lp = -(i % 5 + 1) / 100
        alts = [(token, lp)] + [(f"{token}~{j}", lp - j) for j in range(1, top)]
        out.append(TokenLogprob(token, lp, tuple(alts[: max(top, 0)])))
    return out


def openai_logprobs(
    pieces: tuple[str, ...] | list[str], top: int, *, with_bytes: bool = True
) -> list[dict[str, Any]]:
    """OpenAI's shape: chat `choices[].logprobs.content`, Responses `output_text.logprobs`
    (`with_bytes=False`: the `logprobs` of Responses delta and done events)."""

    def entry(token: str, lp: float) -> dict[str, Any]:
        e: dict[str, Any] = {"token": token, "logprob": lp}
        if with_bytes:
            e["bytes"] = list(token.encode())
        return e

    return [
        {**entry(t.token, t.logprob), "top_logprobs": [entry(a, b) for a, b in t.top]}
        for t in token_logprobs(pieces, top)
    ]


def _pieces(text: str) -> tuple[str, ...]:
    words = text.split()
    return tuple(w if i == 0 else " " + w for i, w in enumerate(words))


def expected_completion(body: dict[str, Any]) -> Expected:
    """The reply, its stream pieces and the usage the simulator gives for this chat body."""
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    assert isinstance(messages, list)
    raw = last_user_text(messages)
    script = parse_script(raw)
    if script.words is not None:
        text = " ".join(f"w{i}" for i in range(1, script.words + 1))
    else:
        prompt = " ".join(_MARKER.sub(" ", raw).split())
        text = REPLY_PREFIX + prompt
    finish = "stop"
    stops = body.get("stop")
    for s in [stops] if isinstance(stops, str) else stops if isinstance(stops, list) else []:
        if isinstance(s, str) and s and s in text:
            text = text[: text.index(s)]
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    words = text.split()
    if isinstance(limit, int) and limit < len(words):
        text = " ".join(words[:limit])
        finish = "length"
    else:
        text = " ".join(words)
    pieces = _pieces(text)
    p_tokens = prompt_tokens(messages)
    return Expected(
        text=text,
        pieces=pieces,
        prompt_tokens=p_tokens,
        completion_tokens=len(pieces),
        cached_tokens=min(max(script.cached, 0), p_tokens),
        finish_reason=finish,
        script=script,
    )
