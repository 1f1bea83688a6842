"""OpenAI Responses wire format: `POST /openai/v1/responses` (plain and streamed), answered the
way https://api.openai.com/v1/responses answers (the `openai` SDK's base URL is
`http://<simulator>/openai/v1`).

The reply follows the chat rule of `crossmodel_simulator.script`, applied to a chat view of the
request: `instructions` is a system message, `input` items are messages (`function_call` items are
assistant tool calls, `function_call_output` items are tool messages, reasoning summaries are
assistant text), `max_output_tokens` plays `max_tokens`. The same failure markers apply.

Token counts (one token per whitespace-separated word, as in `script`)
----------------------------------------------------------------------
- `input_tokens` = the chat rule's `prompt_tokens` of that view; `[sim:cached=N]` reports
  `min(N, input_tokens)` as `input_tokens_details.cached_tokens`.
- `output_tokens` = words of the reasoning + words of the reply + for each tool call the words
  of its name and of its compact JSON arguments; `output_tokens_details.reasoning_tokens` = words
  of the reasoning. Responses always reports usage, so `[sim:no_usage]` does not apply.

Markers (anywhere in the last user message, besides those of `script`), the same as the
Anthropic format's
-----------------------------------------------------------------------------------------
- `[sim:thinking]`: a `reasoning` item first. Its reasoning is `"Thinking about: " + prompt`; the
  summary shows it only when the request asked `reasoning.summary`, and `encrypted_content`
  comes only when `include` asks `reasoning.encrypted_content` (as OpenAI does).
- `[sim:tool=NAME]` or `[sim:tool=NAME:{"json":"object"}]` (repeatable: parallel calls): a
  `function_call` item after the message, arguments `{"query": prompt}` by default; streamed as
  `function_call_arguments.delta` pieces of 8 characters. When the request declares NAME as a
  `custom` tool (Codex's freeform `apply_patch` is one), the call is a `custom_tool_call` whose
  `input` is that same text, streamed as `custom_tool_call_input.delta` pieces and
  `custom_tool_call_input.done`.

Streams send OpenAI's event sequence (`response.created`, `response.in_progress`, per item
`output_item.added` … `output_item.done`, `response.completed` or `response.incomplete`) with
increasing `sequence_number`. `[sim:drop_after=N]` and `[sim:error_after=N]` count content deltas
(summary text, output text, argument pieces); `[sim:error_after=N]` ends with `response.failed`.
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
import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from crossmodel_simulator import openai_rules
from crossmodel_simulator.script import (
    Script,
    count_tokens,
    expected_completion,
    openai_logprobs,
    parse_script,
)

_ALNUM = string.ascii_letters + string.digits
_TOOL = re.compile(r"\[sim:tool=([^\]:]+)(?::([^\]]*))?\]")
_ANY_MARKER = re.compile(r"\[sim:[a-z_]+(?:=[^\]]*)?\]")
THINKING_PREFIX = "Thinking about: "
ARGUMENT_PIECE = 8

_STATUS_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", "overloaded"),
}


# ------------------------------------------------------------------------------------ the rule


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    arguments: str  # compact JSON object


@dataclass(frozen=True, slots=True)
class Reply:
    """What the simulator answers to a request in any non-chat format (no failure scripted)."""

    thinking: str | None
    text: str
    pieces: tuple[str, ...]
    tools: tuple[ToolCall, ...]
    truncated: bool  # cut by the output token limit
    prompt_tokens: int
    cached_tokens: int
    reply_tokens: int  # reply words + tool call words
    thinking_tokens: int
    script: Script

    @property
    def output_tokens(self) -> int:
        return self.reply_tokens + self.thinking_tokens

    @property
    def thinking_pieces(self) -> tuple[str, ...]:
        return _pieces(self.thinking or "")


def _pieces(text: str) -> tuple[str, ...]:
    words = text.split()
    return tuple(w if i == 0 else " " + w for i, w in enumerate(words))


def signature_for(text: str) -> str:
    """A deterministic stand-in for a vendor's opaque reasoning state."""
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def reply_for_chat_view(view: dict[str, Any], raw_prompt: str) -> Reply:
    """The reply for a request already turned into the chat shape `script` reads
    (`messages`, `max_tokens`, `stop`); `raw_prompt` is the last user text, markers included."""
    exp = expected_completion(view)
    prompt = " ".join(_ANY_MARKER.sub(" ", raw_prompt).split())
    tools: list[ToolCall] = []
    for name, raw_args in _TOOL.findall(raw_prompt):
        args: Any = {"query": prompt}
        if raw_args:
            try:
                args = orjson.loads(raw_args)
            except orjson.JSONDecodeError:
                args = {"input": raw_args}
        if not isinstance(args, dict):
            args = {"input": args}
        tools.append(ToolCall(name, orjson.dumps(args).decode()))
    thinking = THINKING_PREFIX + prompt if "[sim:thinking]" in raw_prompt else None
    tool_tokens = sum(count_tokens(t.name) + count_tokens(t.arguments) for t in tools)
    return Reply(
        thinking=thinking,
        text=exp.text,
        pieces=exp.pieces,
        tools=tuple(tools),
        truncated=exp.finish_reason == "length",
        prompt_tokens=exp.prompt_tokens,
        cached_tokens=exp.cached_tokens,
        reply_tokens=exp.completion_tokens + tool_tokens,
        thinking_tokens=count_tokens(thinking) if thinking else 0,
        script=parse_script(raw_prompt),
    )


