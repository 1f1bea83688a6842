"""The provider simulator's HTTP server: each vendor under its own path prefix, in that vendor's
wire format.

- `POST /openai/v1/chat/completions`, `GET /openai/v1/models`: OpenAI Chat Completions.
- `POST /deepseek/chat/completions`, `GET /deepseek/models` (also under `/deepseek/v1/`): DeepSeek,
  OpenAI-compatible plus `prompt_cache_hit_tokens` / `prompt_cache_miss_tokens` in usage.
- `POST /{name}/v1/chat/completions`, `GET /{name}/v1/models`: any OpenAI-compatible vendor.
- In every chat format, `[sim:tool=NAME]` / `[sim:tool=NAME:{json}]` (repeatable) add
  `tool_calls` after the text (`finish_reason: "tool_calls"`; streamed as OpenAI does: `id`,
  `type` and `name` on a call's first delta, then its arguments in 8-character pieces, calls
  keyed by `index`), and `[sim:thinking]` reasons `"Thinking about: " + prompt` first: sent as
  `reasoning_content` (one word per delta) by every vendor but `openai`, whose Chat Completions
  API never shows reasoning. Either way its words are `completion_tokens_details.reasoning_tokens`,
  included in `completion_tokens` with the tool calls' name and argument words
  (`crossmodel_simulator.responses.reply_for_chat_view` predicts it all).
- `/openai/v1` refuses, with OpenAI's 400, what OpenAI refuses and a gateway could send by
  mistake (`crossmodel_simulator.openai_rules`): reasoning settings for a model without
  reasoning, an effort an o-series model lacks, sampling other than the default or `stop` on a
  reasoning model, a `safety_identifier` over 64 characters, and anything but text in a `tool`
  message. `/deepseek` refuses a `json_schema` response format and, in thinking mode, a
  forced `tool_choice`, as DeepSeek does.
- `POST /openai/v1/responses`: OpenAI Responses (`crossmodel_simulator.responses`).
- `POST /gemini/v1beta/models/{model}:generateContent` / `:streamGenerateContent?alt=sse`: Gemini
  (`crossmodel_simulator.gemini`; also under `/gemini/v1/`).
- `GET /healthz`: liveness. `GET /_sim/stats`: counters. `GET /_sim/requests?contains=TEXT`: the
  last requests received (up to `RECORDED`) whose body contains TEXT, as `{path, query,
  headers, body}`, so tests check what a gateway really sent upstream (credential headers are
  not kept).

Replies and usage follow `crossmodel_simulator.script` (deterministic; scriptable by markers).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import math
import secrets
import string
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from crossmodel_simulator import anthropic, gemini, openai_rules, responses
from crossmodel_simulator.responses import ARGUMENT_PIECE, Reply, reply_for_chat_view
from crossmodel_simulator.script import Expected, expected_completion, last_user_text, openai_logprobs

_ALNUM = string.ascii_letters + string.digits
STATS = web.AppKey("stats", dict[str, int])
RECORDED = 1024
REQUESTS = web.AppKey("requests", collections.deque[tuple[str, str, dict[str, str], bytes]])
_SECRET_HEADERS = frozenset({"authorization", "x-api-key", "x-goog-api-key"})

OPENAI_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1", "gpt-4.1-mini", "o4-mini", "gpt-5")
DEEPSEEK_MODELS = ("deepseek-chat", "deepseek-reasoner", "deepseek-v4-pro")

_STATUS_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", None),
    503: ("server_error", "overloaded"),
}


def completion_id() -> str:
    """`chatcmpl-` + 29 alphanumerics, the shape OpenAI uses."""
    return "chatcmpl-" + "".join(secrets.choice(_ALNUM) for _ in range(29))


def fingerprint(model: str) -> str:
    return "fp_" + hashlib.sha256(model.encode()).hexdigest()[:10]


def error_response(
    status: int,
    message: str,
    *,
    param: str | None = None,
    headers: dict[str, str] | None = None,
    code: str | None = None,
) -> web.Response:
    etype, default_code = _STATUS_TYPES.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None)
    )
    code = code or default_code
    body = {"error": {"message": message, "type": etype, "param": param, "code": code}}
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def usage_body(exp: Expected, vendor: str, reply: Reply | None = None, choices: int = 1) -> dict[str, Any]:
    """Usage of `choices` answers (chat `n`), each the same reply."""
    completion = (reply.output_tokens if reply is not None else exp.completion_tokens) * choices
    usage: dict[str, Any] = {
        "prompt_tokens": exp.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": exp.prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": exp.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reply.thinking_tokens * choices if reply is not None else 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    if vendor == "deepseek":
        usage["prompt_cache_hit_tokens"] = exp.cached_tokens
        usage["prompt_cache_miss_tokens"] = exp.prompt_tokens - exp.cached_tokens
    return usage


async def _read_body(request: web.Request) -> dict[str, Any] | web.Response:
    raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return error_response(400, "We could not parse the JSON body of your request.")
    if not isinstance(body, dict):
        return error_response(400, "The request body must be a JSON object.")
    if not isinstance(body.get("model"), str):
        return error_response(400, "Missing required parameter: 'model'.", param="model")
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        return error_response(400, "Missing required parameter: 'messages'.", param="messages")
    return body


def _drop(request: web.Request) -> None:
    """End the connection mid-response: what was written is flushed (close, not abort), the
    rest never comes, so the client sees a truncated body."""
    transport = request.transport
    if transport is not None:
        transport.close()


async def chat_completions(request: web.Request) -> web.StreamResponse:
    vendor = request.path.split("/", 2)[1]
    parsed = await _read_body(request)
    if isinstance(parsed, web.Response):
        return parsed
    body = parsed
    request.app[STATS]["requests"] += 1
    if vendor in ("openai", "deepseek"):
        refusal = (openai_rules.chat_refusal if vendor == "openai" else openai_rules.deepseek_refusal)(body)
        if refusal is not None:
            return error_response(400, refusal[0], param=refusal[1] or None, code=refusal[2])
    exp = expected_completion(body)
    script = exp.script
    if script.delay_ms:
        await asyncio.sleep(script.delay_ms / 1000)
    if script.status >= 400:
        headers: dict[str, str] = {}
        if script.status in (429, 503):
            headers["retry-after"] = str(max(1, math.ceil(script.retry_after_ms / 1000)))
            headers["retry-after-ms"] = str(script.retry_after_ms)
        return error_response(
            script.status, f"Simulated upstream failure ({script.status}).", headers=headers
        )
    raw_prompt = last_user_text(body["messages"])
    # Only scripted requests pay for the second look (the benchmark's plain ones do not).
    reply = reply_for_chat_view(body, raw_prompt) if "[sim:t" in raw_prompt else None
    call_ids = ["call_" + secrets.token_hex(12) for _ in (reply.tools if reply is not None else ())]
    finish = exp.finish_reason
    if call_ids and finish == "stop":
        finish = "tool_calls"
    model = body["model"]
    cid = completion_id()
    created = int(time.time())
    fp = fingerprint(model)
    headers = {"x-request-id": "req_" + secrets.token_hex(16)}
    top = body.get("top_logprobs")
    logprobs = (
        openai_logprobs(exp.pieces, top if isinstance(top, int) else 0)
        if body.get("logprobs") is True
        else None
    )
    n = body.get("n")
    choices = n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1
    if not body.get("stream"):
        if script.drop_after is not None:
            _drop(request)
            return web.Response()
        message: dict[str, Any] = {
            "role": "assistant",
            "content": exp.text,
            "refusal": None,
            "annotations": [],
        }
        if reply is not None and reply.thinking is not None and vendor != "openai":
            message["reasoning_content"] = reply.thinking
        if reply is not None and reply.tools:
            message["tool_calls"] = [
                {"id": call_id, "type": "function", "function": {"name": t.name, "arguments": t.arguments}}
                for call_id, t in zip(call_ids, reply.tools, strict=True)
            ]
        out: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": i,
                    "message": message,
                    "logprobs": None if logprobs is None else {"content": logprobs, "refusal": None},
                    "finish_reason": finish,
                }
                for i in range(choices)
            ],
            "service_tier": "default",
            "system_fingerprint": fp,
        }
        if not script.no_usage:
            out["usage"] = usage_body(exp, vendor, reply, choices)
        return web.Response(body=orjson.dumps(out), content_type="application/json", headers=headers)

    so = body.get("stream_options")
    include_usage = isinstance(so, dict) and so.get("include_usage") is True and not script.no_usage
    resp = web.StreamResponse(
        headers={**headers, "content-type": "text/event-stream", "cache-control": "no-cache"}
    )
    await resp.prepare(request)

    # What every chunk of this stream starts with, the final usage chunk included.
    head = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "service_tier": "default",
        "system_fingerprint": fp,
    }

    def chunk(
        delta: dict[str, Any], finish: str | None = None, lp: list[dict[str, Any]] | None = None
    ) -> bytes:
        """One chunk per choice (chat `n`), in index order."""
        out = []
        for i in range(choices):
            c: dict[str, Any] = {
                **head,
                "choices": [
                    {
                        "index": i,
                        "delta": delta,
                        "logprobs": None if lp is None else {"content": lp, "refusal": None},
                        "finish_reason": finish,
                    }
                ],
            }
            if include_usage:
                c["usage"] = None
            out.append(b"data: " + orjson.dumps(c) + b"\n\n")
        return b"".join(out)

    try:
        await _stream_body(
            request,
            resp,
            exp,
            chunk,
            vendor,
            head,
            include_usage,
            reply,
            call_ids,
            finish,
            logprobs,
            choices,
        )
    except ConnectionResetError:
        # The caller went away mid-stream (what a gateway does when its own client cancels).
        request.app[STATS]["client_disconnects"] += 1
    except asyncio.CancelledError:
        request.app[STATS]["client_disconnects"] += 1
        raise
    return resp


async def _stream_body(
    request: web.Request,
    resp: web.StreamResponse,
    exp: Expected,
    chunk: Callable[..., bytes],
    vendor: str,
    head: dict[str, Any],
    include_usage: bool,
    reply: Reply | None,
    call_ids: list[str],
    finish: str,
    logprobs: list[dict[str, Any]] | None,
    choices: int = 1,
) -> None:
    script = exp.script
    delay = script.chunk_delay_ms / 1000
    await resp.write(chunk({"role": "assistant", "content": "", "refusal": None}))
    # Content deltas in order: reasoning words, reply words, tool calls (header, argument pieces).
    deltas: list[dict[str, Any]] = []
    if reply is not None and reply.thinking is not None and vendor != "openai":
        deltas += [{"reasoning_content": p} for p in reply.thinking_pieces]
    first_content = len(deltas)
    deltas += [{"content": p} for p in exp.pieces]
    for i, (call_id, t) in enumerate(zip(call_ids, reply.tools if reply is not None else (), strict=True)):
        fn = {"name": t.name, "arguments": ""}
        deltas.append({"tool_calls": [{"index": i, "id": call_id, "type": "function", "function": fn}]})
        for k in range(0, len(t.arguments), ARGUMENT_PIECE):
            piece = {"arguments": t.arguments[k : k + ARGUMENT_PIECE]}
            deltas.append({"tool_calls": [{"index": i, "function": piece}]})
    for n, delta in enumerate(deltas):
        if script.drop_after is not None and n >= script.drop_after:
            _drop(request)
            return
        if script.error_after is not None and n >= script.error_after:
            err = {
                "error": {
                    "message": "Simulated failure mid-stream.",
                    "type": "server_error",
                    "param": None,
                    "code": None,
                }
            }
            await resp.write(b"data: " + orjson.dumps(err) + b"\n\n")
            await resp.write_eof()
            return
        if delay:
            await asyncio.sleep(delay)
        k = n - first_content
        lp = [logprobs[k]] if logprobs is not None and 0 <= k < len(logprobs) else None
        await resp.write(chunk(delta, None, lp))
    if script.drop_after is not None and script.drop_after <= len(deltas):
        _drop(request)
        return
    await resp.write(chunk({}, finish))
    if include_usage:
        final = {**head, "choices": [], "usage": usage_body(exp, vendor, reply, choices)}
        await resp.write(b"data: " + orjson.dumps(final) + b"\n\n")
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()


async def list_models(request: web.Request) -> web.Response:
    vendor = request.path.split("/", 2)[1]
    names = (
        OPENAI_MODELS
        if vendor == "openai"
        else DEEPSEEK_MODELS
        if vendor == "deepseek"
        else (f"{vendor}-model",)
    )
    owner = "openai" if vendor == "openai" else vendor
    data = [{"id": n, "object": "model", "created": 1_700_000_000, "owned_by": owner} for n in names]
    return web.Response(body=orjson.dumps({"object": "list", "data": data}), content_type="application/json")


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


async def stats(request: web.Request) -> web.Response:
    """Counters for tests: requests served and streams the caller abandoned."""
    return web.Response(body=orjson.dumps(request.app[STATS]), content_type="application/json")


@web.middleware
async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method == "POST":
        body = await request.read()  # aiohttp keeps it for the handler's own read
        headers = {k.lower(): v for k, v in request.headers.items() if k.lower() not in _SECRET_HEADERS}
        request.app[REQUESTS].append((request.path, request.query_string, headers, body))
    return await handler(request)


def _json_or_text(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode(errors="replace")


async def recorded(request: web.Request) -> web.Response:
    needle = request.query.get("contains", "").encode()
    out = [
        {"path": path, "query": query, "headers": headers, "body": _json_or_text(body)}
        for path, query, headers, body in request.app[REQUESTS]
        if needle in body
    ]
    return web.Response(body=orjson.dumps(out), content_type="application/json")


def create_app() -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[record])
    app[STATS] = {"requests": 0, "client_disconnects": 0}
    app[REQUESTS] = collections.deque(maxlen=RECORDED)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/_sim/stats", stats)
    app.router.add_get("/_sim/requests", recorded)
    anthropic.register(app)
    responses.register(app)
    gemini.register(app)
    app.router.add_post("/deepseek/chat/completions", chat_completions)
    app.router.add_get("/deepseek/models", list_models)
    app.router.add_post("/{vendor}/v1/chat/completions", chat_completions)
    app.router.add_get("/{vendor}/v1/models", list_models)
    return app
