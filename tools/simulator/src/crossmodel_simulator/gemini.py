"""Gemini API wire format: `POST /gemini/v1beta/models/{model}:generateContent` and
`:streamGenerateContent?alt=sse`, answered the way https://generativelanguage.googleapis.com
answers (base URL `http://<simulator>/gemini`). The same routes answer under `/gemini/v1/` too,
as Google's do (the router speaks v1beta; Google's own SDK defaults to v1). The key is read from
`x-goog-api-key` (or `?key=`); a request without one is refused with 403 `PERMISSION_DENIED`, as
Google refuses it.

The reply follows the chat rule of `crossmodel_simulator.script` applied to a chat view of the
request: `systemInstruction` is a system message, `model` turns are assistant messages
(`functionCall` parts are tool calls), a `user` turn made only of `functionResponse` parts is a
tool message (a turn mixing them with text is a tool message, then a user message),
`generationConfig.maxOutputTokens` plays `max_tokens` and `stopSequences` plays
`stop`. Fields are read by their lowerCamelCase or their proto (snake_case) names, as Google
reads them. Markers and counts are those of the Responses format (`crossmodel_simulator.responses`):

- `promptTokenCount` = the chat rule's prompt tokens; `cachedContentTokenCount` = `[sim:cached=N]`
  (capped); `candidatesTokenCount` = words of the reply + words of each call's name and compact
  JSON args; `thoughtsTokenCount` = words of the thoughts (`[sim:thinking]`); `totalTokenCount`
  = prompt + candidates + thoughts. `[sim:no_usage]` leaves `usageMetadata` out.
- `[sim:thinking]`: the model thinks `"Thinking about: " + prompt`; the thought parts
  (`thought: true`) are returned only when `thinkingConfig.includeThoughts` is set. A
  `thoughtSignature` rides on the first `functionCall` part, else on the last text part.
- `[sim:tool=NAME]` / `[sim:tool=NAME:{…}]`: `functionCall` parts after the text;
  `finishReason` stays `STOP`, as Gemini reports it for function calls.

Streams: one SSE event per thought word and per reply word (CRLF-framed, like Google's), then a
last chunk with the function calls, `finishReason` and the full `usageMetadata`; earlier chunks
carry the prompt count only. `[sim:drop_after=N]` / `[sim:error_after=N]` count those word chunks;
the error is an in-stream `{"error":{"code":503,…,"status":"UNAVAILABLE"}}`. Failures before the
first byte use Google's error body (`code`, `message`, `status`); 429 carries a `RetryInfo`.
What Google refuses and a gateway could send by mistake is refused with its 400 (`refusal_for`).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import string
from typing import Any

import orjson
from aiohttp import web

from crossmodel_simulator.responses import Reply, reply_for_chat_view, signature_for
from crossmodel_simulator.script import token_logprobs

_URLSAFE = string.ascii_letters + string.digits + "-_"
GEMINI_MODELS = ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.5-flash-lite", "gemini-3-pro-preview")

_RPC_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error_response(status: int, message: str, *, retry_after_ms: int = 0) -> web.Response:
    err: dict[str, Any] = {"code": status, "message": message, "status": _RPC_STATUS.get(status, "UNKNOWN")}
    if status == 429:
        err["details"] = [
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after_ms / 1000:g}s"}
        ]
    return web.Response(status=status, body=orjson.dumps({"error": err}), content_type="application/json")


# ------------------------------------------------------------------------------------ the rule


def _field(obj: dict[str, Any], name: str) -> Any:
    """`obj[name]` by its lowerCamelCase name or its proto name (`generationConfig` or
    `generation_config`): Google reads requests with protobuf's JSON parser, which takes both,
    and Google's own Python SDK sends some fields in snake_case (`include_thoughts`)."""
    if name in obj:
        return obj[name]
    return obj.get("".join(f"_{c.lower()}" if c.isupper() else c for c in name))


