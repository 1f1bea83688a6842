"""Anthropic Messages wire format: `POST /anthropic/v1/messages` (plain and streamed) and
`GET /anthropic/v1/models`, answered the way https://api.anthropic.com answers (so the
`anthropic` SDK's base URL is `http://<simulator>/anthropic`).

The reply follows the chat rule of `crossmodel_simulator.script` (same prompt, same reply text,
same `max_tokens` cut, `stop_sequences` play the part of `stop`), and the same failure markers
apply. What differs, and why:

Token counts (one token per whitespace-separated word, as in `script`)
----------------------------------------------------------------------
- The prompt is 3 + for the system prompt (when present) and every message: 4 + words of its
  text (string content, `text` blocks, `tool_result` contents, `thinking` text, `tool_use`
  name and compact JSON input) + 85 per `image` block.
- Anthropic reports that prompt split in three: `cache_read_input_tokens` = `[sim:cached=N]`
  (capped at the prompt), `cache_creation_input_tokens` = `[sim:cache_write=N]` (capped at what
  is left), `input_tokens` = the rest. Usage is always reported (Anthropic has no way to turn
  it off), so `[sim:no_usage]` does not apply here.
- `output_tokens` = words of the thinking + words of the reply + for each tool call the words
  of its name and of its compact JSON input. With thinking, `output_tokens_details.thinking_tokens`
  = words of the thinking. `message_start` reports `output_tokens: 1`, as Anthropic does;
  `message_delta` reports the cumulative totals.

Markers (anywhere in the last user message, besides those of `script`)
----------------------------------------------------------------------
- `[sim:thinking]`: a `thinking` block first, text `"Thinking about: " + prompt`, signed with
  `signature_for(text)`; streamed one word per `thinking_delta`, then one `signature_delta`.
- `[sim:redacted_thinking]`: a `redacted_thinking` block (data `redacted_data_for(prompt)`).
- `[sim:tool=NAME]` or `[sim:tool=NAME:{"json":"object"}]` (repeatable: parallel calls): a
  `tool_use` block calling NAME with that input (default `{"query": prompt}`), after the text;
  `stop_reason` is `tool_use`. Streamed as `input_json_delta` pieces of 8 characters.
- `[sim:cache_write=N]`: report N prompt tokens written to the cache.
- `[sim:web_search]`, when the request declares Anthropic's web search tool (`web_search_…`),
  as a server tool turn: a `server_tool_use` block (`web_search`, input `{"query": prompt}`, id
  `server_tool_id(prompt)`) and its `web_search_tool_result` (one `web_search_result`) before
  the reply, whose text block cites it (`web_search_result_location`); usage reports
  `server_tool_use: {"web_search_requests": 1, "web_fetch_requests": 0}` and the call's name
  and input words as output. Streamed as Anthropic streams it: the call opens with an empty
  input that follows in `input_json_delta` pieces of 8 characters, the result opens whole, the
  text opens empty and gets a `citations_delta` before its text.
- `[sim:pause_turn]`: `stop_reason: pause_turn` (a long server tool turn paused), unless tools
  were called.

Streams: `message_start`, each block (`content_block_start`, `ping` after the first one,
deltas, `content_block_stop`), `message_delta`, `message_stop`. `[sim:drop_after=N]` and
`[sim:error_after=N]` count content deltas (text, thinking, tool input; the signature too).
`[sim:error_after=N]` sends `event: error` with an `overloaded_error`, as Anthropic does under
load. Failures before the first byte use Anthropic's error body; 429 and 529 carry
`retry-after` / `retry-after-ms`. A request without the `anthropic-version` header is refused
with 400, as Anthropic refuses it.

Refusals (400 `invalid_request_error` with Anthropic's message, `refusal_for`), the rules of
https://platform.claude.com/docs/en/build-with-claude/extended-thinking and of the models the
simulator serves: `temperature` above 1; `temperature` together with `top_p`; with thinking on
(`enabled` or `adaptive`), a `temperature` other than 1, a `top_p` below 0.95, any `top_k`, a
`tool_choice` that forces a tool (`any`, `tool`), and a request whose last user turn carries
tool results while the assistant message before it does not start with a thinking block; and,
thinking on or not, a `thinking` block whose signature is not `signature_for` its text, or a
`redacted_thinking` block whose data the simulator did not make.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import math
import re
import secrets
import string
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from crossmodel_simulator.script import IMAGE_TOKENS, Script, count_tokens, expected_completion, parse_script

_ALNUM = string.ascii_letters + string.digits
_TOOL = re.compile(r"\[sim:tool=([^\]:]+)(?::([^\]]*))?\]")
_CACHE_WRITE = re.compile(r"\[sim:cache_write=(\d+)\]")
WEB_SEARCH = "web_search"
_ANY_MARKER = re.compile(r"\[sim:[a-z_]+(?:=[^\]]*)?\]")
THINKING_PREFIX = "Thinking about: "
TOOL_INPUT_PIECE = 8

ANTHROPIC_MODELS = (
    ("claude-opus-4-6", "Claude Opus 4.6", "2026-02-05T00:00:00Z"),
    ("claude-sonnet-4-6", "Claude Sonnet 4.6", "2026-02-17T00:00:00Z"),
    ("claude-haiku-4-5", "Claude Haiku 4.5", "2025-10-15T00:00:00Z"),
)

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def signature_for(thinking: str) -> str:
    """A deterministic stand-in for Anthropic's opaque thinking signature."""
    return base64.b64encode(hashlib.sha256(thinking.encode()).digest() * 2).decode()