def _texts(content: Any, kinds: tuple[str, ...]) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    out: list[dict[str, Any]] = []
    for p in content if isinstance(content, list) else ():
        if not isinstance(p, dict):
            continue
        if p.get("type") in kinds and isinstance(p.get("text"), str):
            out.append({"type": "text", "text": p["text"]})
        elif p.get("type") == "input_image":
            out.append({"type": "image_url"})
    return out


def chat_view(body: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A Responses body as the chat shape `script` reads, and the last user text."""
    messages: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str):
        messages.append({"role": "system", "content": body["instructions"]})
    raw = body.get("input")
    last_user = ""
    items = (
        [{"role": "user", "content": raw}] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    )
    for item in items:
        if not isinstance(item, dict):
            continue
        kind = item.get("type") or "message"
        if kind == "message":
            role = item.get("role")
            content = _texts(item.get("content"), ("input_text", "output_text"))
            messages.append({"role": role, "content": content})
            if role == "user":
                last_user = " ".join(c["text"] for c in content if "text" in c)
        elif kind == "function_call":
            call = {"function": {"name": item.get("name"), "arguments": item.get("arguments")}}
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            out = item.get("output")
            messages.append({"role": "tool", "content": _texts(out, ("input_text",))})
        elif kind == "reasoning":
            summary = " ".join(
                str(s.get("text") or "") for s in item.get("summary") or () if isinstance(s, dict)
            )
            messages.append({"role": "assistant", "content": summary})
    return {"messages": messages, "max_tokens": body.get("max_output_tokens")}, last_user


def expected_response(body: dict[str, Any]) -> Reply:
    view, raw = chat_view(body)
    return reply_for_chat_view(view, raw)


# ------------------------------------------------------------------------------------- HTTP


def _id(prefix: str) -> str:
    return prefix + secrets.token_hex(24)


def call_id() -> str:
    return "call_" + "".join(secrets.choice(_ALNUM) for _ in range(24))


def error_response(
    status: int, message: str, *, param: str | None = None, retry_after_ms: int = 0, code: str | None = None
) -> web.Response:
    etype, default_code = _STATUS_TYPES.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None)
    )
    code = code or default_code
    headers: dict[str, str] = {}
    if status in (429, 503):
        headers["retry-after"] = str(max(1, math.ceil(retry_after_ms / 1000)))
        headers["retry-after-ms"] = str(retry_after_ms)
    body = {"error": {"message": message, "type": etype, "param": param, "code": code}}
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def _drop(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.close()


class _Builder:
    """The Response object and its items, for plain answers and for the stream's events."""

    def __init__(self, body: dict[str, Any], reply: Reply) -> None:
        self.body = body
        self.reply = reply
        self.id = _id("resp_")
        self.created = int(time.time())
        reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else {}
        assert isinstance(reasoning, dict)
        self.summary = bool(reasoning.get("summary") or reasoning.get("generate_summary"))
        include = body.get("include") if isinstance(body.get("include"), list) else []
        assert isinstance(include, list)
        self.encrypted = "reasoning.encrypted_content" in include
        self.logprobs = "message.output_text.logprobs" in include
        top = body.get("top_logprobs")
        self.top = top if isinstance(top, int) and not isinstance(top, bool) else 0
        self.rs_id, self.msg_id = _id("rs_"), _id("msg_")
        tools = body.get("tools") if isinstance(body.get("tools"), list) else []
        assert isinstance(tools, list)
        self.custom = {t.get("name") for t in tools if isinstance(t, dict) and t.get("type") == "custom"}
        self.calls = [(_id("ctc_" if t.name in self.custom else "fc_"), call_id(), t) for t in reply.tools]

    @property
    def status(self) -> str:
        return "incomplete" if self.reply.truncated else "completed"

    def shell(self, status: str) -> dict[str, Any]:
        b = self.body
        reasoning = b.get("reasoning") if isinstance(b.get("reasoning"), dict) else None
        text = b.get("text") if isinstance(b.get("text"), dict) else {"format": {"type": "text"}}
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": None,
            "instructions": b.get("instructions"),
            "max_output_tokens": b.get("max_output_tokens"),
            "max_tool_calls": None,
            "model": b["model"],
            "output": [],
            "parallel_tool_calls": b.get("parallel_tool_calls", True),
            "previous_response_id": b.get("previous_response_id"),
            "prompt_cache_key": None,
            "reasoning": {
                "effort": (reasoning or {}).get("effort"),
                "summary": (reasoning or {}).get("summary"),
            },
            "safety_identifier": b.get("safety_identifier"),
            "service_tier": "default",
            "store": b.get("store", True),
            "temperature": b.get("temperature", 1.0),
            "text": text,
            "tool_choice": b.get("tool_choice", "auto"),
            # Function tools come back with `strict` as OpenAI applied it (on unless turned off).
            "tools": [
                {**t, "strict": t.get("strict", True)}
                if isinstance(t, dict) and t.get("type") == "function"
                else t
                for t in b.get("tools") or []
            ],
            "top_logprobs": self.top,
            "top_p": b.get("top_p", 1.0),
            "truncation": b.get("truncation", "disabled"),
            "usage": None,
            "user": b.get("user"),
            "metadata": b.get("metadata") or {},
        }

    def usage(self) -> dict[str, Any]:
        r = self.reply
        return {
            "input_tokens": r.prompt_tokens,
            "input_tokens_details": {"cached_tokens": r.cached_tokens, "cache_write_tokens": 0},
            "output_tokens": r.output_tokens,
            "output_tokens_details": {"reasoning_tokens": r.thinking_tokens},
            "total_tokens": r.prompt_tokens + r.output_tokens,
        }

    def reasoning_item(self, summary_text: str | None) -> dict[str, Any]:
        item: dict[str, Any] = {"id": self.rs_id, "type": "reasoning", "summary": []}
        if summary_text is not None and self.summary:
            item["summary"] = [{"type": "summary_text", "text": summary_text}]
        if self.encrypted:
            item["encrypted_content"] = signature_for(self.reply.thinking or "")
        return item

    def text_logprobs(self, *, with_bytes: bool = True) -> list[dict[str, Any]]:
        """The reply's token log probabilities when `include` asked for them, else none."""
        return openai_logprobs(self.reply.pieces, self.top, with_bytes=with_bytes) if self.logprobs else []

    def message_item(self, text: str | None, status: str) -> dict[str, Any]:
        content = (
            []
            if text is None
            else [{"type": "output_text", "annotations": [], "logprobs": self.text_logprobs(), "text": text}]
        )
        return {
            "id": self.msg_id,
            "type": "message",
            "status": status,
            "content": content,
            "role": "assistant",
        }

    def call_item(self, n: int, arguments: str, status: str) -> dict[str, Any]:
        fc_id, cid, tool = self.calls[n]
        if tool.name in self.custom:
            return {
                "type": "custom_tool_call",
                "id": fc_id,
                "call_id": cid,
                "input": arguments,
                "name": tool.name,
            }
        return {
            "id": fc_id,
            "type": "function_call",
            "status": status,
            "arguments": arguments,
            "call_id": cid,
            "name": tool.name,
        }

    def final(self) -> dict[str, Any]:
        status = self.status
        item_status = "completed" if status == "completed" else "incomplete"
        out: list[dict[str, Any]] = []
        if self.reply.thinking is not None:
            out.append(self.reasoning_item(self.reply.thinking))
        if self.reply.text or not self.calls:
            out.append(self.message_item(self.reply.text, item_status))
        out.extend(self.call_item(n, t.arguments, item_status) for n, (_, _, t) in enumerate(self.calls))
        resp = self.shell(status)
        resp["output"] = out
        resp["usage"] = self.usage()
        if status == "incomplete":
            resp["incomplete_details"] = {"reason": "max_output_tokens"}
        else:
            resp["completed_at"] = self.created
        return resp