def _view_parts(parts: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Content parts -> (chat content parts, tool calls, function responses as tool content)."""
    content: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for p in parts if isinstance(parts, list) else ():
        if not isinstance(p, dict):
            continue
        if isinstance(p.get("text"), str):
            content.append({"type": "text", "text": p["text"]})
        elif _field(p, "inlineData") is not None or _field(p, "fileData") is not None:
            content.append({"type": "image_url"})
        elif isinstance(fc := _field(p, "functionCall"), dict):
            args = orjson.dumps(fc.get("args") or {}).decode()
            calls.append({"function": {"name": fc.get("name"), "arguments": args}})
        elif isinstance(fr := _field(p, "functionResponse"), dict):
            text = orjson.dumps(fr.get("response") or {}).decode()
            results.append({"type": "text", "text": text})
    return content, calls, results


def chat_view(body: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A user turn with function responses is a tool message, then (when it has other parts
    too, as Gemini allows) a user message with the rest."""
    messages: list[dict[str, Any]] = []
    system = _field(body, "systemInstruction")
    if isinstance(system, dict):
        content, _, _ = _view_parts(system.get("parts"))
        messages.append({"role": "system", "content": content})
    last_user = ""
    for c in body.get("contents") or ():
        if not isinstance(c, dict):
            continue
        content, calls, results = _view_parts(c.get("parts"))
        if c.get("role") == "model":
            messages.append({"role": "assistant", "content": content, "tool_calls": calls})
            continue
        if results:
            messages.append({"role": "tool", "content": results})
        if content or not results:
            messages.append({"role": "user", "content": content})
            last_user = " ".join(p["text"] for p in content if "text" in p)
    gen = _field(body, "generationConfig")
    if not isinstance(gen, dict):
        gen = {}
    return {
        "messages": messages,
        "max_tokens": _field(gen, "maxOutputTokens"),
        "stop": _field(gen, "stopSequences"),
    }, last_user


# Thinking budgets Google takes per Gemini 2.5 family: (lowest when thinking, highest, 0 allowed).
# https://ai.google.dev/gemini-api/docs/thinking#set-budget
_BUDGETS = (
    ("gemini-2.5-flash-lite", 512, 24576, True),
    ("gemini-2.5-flash", 1, 24576, True),
    ("gemini-2.5-pro", 128, 32768, False),
)


def refusal_for(model: str, body: dict[str, Any]) -> str | None:
    """Google's 400 message for what it refuses and a gateway could send by mistake: no
    `contents`, an empty text part (a part must hold one of its data fields), a thinking budget
    outside the model's range (0 where thinking cannot be turned off)."""
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified"
    system = _field(body, "systemInstruction")
    where = [("system_instruction", system)] if isinstance(system, dict) else []
    where += [(f"contents[{i}]", c) for i, c in enumerate(contents) if isinstance(c, dict)]
    for name, content in where:
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            return f"* GenerateContentRequest.{name}.parts: contents.parts must not be empty."
        for j, p in enumerate(parts):
            if isinstance(p, dict) and p.get("text") == "" and not (set(p) - {"text", "thought"}):
                return (
                    f"* GenerateContentRequest.{name}.parts[{j}].data: required oneof field 'data' must have "
                    "one initialized field"
                )
    gen = _field(body, "generationConfig")
    cfg = _field(gen, "thinkingConfig") if isinstance(gen, dict) else None
    budget = _field(cfg, "thinkingBudget") if isinstance(cfg, dict) else None
    if isinstance(budget, int) and budget != -1:
        for family, low, high, can_stop in _BUDGETS:
            if model.startswith(family):
                if budget == 0 and not can_stop:
                    return "Budget 0 is invalid. This model only works in thinking mode."
                if not (budget == 0 and can_stop) and not low <= budget <= high:
                    return f"The thinking budget is out of range: {budget}; this model takes {low} to {high}."
                break
    return None


def expected_generation(body: dict[str, Any]) -> Reply:
    view, raw = chat_view(body)
    return reply_for_chat_view(view, raw)


def include_thoughts(body: dict[str, Any]) -> bool:
    gen = _field(body, "generationConfig")
    cfg = _field(gen, "thinkingConfig") if isinstance(gen, dict) else None
    return isinstance(cfg, dict) and _field(cfg, "includeThoughts") is True


def logprobs_asked(body: dict[str, Any]) -> int | None:
    """How many top candidates `generationConfig.responseLogprobs` asked per token (its
    `logprobs`, 0 if unset), or None when log probabilities were not asked."""
    gen = _field(body, "generationConfig")
    if not isinstance(gen, dict) or _field(gen, "responseLogprobs") is not True:
        return None
    top = _field(gen, "logprobs")
    return top if isinstance(top, int) and not isinstance(top, bool) else 0


def logprobs_result(
    pieces: tuple[str, ...] | list[str], top: int, start: int = 0, stop: int | None = None
) -> dict[str, Any]:
    """`Candidate.logprobsResult` for the reply's tokens `pieces[start:stop]` (a stream chunk
    carries its own tokens)."""
    lps = token_logprobs(pieces, top)[start:stop]

    def cand(token: str, lp: float) -> dict[str, Any]:
        return {"token": token, "tokenId": 1000 + len(token), "logProbability": lp}

    return {
        "topCandidates": [{"candidates": [cand(a, b) for a, b in t.top]} for t in lps],
        "chosenCandidates": [cand(t.token, t.logprob) for t in lps],
        "logProbabilitySum": sum(t.logprob for t in lps),
    }


def usage_metadata(reply: Reply, *, final: bool = True) -> dict[str, Any]:
    if not final:
        return {"promptTokenCount": reply.prompt_tokens, "totalTokenCount": reply.prompt_tokens}
    u: dict[str, Any] = {
        "promptTokenCount": reply.prompt_tokens,
        "candidatesTokenCount": reply.reply_tokens,
        "totalTokenCount": reply.prompt_tokens + reply.output_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": reply.prompt_tokens}],
    }
    if reply.cached_tokens:
        u["cachedContentTokenCount"] = reply.cached_tokens
    if reply.thinking_tokens:
        u["thoughtsTokenCount"] = reply.thinking_tokens
    return u


def _calls(reply: Reply) -> list[dict[str, Any]]:
    return [{"functionCall": {"name": t.name, "args": orjson.loads(t.arguments)}} for t in reply.tools]


def _sign(reply: Reply, parts: list[dict[str, Any]], *, last_text: bool) -> None:
    """Gemini signs the first function call of a turn, or else its last text part."""
    if reply.thinking is None:
        return
    sig = signature_for(reply.thinking)
    for p in parts:
        if "functionCall" in p:
            p["thoughtSignature"] = sig
            return
    if last_text:
        for p in reversed(parts):
            if "text" in p and not p.get("thought"):
                p["thoughtSignature"] = sig
                return


def _chunk(
    reply: Reply,
    model: str,
    response_id: str,
    parts: list[dict[str, Any]],
    finish: str | None,
    logprobs: dict[str, Any] | None = None,
) -> bytes:
    cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        cand["finishReason"] = finish
    if logprobs is not None:
        cand["logprobsResult"] = logprobs
    out: dict[str, Any] = {"candidates": [cand]}
    if not reply.script.no_usage:
        out["usageMetadata"] = usage_metadata(reply, final=finish is not None)
    out["modelVersion"] = model
    out["responseId"] = response_id
    return b"data: " + orjson.dumps(out) + b"\r\n\r\n"


# ------------------------------------------------------------------------------------- HTTP


def _drop(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.close()


def _response_id() -> str:
    return "".join(secrets.choice(_URLSAFE) for _ in range(23))


async def _stream(
    request: web.Request, resp: web.StreamResponse, body: dict[str, Any], reply: Reply, model: str
) -> None:
    script = reply.script
    rid = _response_id()
    finish = "MAX_TOKENS" if reply.truncated else "STOP"
    word_parts: list[dict[str, Any]] = []
    if reply.thinking is not None and include_thoughts(body):
        word_parts.extend({"text": p, "thought": True} for p in reply.thinking_pieces)
    word_parts.extend({"text": p} for p in reply.pieces)
    if not word_parts and not reply.tools:
        word_parts.append({"text": ""})
    top = logprobs_asked(body)
    token = 0  # the reply token the next text part carries
    for n, part in enumerate(word_parts):
        if script.drop_after is not None and n >= script.drop_after:
            _drop(request)
            return
        if script.error_after is not None and n >= script.error_after:
            err = {
                "error": {
                    "code": 503,
                    "message": "The model is overloaded. Please try again later.",
                    "status": "UNAVAILABLE",
                }
            }
            await resp.write(b"data: " + orjson.dumps(err) + b"\r\n\r\n")
            await resp.write_eof()
            return
        if script.chunk_delay_ms:
            await asyncio.sleep(script.chunk_delay_ms / 1000)
        last = n == len(word_parts) - 1 and not reply.tools
        if last:
            _sign(reply, [part], last_text=True)
        lp = None
        if top is not None and not part.get("thought") and token < len(reply.pieces):
            lp = logprobs_result(reply.pieces, top, token, token + 1)
            token += 1
        await resp.write(_chunk(reply, model, rid, [part], finish if last else None, lp))
    if script.drop_after is not None and script.drop_after <= len(word_parts):
        _drop(request)
        return
    if reply.tools:
        calls = _calls(reply)
        _sign(reply, calls, last_text=False)
        await resp.write(_chunk(reply, model, rid, calls, finish))
    await resp.write_eof()


async def generate(request: web.Request) -> web.StreamResponse:
    target = request.match_info["target"]
    model, sep, method = target.partition(":")
    if not sep or method not in ("generateContent", "streamGenerateContent"):
        return error_response(404, f"Method not found: {target}.")
    if not (request.headers.get("x-goog-api-key") or request.query.get("key")):
        return error_response(
            403, "Method doesn't allow unregistered callers (callers without established identity)."
        )
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return error_response(400, "Invalid JSON payload received.")
    if not isinstance(body, dict):
        return error_response(400, "Invalid JSON payload received.")
    refusal = refusal_for(model, body)
    if refusal is not None:
        return error_response(400, refusal)
    reply = expected_generation(body)
    script = reply.script
    if script.delay_ms:
        await asyncio.sleep(script.delay_ms / 1000)
    if script.status >= 400:
        return error_response(
            script.status,
            f"Simulated upstream failure ({script.status}).",
            retry_after_ms=script.retry_after_ms,
        )
    if method == "generateContent":
        if script.drop_after is not None:
            _drop(request)
            return web.Response()
        parts: list[dict[str, Any]] = []
        if reply.thinking is not None and include_thoughts(body):
            parts.append({"text": reply.thinking, "thought": True})
        if reply.text or not reply.tools:
            parts.append({"text": reply.text})
        parts.extend(_calls(reply))
        _sign(reply, parts, last_text=True)
        cand = {
            "content": {"parts": parts, "role": "model"},
            "finishReason": "MAX_TOKENS" if reply.truncated else "STOP",
            "index": 0,
        }
        top = logprobs_asked(body)
        if top is not None:
            cand["logprobsResult"] = logprobs_result(reply.pieces, top)
        out: dict[str, Any] = {"candidates": [cand]}
        if not script.no_usage:
            out["usageMetadata"] = usage_metadata(reply)
        out["modelVersion"] = model
        out["responseId"] = _response_id()
        return web.Response(body=orjson.dumps(out), content_type="application/json")
    if request.query.get("alt") != "sse":
        return error_response(400, "This simulator streams only with alt=sse.")
    resp = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
    await resp.prepare(request)
    with contextlib.suppress(ConnectionResetError):
        await _stream(request, resp, body, reply, model)
    return resp


async def list_models(_: web.Request) -> web.Response:
    models = [
        {
            "name": f"models/{m}",
            "displayName": m,
            "supportedGenerationMethods": ["generateContent", "countTokens"],
            "thinking": True,
        }
        for m in GEMINI_MODELS
    ]
    return web.Response(body=orjson.dumps({"models": models}), content_type="application/json")


def register(app: web.Application) -> None:
    """Gemini's routes (`{target}` is `<model>:<method>`), under both API versions."""
    for version in ("v1beta", "v1"):
        app.router.add_post(f"/gemini/{version}/models/{{target}}", generate)
        app.router.add_get(f"/gemini/{version}/models", list_models)