def redacted_data_for(prompt: str) -> str:
    return base64.b64encode(b"redacted:" + hashlib.sha256(prompt.encode()).digest()).decode()


def server_tool_id(prompt: str) -> str:
    return "srvtoolu_01" + hashlib.sha256(prompt.encode()).hexdigest()[:22]


def search_result_for(query: str) -> dict[str, Any]:
    """The one `web_search_result` the simulator finds for a query."""
    digest = hashlib.sha256(query.encode()).digest()
    return {
        "type": "web_search_result",
        "title": "Result for: " + query,
        "url": "https://search.example/" + digest.hex()[:12],
        "encrypted_content": base64.b64encode(b"page:" + digest).decode(),
        "page_age": "June 4, 2025",
    }


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    input_json: str  # compact JSON object


@dataclass(frozen=True, slots=True)
class ExpectedMessage:
    """What the simulator answers to a Messages body (when no failure is scripted)."""

    thinking: str | None
    redacted: str | None
    text: str
    text_pieces: tuple[str, ...]
    tools: tuple[ToolCall, ...]
    web_search: str | None  # the query of the server tool turn ([sim:web_search])
    stop_reason: str
    stop_sequence: str | None
    prompt_tokens: int
    input_tokens: int  # uncached, Anthropic's meaning
    cache_read_tokens: int
    cache_write_tokens: int
    output_tokens: int
    thinking_tokens: int
    script: Script

    @property
    def thinking_pieces(self) -> tuple[str, ...]:
        return _pieces(self.thinking or "")

    @property
    def signature(self) -> str:
        return signature_for(self.thinking or "")

    def usage(self, output_tokens: int | None = None) -> dict[str, Any]:
        u: dict[str, Any] = {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_write_tokens,
            "cache_read_input_tokens": self.cache_read_tokens,
            "output_tokens": self.output_tokens if output_tokens is None else output_tokens,
        }
        if self.thinking is not None and output_tokens is None:
            u["output_tokens_details"] = {"thinking_tokens": self.thinking_tokens}
        if self.web_search is not None and output_tokens is None:
            u["server_tool_use"] = {"web_search_requests": 1, "web_fetch_requests": 0}
        return u

    @property
    def server_tool_use(self) -> dict[str, Any]:
        query = self.web_search or ""
        return {
            "type": "server_tool_use",
            "id": server_tool_id(query),
            "name": WEB_SEARCH,
            "input": {"query": query},
        }

    @property
    def web_search_result(self) -> dict[str, Any]:
        query = self.web_search or ""
        return {
            "type": "web_search_tool_result",
            "tool_use_id": server_tool_id(query),
            "content": [search_result_for(query)],
        }

    @property
    def citation(self) -> dict[str, Any]:
        found = search_result_for(self.web_search or "")
        return {
            "type": "web_search_result_location",
            "cited_text": found["title"],
            "url": found["url"],
            "title": found["title"],
            "encrypted_index": base64.b64encode(found["url"].encode()).decode(),
        }