class _Events:
    def __init__(self, resp: web.StreamResponse, script: Script) -> None:
        self.resp = resp
        self.seq = 0
        self.content = 0  # content deltas sent
        self.script = script

    async def send(self, kind: str, payload: dict[str, Any]) -> None:
        data = orjson.dumps({"type": kind, "sequence_number": self.seq, **payload})
        self.seq += 1
        await self.resp.write(b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n")


class _Stop(Exception):
    """The scripted failure ended the stream."""


async def _delta(
    request: web.Request, ev: _Events, builder: _Builder, kind: str, payload: dict[str, Any]
) -> None:
    script = ev.script
    if script.drop_after is not None and ev.content >= script.drop_after:
        _drop(request)
        raise _Stop
    if script.error_after is not None and ev.content >= script.error_after:
        failed = builder.shell("failed")
        failed["error"] = {"code": "server_error", "message": "Simulated failure mid-stream."}
        await ev.send("response.failed", {"response": failed})
        await ev.resp.write_eof()
        raise _Stop
    if script.chunk_delay_ms:
        await asyncio.sleep(script.chunk_delay_ms / 1000)
    ev.content += 1
    await ev.send(kind, payload)


async def _stream(request: web.Request, ev: _Events, b: _Builder) -> None:
    reply = b.reply
    shell = b.shell("in_progress")
    await ev.send("response.created", {"response": shell})
    await ev.send("response.in_progress", {"response": shell})
    idx = 0
    if reply.thinking is not None:
        await ev.send("response.output_item.added", {"output_index": idx, "item": b.reasoning_item(None)})
        if b.summary:
            common = {"item_id": b.rs_id, "output_index": idx, "summary_index": 0}
            await ev.send(
                "response.reasoning_summary_part.added",
                {**common, "part": {"type": "summary_text", "text": ""}},
            )
            for piece in reply.thinking_pieces:
                await _delta(
                    request, ev, b, "response.reasoning_summary_text.delta", {**common, "delta": piece}
                )
            await ev.send("response.reasoning_summary_text.done", {**common, "text": reply.thinking})
            done_part = {"type": "summary_text", "text": reply.thinking}
            await ev.send("response.reasoning_summary_part.done", {**common, "part": done_part})
        await ev.send(
            "response.output_item.done", {"output_index": idx, "item": b.reasoning_item(reply.thinking)}
        )
        idx += 1
    status = "completed" if b.status == "completed" else "incomplete"
    if reply.text or not b.calls:
        await ev.send(
            "response.output_item.added", {"output_index": idx, "item": b.message_item(None, "in_progress")}
        )
        common = {"item_id": b.msg_id, "output_index": idx, "content_index": 0}
        empty = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
        await ev.send("response.content_part.added", {**common, "part": empty})
        lps = b.text_logprobs(with_bytes=False)
        for i, piece in enumerate(reply.pieces):
            lp = lps[i : i + 1]
            await _delta(
                request, ev, b, "response.output_text.delta", {**common, "delta": piece, "logprobs": lp}
            )
        await ev.send("response.output_text.done", {**common, "text": reply.text, "logprobs": lps})
        done = {**empty, "text": reply.text, "logprobs": b.text_logprobs()}
        await ev.send("response.content_part.done", {**common, "part": done})
        await ev.send(
            "response.output_item.done", {"output_index": idx, "item": b.message_item(reply.text, status)}
        )
        idx += 1
    for n, (fc_id, _, tool) in enumerate(b.calls):
        await ev.send(
            "response.output_item.added", {"output_index": idx, "item": b.call_item(n, "", "in_progress")}
        )
        args = tool.arguments
        custom = tool.name in b.custom
        kind = "response.custom_tool_call_input" if custom else "response.function_call_arguments"
        for i in range(0, len(args), ARGUMENT_PIECE):
            payload = {"item_id": fc_id, "output_index": idx, "delta": args[i : i + ARGUMENT_PIECE]}
            await _delta(request, ev, b, kind + ".delta", payload)
        if custom:
            await ev.send(kind + ".done", {"item_id": fc_id, "output_index": idx, "input": args})
        else:
            await ev.send(
                kind + ".done", {"item_id": fc_id, "name": tool.name, "output_index": idx, "arguments": args}
            )
        await ev.send(
            "response.output_item.done", {"output_index": idx, "item": b.call_item(n, args, status)}
        )
        idx += 1
    if ev.script.drop_after is not None and ev.content >= ev.script.drop_after:
        _drop(request)
        return
    final = b.final()
    await ev.send(
        "response.completed" if b.status == "completed" else "response.incomplete", {"response": final}
    )
    await ev.resp.write_eof()


async def create_response(request: web.Request) -> web.StreamResponse:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return error_response(400, "We could not parse the JSON body of your request.")
    if not isinstance(body, dict):
        return error_response(400, "The request body must be a JSON object.")
    if not isinstance(body.get("model"), str):
        return error_response(400, "Missing required parameter: 'model'.", param="model")
    if not isinstance(body.get("input"), str | list):
        return error_response(400, "Missing required parameter: 'input'.", param="input")
    refusal = openai_rules.responses_refusal(body)
    if refusal is not None:
        message, param, code = refusal
        return error_response(400, message, param=param, code=code)
    reply = expected_response(body)
    script = reply.script
    if script.delay_ms:
        await asyncio.sleep(script.delay_ms / 1000)
    if script.status >= 400:
        return error_response(
            script.status,
            f"Simulated upstream failure ({script.status}).",
            retry_after_ms=script.retry_after_ms,
        )
    builder = _Builder(body, reply)
    headers = {"x-request-id": "req_" + secrets.token_hex(16)}
    if not body.get("stream"):
        if script.drop_after is not None:
            _drop(request)
            return web.Response()
        return web.Response(
            body=orjson.dumps(builder.final()), content_type="application/json", headers=headers
        )
    resp = web.StreamResponse(
        headers={**headers, "content-type": "text/event-stream", "cache-control": "no-cache"}
    )
    await resp.prepare(request)
    # A scripted failure, or the caller went away mid-stream.
    with contextlib.suppress(_Stop, ConnectionResetError):
        await _stream(request, _Events(resp, script), builder)
    return resp


def register(app: web.Application) -> None:
    """The Responses route; registered before the `/{vendor}/v1/…` OpenAI-compatible ones."""
    app.router.add_post("/openai/v1/responses", create_response)