def _pieces(text: str) -> tuple[str, ...]:
    words = text.split()
    return tuple(w if i == 0 else " " + w for i, w in enumerate(words))


def _block_tokens(b: Any) -> int:
    if not isinstance(b, dict):
        return 0
    kind = b.get("type")
    if kind == "text":
        return count_tokens(str(b.get("text") or ""))
    if kind == "image":
        return IMAGE_TOKENS
    if kind == "thinking":
        return count_tokens(str(b.get("thinking") or ""))
    if kind == "tool_use":
        return count_tokens(str(b.get("name") or "")) + count_tokens(
            orjson.dumps(b.get("input") or {}).decode()
        )
    if kind == "tool_result":
        return _content_tokens(b.get("content"))
    return 0


def _content_tokens(content: Any) -> int:
    if isinstance(content, str):
        return count_tokens(content)
    if isinstance(content, list):
        return sum(_block_tokens(b) for b in content)
    return 0


def prompt_tokens(body: dict[str, Any]) -> int:
    total = 3
    system = body.get("system")
    if system:
        total += 4 + _content_tokens(system)
    for m in body.get("messages") or ():
        if isinstance(m, dict):
            total += 4 + _content_tokens(m.get("content"))
    return total


def _last_user_raw(messages: list[Any]) -> str:
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, str):
                return c
            if isinstance(c, list):
                return " ".join(
                    str(b.get("text")) for b in c if isinstance(b, dict) and b.get("type") == "text"
                )
    return ""


def expected_message(body: dict[str, Any]) -> ExpectedMessage:
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    assert isinstance(messages, list)
    stops = [s for s in body.get("stop_sequences") or () if isinstance(s, str) and s]
    view: dict[str, Any] = {"messages": messages, "max_tokens": body.get("max_tokens"), "stop": stops}
    exp = expected_completion(view)
    raw = _last_user_raw(messages)
    prompt = " ".join(_ANY_MARKER.sub(" ", raw).split())
    stop_reason = "max_tokens" if exp.finish_reason == "length" else "end_turn"
    stop_sequence: str | None = None
    if stop_reason == "end_turn" and stops:
        full = expected_completion({**view, "stop": []}).text
        hits = [(full.index(s), i, s) for i, s in enumerate(stops) if s in full]
        if hits:
            stop_reason, stop_sequence = "stop_sequence", min(hits)[2]
    tools: list[ToolCall] = []
    for name, raw_input in _TOOL.findall(raw):
        tool_input: Any = {"query": prompt}
        if raw_input:
            try:
                tool_input = orjson.loads(raw_input)
            except orjson.JSONDecodeError:
                tool_input = {"input": raw_input}
        if not isinstance(tool_input, dict):
            tool_input = {"input": tool_input}
        tools.append(ToolCall(name, orjson.dumps(tool_input).decode()))
    if tools:
        stop_reason, stop_sequence = "tool_use", None
    elif "[sim:pause_turn]" in raw:
        stop_reason, stop_sequence = "pause_turn", None
    declared = body.get("tools")
    if not isinstance(declared, list):
        declared = []
    searches = any(isinstance(t, dict) and str(t.get("type", "")).startswith("web_search_") for t in declared)
    web_search = prompt if searches and "[sim:web_search]" in raw else None
    thinking = THINKING_PREFIX + prompt if "[sim:thinking]" in raw else None
    redacted = redacted_data_for(prompt) if "[sim:redacted_thinking]" in raw else None
    p_tokens = prompt_tokens(body)
    script = parse_script(raw)
    cached = min(max(script.cached, 0), p_tokens)
    m = _CACHE_WRITE.search(raw)
    written = min(int(m.group(1)), p_tokens - cached) if m else 0
    thinking_tokens = count_tokens(thinking) if thinking else 0
    tool_tokens = sum(count_tokens(t.name) + count_tokens(t.input_json) for t in tools)
    if web_search is not None:
        tool_tokens += count_tokens(WEB_SEARCH) + count_tokens(orjson.dumps({"query": web_search}).decode())
    return ExpectedMessage(
        thinking=thinking,
        redacted=redacted,
        text=exp.text,
        text_pieces=exp.pieces,
        tools=tuple(tools),
        web_search=web_search,
        stop_reason=stop_reason,
        stop_sequence=stop_sequence,
        prompt_tokens=p_tokens,
        input_tokens=p_tokens - cached - written,
        cache_read_tokens=cached,
        cache_write_tokens=written,
        output_tokens=thinking_tokens + exp.completion_tokens + tool_tokens,
        thinking_tokens=thinking_tokens,
        script=script,
    )


# ------------------------------------------------------------------------------------- HTTP


def message_id() -> str:
    return "msg_01" + "".join(secrets.choice(_ALNUM) for _ in range(22))


def tool_use_id() -> str:
    return "toolu_01" + "".join(secrets.choice(_ALNUM) for _ in range(22))


def request_id() -> str:
    return "req_01" + "".join(secrets.choice(_ALNUM) for _ in range(22))


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    etype = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    body = {"type": "error", "error": {"type": etype, "message": message}}
    return web.Response(
        status=status,
        body=orjson.dumps(body),
        content_type="application/json",
        headers={"request-id": request_id(), **(headers or {})},
    )


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def _drop(request: web.Request) -> None:
    # Close, not abort: what was written is flushed and the rest never comes.
    transport = request.transport
    if transport is not None:
        transport.close()


async def _read(request: web.Request) -> dict[str, Any] | web.Response:
    if not request.headers.get("anthropic-version"):
        return error_response(400, "anthropic-version: header is required")
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return error_response(400, "There was an error parsing the body of your request.")
    if not isinstance(body, dict):
        return error_response(400, "The request body must be a JSON object.")
    for field, kind in (("model", str), ("max_tokens", int), ("messages", list)):
        if not isinstance(body.get(field), kind):
            return error_response(400, f"{field}: Field required")
    if not body["messages"]:
        return error_response(400, "messages: at least one message is required")
    refusal = refusal_for(body)
    if refusal:
        return error_response(400, refusal)
    return body


_DOCS = (
    "Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def refusal_for(body: dict[str, Any]) -> str | None:
    """The message of Anthropic's 400 for a request its documented rules refuse (thinking with a
    forced tool, a tool turn without its thinking block, sampling that thinking or the model
    does not accept, a thinking block whose signature it did not make), or None."""
    temperature, top_p = _number(body.get("temperature")), _number(body.get("top_p"))
    if temperature is not None and temperature > 1:
        return "temperature: Input should be less than or equal to 1"
    if temperature is not None and top_p is not None:
        return "`temperature` and `top_p` cannot both be specified for this model. Please use only one."
    thinking = body.get("thinking")
    on = isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")
    if on:
        if temperature is not None and temperature != 1:
            return f"`temperature` may only be set to 1 when thinking is enabled or in adaptive mode. {_DOCS}"
        if top_p is not None and top_p < 0.95:
            return "`top_p` must be greater than or equal to 0.95 or unset when thinking is enabled"
        if body.get("top_k") is not None:
            return "`top_k` must be unset when thinking is enabled or in adaptive mode"
        choice = body.get("tool_choice")
        if isinstance(choice, dict) and choice.get("type") in ("any", "tool"):
            return "Thinking may not be enabled when tool_choice forces tool use."
    messages = body["messages"]
    for i, m in enumerate(messages):
        content = m.get("content") if isinstance(m, dict) else None
        for j, b in enumerate(content if isinstance(content, list) else ()):
            if not isinstance(b, dict):
                continue
            if b.get("type") == "thinking" and b.get("signature") != signature_for(str(b.get("thinking"))):
                return f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
            if b.get("type") == "redacted_thinking" and not _is_redacted_data(b.get("data")):
                return f"messages.{i}.content.{j}: Invalid `data` in `redacted_thinking` block"
    if on:
        return _unsigned_tool_turn(messages)
    return None


def _is_redacted_data(data: Any) -> bool:
    try:
        return isinstance(data, str) and base64.b64decode(data, validate=True).startswith(b"redacted:")
    except ValueError:
        return False


def _unsigned_tool_turn(messages: list[Any]) -> str | None:
    """With thinking on, the assistant message of the tool turn the request continues must start
    with a thinking block."""
    last = messages[-1]
    content = last.get("content") if isinstance(last, dict) else None
    if not isinstance(content, list) or not any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in content
    ):
        return None
    for i in range(len(messages) - 2, -1, -1):
        m = messages[i]
        if isinstance(m, dict) and m.get("role") == "assistant":
            blocks = m.get("content")
            first = blocks[0] if isinstance(blocks, list) and blocks else None
            found = first.get("type") if isinstance(first, dict) else "text"
            if found in ("thinking", "redacted_thinking"):
                return None
            return (
                f"messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
                f"`{found}`. When `thinking` is enabled, a final `assistant` message must start with a "
                "thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). "
                "We recommend you include thinking blocks from previous turns. To avoid this "
                f"requirement, disable `thinking`. {_DOCS}"
            )
    return None


def _content(exp: ExpectedMessage, ids: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if exp.thinking is not None:
        out.append({"type": "thinking", "thinking": exp.thinking, "signature": exp.signature})
    if exp.redacted is not None:
        out.append({"type": "redacted_thinking", "data": exp.redacted})
    if exp.web_search is not None:
        out += [exp.server_tool_use, exp.web_search_result]
    if exp.text or not exp.tools:
        text: dict[str, Any] = {"type": "text", "text": exp.text}
        if exp.web_search is not None:
            text["citations"] = [exp.citation]
        out.append(text)
    for tid, t in zip(ids, exp.tools, strict=True):
        out.append({"type": "tool_use", "id": tid, "name": t.name, "input": orjson.loads(t.input_json)})
    return out


async def messages(request: web.Request) -> web.StreamResponse:
    parsed = await _read(request)
    if isinstance(parsed, web.Response):
        return parsed
    body = parsed
    exp = expected_message(body)
    script = exp.script
    if script.delay_ms:
        await asyncio.sleep(script.delay_ms / 1000)
    if script.status >= 400:
        headers: dict[str, str] = {}
        if script.status in (429, 529):
            headers["retry-after"] = str(max(1, math.ceil(script.retry_after_ms / 1000)))
            headers["retry-after-ms"] = str(script.retry_after_ms)
        return error_response(script.status, f"Simulated upstream failure ({script.status}).", headers)
    ids = [tool_use_id() for _ in exp.tools]
    mid = message_id()
    model = body["model"]
    headers = {"request-id": request_id()}
    if not body.get("stream"):
        if script.drop_after is not None:
            _drop(request)
            return web.Response()
        out = {
            "id": mid,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": _content(exp, ids),
            "stop_reason": exp.stop_reason,
            "stop_sequence": exp.stop_sequence,
            "usage": exp.usage(),
        }
        return web.Response(body=orjson.dumps(out), content_type="application/json", headers=headers)
    resp = web.StreamResponse(
        headers={**headers, "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
    )
    await resp.prepare(request)
    with contextlib.suppress(ConnectionResetError):  # the caller went away mid-stream
        await _stream(request, resp, exp, ids, mid, model)
    return resp


class _Dropped(Exception):
    pass


async def _stream(
    request: web.Request,
    resp: web.StreamResponse,
    exp: ExpectedMessage,
    ids: list[str],
    mid: str,
    model: str,
) -> None:
    script = exp.script
    delay = script.chunk_delay_ms / 1000
    sent = 0
    pinged = False
    index = 0

    async def delta(idx: int, d: dict[str, Any]) -> None:
        nonlocal sent
        if script.drop_after is not None and sent >= script.drop_after:
            _drop(request)
            raise _Dropped
        if script.error_after is not None and sent >= script.error_after:
            err = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
            await resp.write(_event("error", err))
            await resp.write_eof()
            raise _Dropped
        if delay:
            await asyncio.sleep(delay)
        await resp.write(
            _event("content_block_delta", {"type": "content_block_delta", "index": idx, "delta": d})
        )
        sent += 1

    async def start(block: dict[str, Any]) -> int:
        nonlocal pinged, index
        idx = index
        index += 1
        await resp.write(
            _event(
                "content_block_start", {"type": "content_block_start", "index": idx, "content_block": block}
            )
        )
        if not pinged:
            pinged = True
            await resp.write(_event("ping", {"type": "ping"}))
        return idx

    async def stop(idx: int) -> None:
        await resp.write(_event("content_block_stop", {"type": "content_block_stop", "index": idx}))

    message: dict[str, Any] = {
        "id": mid,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": exp.usage(output_tokens=1),
    }
    await resp.write(_event("message_start", {"type": "message_start", "message": message}))
    try:
        if exp.thinking is not None:
            idx = await start({"type": "thinking", "thinking": "", "signature": ""})
            for piece in exp.thinking_pieces:
                await delta(idx, {"type": "thinking_delta", "thinking": piece})
            await delta(idx, {"type": "signature_delta", "signature": exp.signature})
            await stop(idx)
        if exp.redacted is not None:
            await stop(await start({"type": "redacted_thinking", "data": exp.redacted}))
        if exp.web_search is not None:
            idx = await start({**exp.server_tool_use, "input": {}})
            js = orjson.dumps(exp.server_tool_use["input"]).decode()
            for i in range(0, len(js), TOOL_INPUT_PIECE):
                await delta(idx, {"type": "input_json_delta", "partial_json": js[i : i + TOOL_INPUT_PIECE]})
            await stop(idx)
            await stop(await start(exp.web_search_result))
        if exp.text or not exp.tools:
            idx = await start({"type": "text", "text": ""})
            if exp.web_search is not None:
                await delta(idx, {"type": "citations_delta", "citation": exp.citation})
            for piece in exp.text_pieces:
                await delta(idx, {"type": "text_delta", "text": piece})
            await stop(idx)
        for tid, tool in zip(ids, exp.tools, strict=True):
            idx = await start({"type": "tool_use", "id": tid, "name": tool.name, "input": {}})
            js = tool.input_json
            for i in range(0, len(js), TOOL_INPUT_PIECE):
                await delta(idx, {"type": "input_json_delta", "partial_json": js[i : i + TOOL_INPUT_PIECE]})
            await stop(idx)
        if script.drop_after is not None and script.drop_after <= sent:
            _drop(request)
            return
    except _Dropped:
        return
    final = {
        "type": "message_delta",
        "delta": {"stop_reason": exp.stop_reason, "stop_sequence": exp.stop_sequence},
        "usage": exp.usage(),
    }
    await resp.write(_event("message_delta", final))
    await resp.write(_event("message_stop", {"type": "message_stop"}))
    await resp.write_eof()


async def list_models(_: web.Request) -> web.Response:
    data = [
        {"type": "model", "id": mid, "display_name": name, "created_at": created}
        for mid, name, created in ANTHROPIC_MODELS
    ]
    body = {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def register(app: web.Application) -> None:
    """Anthropic's routes; registered before the `/{vendor}/v1/…` OpenAI-compatible ones."""
    app.router.add_post("/anthropic/v1/messages", messages)
    app.router.add_get("/anthropic/v1/models", list_models)
