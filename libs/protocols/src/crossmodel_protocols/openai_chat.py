"""OpenAI Chat Completions, both directions.

Ingress (`ChatIngress`): client body -> canonical, canonical response/events -> OpenAI JSON and
SSE chunks exactly as https://platform.openai.com/docs/api-reference/chat-streaming sends them.
Provider (`ChatProvider`): canonical -> an OpenAI-compatible upstream request, upstream JSON/SSE
-> canonical. One provider codec serves every OpenAI-compatible vendor through a `Dialect`
(OpenAI itself, DeepSeek with `reasoning_content`, and generic compatible vendors).

`ChatPassthrough` is the fast path for an OpenAI-chat client in front of an OpenAI-family
upstream: it forwards the client's own JSON (model replaced, usage always requested) and
rewrites each upstream chunk only as far as the client must see it, while still capturing usage
and the finish reason.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from crossmodel_protocols import validation as v
from crossmodel_protocols.canonical import (
    BlockStart,
    BlockStop,
    ErrorKind,
    FilePart,
    FinishReason,
    ImagePart,
    InvalidRequest,
    Message,
    Part,
    Protocol,
    ReasoningConfig,
    ReasoningDelta,
    ReasoningPart,
    RefusalDelta,
    RefusalPart,
    Request,
    Response,
    ResponseFormat,
    StreamError,
    StreamEvent,
    StreamFinish,
    StreamStart,
    SystemPart,
    TextDelta,
    TextPart,
    TokenLogprob,
    Tool,
    ToolArgumentsDelta,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
    UpstreamProtocolError,
    Usage,
    UsageUpdate,
)
from crossmodel_protocols.codec import (
    UpstreamError,
    UpstreamRequest,
    epoch_seconds,
    json_array,
    json_object,
    json_text,
    only_allowed_tools,
    reads_upstream,
    token_count,
    upstream_json_object,
)
from crossmodel_protocols.sse import SSEDecoder, encode_data

CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_SSE = "text/event-stream"
DONE = b"data: [DONE]\n\n"

_ROLES = ("system", "assistant", "user", "function", "tool", "developer")

# Top-level fields the canonical model has a slot for. Anything else is kept in
# `Request.extra` and forwarded only to OpenAI-family upstreams.
_KNOWN = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "n",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "reasoning_effort",
        "user",
        "safety_identifier",
        "metadata",
        "logprobs",
        "top_logprobs",
    }
)

_FINISH_TO_OPENAI = {
    FinishReason.END_TURN: "stop",
    FinishReason.STOP_SEQUENCE: "stop",
    FinishReason.PAUSE_TURN: "stop",
    FinishReason.MAX_TOKENS: "length",
    FinishReason.TOOL_USE: "tool_calls",
    FinishReason.CONTENT_FILTER: "content_filter",
    FinishReason.REFUSAL: "content_filter",
    FinishReason.ERROR: "stop",
}
_FINISH_FROM_OPENAI = {
    "stop": FinishReason.END_TURN,
    "length": FinishReason.MAX_TOKENS,
    "tool_calls": FinishReason.TOOL_USE,
    "function_call": FinishReason.TOOL_USE,
    "content_filter": FinishReason.CONTENT_FILTER,
    # DeepSeek: the request was cut for lack of capacity.
    "insufficient_system_resource": FinishReason.ERROR,
}


def finish_to_openai(reason: FinishReason | None) -> str | None:
    return None if reason is None else _FINISH_TO_OPENAI[reason]


def finish_from_openai(reason: Any) -> FinishReason | None:
    if reason is None:
        return None
    if not isinstance(reason, str):
        return FinishReason.END_TURN  # present but unknown, as an unknown string is
    return _FINISH_FROM_OPENAI.get(reason, FinishReason.END_TURN)


# ============================================================================================
# Ingress: parse


def logprobs_to_openai(lps: list[TokenLogprob], *, with_bytes: bool = True) -> list[dict[str, Any]]:
    """Canonical -> OpenAI's token log probabilities: chat `logprobs.content` and Responses
    `output_text.logprobs` (with `bytes`), Responses text events (`with_bytes=False`)."""

    def entry(t: TokenLogprob) -> dict[str, Any]:
        e: dict[str, Any] = {"token": t.token, "logprob": t.logprob}
        if with_bytes:
            e["bytes"] = t.bytes if t.bytes is not None else list(t.token.encode())
        return e

    return [{**entry(t), "top_logprobs": [entry(a) for a in t.top]} for t in lps]


def logprobs_from_openai(raw: Any) -> list[TokenLogprob] | None:
    """OpenAI's token log probabilities (a list of `{token, logprob, bytes?, top_logprobs?}`)
    -> canonical; None for anything else, which is dropped rather than failing the answer."""
    if not isinstance(raw, list):
        return None
    out: list[TokenLogprob] = []
    for e in raw:
        t = _token_logprob(e)
        if t is None:
            return None
        tops = e.get("top_logprobs")
        for a in tops if isinstance(tops, list) else ():
            top = _token_logprob(a)
            if top is not None:
                t.top.append(top)
        out.append(t)
    return out


def _token_logprob(e: Any) -> TokenLogprob | None:
    if not isinstance(e, dict) or not isinstance(e.get("token"), str):
        return None
    lp = e.get("logprob")
    if not isinstance(lp, int | float) or isinstance(lp, bool):
        return None
    b = e.get("bytes")
    ok = isinstance(b, list) and all(isinstance(x, int) for x in b)
    return TokenLogprob(e["token"], float(lp), b if ok else None)


def _chat_logprobs(choice: dict[str, Any]) -> list[TokenLogprob] | None:
    lp = choice.get("logprobs")
    return logprobs_from_openai(lp.get("content")) if isinstance(lp, dict) else None


def _text_parts(value: Any, path: str, *, allow_refusal: bool = False) -> list[TextPart | RefusalPart]:
    """A string, or an array of `{"type":"text"}` (and for assistants `refusal`) parts."""
    if isinstance(value, str):
        return [TextPart(value)]
    if not isinstance(value, list):
        raise v.wrong_type(path, "one of a string or array of objects", value)
    out: list[TextPart | RefusalPart] = []
    for i, raw in enumerate(value):
        p = v.as_object(raw, f"{path}[{i}]")
        kind = v.req_str(p, "type", f"{path}[{i}].type")
        if kind == "text":
            out.append(TextPart(v.req_str(p, "text", f"{path}[{i}].text")))
        elif kind == "refusal" and allow_refusal:
            out.append(RefusalPart(v.req_str(p, "refusal", f"{path}[{i}].refusal")))
        else:
            allowed = ["text", "refusal"] if allow_refusal else ["text"]
            raise v.invalid_value(f"{path}[{i}].type", kind, allowed)
    return out


def _user_parts(value: Any, path: str) -> list[Part]:
    if isinstance(value, str):
        return [TextPart(value)]
    if not isinstance(value, list):
        raise v.wrong_type(path, "one of a string or array of objects", value)
    out: list[Part] = []
    for i, raw in enumerate(value):
        pp = f"{path}[{i}]"
        p = v.as_object(raw, pp)
        kind = v.req_str(p, "type", f"{pp}.type")
        if kind == "text":
            out.append(TextPart(v.req_str(p, "text", f"{pp}.text")))
        elif kind == "image_url":
            img = v.opt_object(p, "image_url", f"{pp}.image_url")
            if img is None:
                raise v.missing(f"{pp}.image_url")
            url = v.req_str(img, "url", f"{pp}.image_url.url")
            detail = v.opt_str(img, "detail", f"{pp}.image_url.detail")
            if detail is not None and detail not in ("auto", "low", "high"):
                raise v.invalid_value(f"{pp}.image_url.detail", detail, ["auto", "low", "high"])
            if url.startswith("data:"):
                media, data = v.parse_data_url(url, f"{pp}.image_url.url")
                out.append(ImagePart(data=data, media_type=media, detail=detail, param=pp))
            elif url.startswith(("http://", "https://")):
                out.append(ImagePart(url=url, detail=detail, param=pp))
            else:
                raise v.invalid_value(
                    f"{pp}.image_url.url", url[:48], why="expected an http(s) URL or a base64 data URL."
                )
        elif kind == "file":
            f = v.opt_object(p, "file", f"{pp}.file")
            if f is None:
                raise v.missing(f"{pp}.file")
            file_data = v.opt_str(f, "file_data", f"{pp}.file.file_data")
            file_id = v.opt_str(f, "file_id", f"{pp}.file.file_id")
            if file_data is None and file_id is None:
                raise v.missing(f"{pp}.file.file_data")
            file_media: str | None = None
            if file_data is not None and file_data.startswith("data:"):
                file_media, file_data = v.parse_data_url(file_data, f"{pp}.file.file_data")
            out.append(
                FilePart(
                    data=file_data,
                    file_id=file_id,
                    media_type=file_media,
                    filename=v.opt_str(f, "filename", f"{pp}.file.filename"),
                    param=f"{pp}.file.file_id" if file_id is not None else "",
                )
            )
        elif kind == "input_audio":
            raise InvalidRequest(
                "Audio input is not supported by this gateway.", param=f"{pp}.type", code="unsupported_value"
            )
        else:
            raise v.invalid_value(f"{pp}.type", kind, ["text", "image_url", "file", "input_audio"])
    return out


def _tool_calls(value: Any, path: str) -> list[ToolCallPart]:
    if not isinstance(value, list):
        raise v.wrong_type(path, "an array", value)
    out: list[ToolCallPart] = []
    for i, raw in enumerate(value):
        pp = f"{path}[{i}]"
        tc = v.as_object(raw, pp)
        kind = v.opt_str(tc, "type", f"{pp}.type") or "function"
        if kind != "function":
            raise v.invalid_value(f"{pp}.type", kind, ["function"])
        fn = v.opt_object(tc, "function", f"{pp}.function")
        if fn is None:
            raise v.missing(f"{pp}.function")
        out.append(
            ToolCallPart(
                id=v.req_str(tc, "id", f"{pp}.id"),
                name=v.req_str(fn, "name", f"{pp}.function.name"),
                arguments=v.opt_str(fn, "arguments", f"{pp}.function.arguments") or "",
            )
        )
    return out


def _parse_messages(raw: Any) -> tuple[list[SystemPart], list[Message]]:
    if raw is None:
        raise v.missing("messages")
    if not isinstance(raw, list):
        raise v.wrong_type("messages", "an array", raw)
    if not raw:
        raise InvalidRequest(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    system: list[SystemPart] = []
    messages: list[Message] = []
    for i, item in enumerate(raw):
        path = f"messages[{i}]"
        m = v.as_object(item, path)
        role = v.req_str(m, "role", f"{path}.role")
        name = v.opt_str(m, "name", f"{path}.name")
        content = m.get("content")
        if role in ("system", "developer"):
            if content is None:
                raise v.missing(f"{path}.content")
            parts = _text_parts(content, f"{path}.content")
            system.append(SystemPart("".join(p.text for p in parts), role=role))  # type: ignore[arg-type]
        elif role == "user":
            if content is None:
                raise v.missing(f"{path}.content")
            messages.append(Message("user", _user_parts(content, f"{path}.content"), name))
        elif role == "assistant":
            aparts: list[Part] = []
            # DeepSeek's reasoning field, echoed back by clients in multi-turn tool loops.
            reasoning = v.opt_str(m, "reasoning_content", f"{path}.reasoning_content")
            if reasoning:
                aparts.append(ReasoningPart(reasoning))
            if content is not None:
                aparts.extend(_text_parts(content, f"{path}.content", allow_refusal=True))
            refusal = v.opt_str(m, "refusal", f"{path}.refusal")
            if refusal:
                aparts.append(RefusalPart(refusal))
            if m.get("tool_calls") is not None:
                aparts.extend(_tool_calls(m["tool_calls"], f"{path}.tool_calls"))
            if m.get("function_call") is not None:
                raise InvalidRequest(
                    "The legacy 'function_call' field is not supported; use 'tool_calls'.",
                    param=f"{path}.function_call",
                    code="unsupported_parameter",
                )
            messages.append(Message("assistant", aparts, name))
        elif role == "tool":
            call_id = v.req_str(m, "tool_call_id", f"{path}.tool_call_id")
            if content is None:
                raise v.missing(f"{path}.content")
            tparts = _text_parts(content, f"{path}.content")
            result = ToolResultPart(call_id, [p for p in tparts if isinstance(p, TextPart)])
            messages.append(Message("tool", [result]))
        elif role == "function":
            raise InvalidRequest(
                "The legacy 'function' role is not supported; use 'tool'.",
                param=f"{path}.role",
                code="unsupported_value",
            )
        else:
            raise v.invalid_value(f"{path}.role", role, _ROLES)
    return system, messages


def _parse_tools(body: dict[str, Any]) -> list[Tool]:
    raw = v.opt_list(body, "tools", "tools")
    if not raw:
        return []
    tools: list[Tool] = []
    for i, item in enumerate(raw):
        path = f"tools[{i}]"
        t = v.as_object(item, path)
        kind = v.req_str(t, "type", f"{path}.type")
        if kind == "function":
            fn = v.opt_object(t, "function", f"{path}.function")
            if fn is None:
                raise v.missing(f"{path}.function")
            params = v.opt_object(fn, "parameters", f"{path}.function.parameters")
            tools.append(
                Tool(
                    name=v.req_str(fn, "name", f"{path}.function.name"),
                    description=v.opt_str(fn, "description", f"{path}.function.description"),
                    parameters=params,
                    strict=v.opt_bool(fn, "strict", f"{path}.function.strict"),
                )
            )
        else:
            tools.append(Tool(name=kind, kind=kind, raw=t, raw_protocol=Protocol.OPENAI_CHAT))
    return tools


def _parse_tool_choice(body: dict[str, Any], parallel: bool | None) -> ToolChoice | None:
    raw = body.get("tool_choice")
    disable = None if parallel is None else not parallel
    if raw is None:
        return ToolChoice("auto", disable_parallel=disable) if disable is not None else None
    if isinstance(raw, str):
        if raw not in ("none", "auto", "required"):
            raise v.invalid_value("tool_choice", raw, ["none", "auto", "required"])
        return ToolChoice(raw, disable_parallel=disable)  # type: ignore[arg-type]
    tc = v.as_object(raw, "tool_choice")
    kind = v.req_str(tc, "type", "tool_choice.type")
    if kind != "function":
        raise v.invalid_value("tool_choice.type", kind, ["function"])
    fn = v.opt_object(tc, "function", "tool_choice.function")
    if fn is None:
        raise v.missing("tool_choice.function")
    return ToolChoice("tool", v.req_str(fn, "name", "tool_choice.function.name"), disable)


def _forcible(choice: ToolChoice | None, tools: list[Tool]) -> ToolChoice | None:
    """A choice that forces a tool needs that tool: otherwise no vendor can honour it, and one
    that drops the choice would answer as if it had."""
    if choice is None or choice.mode in ("none", "auto"):
        return choice
    if not tools:
        raise v.invalid_value(
            "tool_choice",
            choice.name or choice.mode,
            why="'tool_choice' forces a tool, but no 'tools' are specified.",
        )
    if choice.mode == "tool" and all(t.name != choice.name for t in tools):
        raise v.invalid_value(
            "tool_choice.function.name",
            choice.name,
            why=f"no tool named '{choice.name}' is in 'tools'.",
        )
    return choice


def _parse_response_format(body: dict[str, Any]) -> ResponseFormat | None:
    rf = v.opt_object(body, "response_format", "response_format")
    if rf is None:
        return None
    kind = v.req_str(rf, "type", "response_format.type")
    if kind in ("text", "json_object"):
        return ResponseFormat(kind)  # type: ignore[arg-type]
    if kind == "json_schema":
        js = v.opt_object(rf, "json_schema", "response_format.json_schema")
        if js is None:
            raise v.missing("response_format.json_schema")
        return ResponseFormat(
            "json_schema",
            schema=v.opt_object(js, "schema", "response_format.json_schema.schema"),
            name=v.req_str(js, "name", "response_format.json_schema.name"),
            strict=v.opt_bool(js, "strict", "response_format.json_schema.strict"),
            description=v.opt_str(js, "description", "response_format.json_schema.description"),
        )
    raise v.invalid_value("response_format.type", kind, ["text", "json_object", "json_schema"])


def _parse_stop(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise v.wrong_type("stop", "one of a string or array of strings", stop)
    if len(stop) > 4:
        raise InvalidRequest(
            "Invalid 'stop': array too long. Expected an array with maximum length 4, "
            f"but got an array with length {len(stop)} instead.",
            param="stop",
            code="array_above_max_length",
        )
    return list(stop)


def parse_chat_request(data: dict[str, Any]) -> Request:
    """An already-decoded Chat Completions body -> canonical."""
    model = v.req_str(data, "model", "model")
    system, messages = _parse_messages(data.get("messages"))
    stream = bool(v.opt_bool(data, "stream", "stream"))
    include_usage = False
    so = v.opt_object(data, "stream_options", "stream_options")
    if so is not None:
        if not stream:
            raise InvalidRequest(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
                code="invalid_value",
            )
        include_usage = bool(v.opt_bool(so, "include_usage", "stream_options.include_usage"))
    # The request-level halves of the legacy function calling; their message-level halves are
    # refused in _parse_messages. Forwarded as unknown fields they would reach only OpenAI-family
    # vendors and silently vanish for the others.
    for legacy in ("functions", "function_call"):
        if data.get(legacy) is not None:
            raise InvalidRequest(
                f"The legacy '{legacy}' parameter is not supported; use "
                f"'{'tools' if legacy == 'functions' else 'tool_choice'}'.",
                param=legacy,
                code="unsupported_parameter",
            )
    n = v.opt_int(data, "n", "n", minimum=1, maximum=128)
    max_tokens = v.opt_int(data, "max_completion_tokens", "max_completion_tokens", minimum=1)
    if max_tokens is None:
        max_tokens = v.opt_int(data, "max_tokens", "max_tokens", minimum=1)
    parallel = v.opt_bool(data, "parallel_tool_calls", "parallel_tool_calls")
    effort = v.opt_str(data, "reasoning_effort", "reasoning_effort")
    if effort is not None and effort not in ("none", "minimal", "low", "medium", "high", "xhigh"):
        raise v.invalid_value("reasoning_effort", effort, ["none", "minimal", "low", "medium", "high"])
    end_user = (
        v.opt_str(data, "safety_identifier", "safety_identifier") or v.opt_str(data, "user", "user") or ""
    )
    logprobs = bool(v.opt_bool(data, "logprobs", "logprobs"))
    top_logprobs = v.opt_int(data, "top_logprobs", "top_logprobs", minimum=0, maximum=20)
    extra = {k: val for k, val in data.items() if k not in _KNOWN}
    return Request(
        model=model,
        messages=messages,
        system=system,
        stream=stream,
        max_tokens=max_tokens,
        temperature=v.opt_number(data, "temperature", "temperature", minimum=0, maximum=2),
        top_p=v.opt_number(data, "top_p", "top_p", minimum=0, maximum=1),
        stop=_parse_stop(data),
        seed=v.opt_int(data, "seed", "seed"),
        presence_penalty=v.opt_number(data, "presence_penalty", "presence_penalty", minimum=-2, maximum=2),
        frequency_penalty=v.opt_number(data, "frequency_penalty", "frequency_penalty", minimum=-2, maximum=2),
        tools=(tools := _parse_tools(data)),
        tool_choice=_forcible(_parse_tool_choice(data, parallel), tools),
        response_format=_parse_response_format(data),
        reasoning=None if effort is None else ReasoningConfig(enabled=effort != "none", effort=effort),
        end_user=end_user,
        metadata=v.str_map(data, "metadata", "metadata"),
        logprobs=logprobs,
        top_logprobs=top_logprobs,
        n=n or 1,
        include_usage=include_usage,
        extra=extra,
        ingress=Protocol.OPENAI_CHAT,
        raw=data,
    )


# ============================================================================================
# Ingress: render


def usage_to_openai(u: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_input_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": u.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def render_chat_response(resp: Response, request: Request) -> dict[str, Any]:
    text: list[str] = []
    reasoning: list[str] = []
    refusal: list[str] = []
    calls: list[dict[str, Any]] = []
    logprobs: list[TokenLogprob] | None = None
    for p in resp.content:
        if isinstance(p, TextPart):
            text.append(p.text)
            if p.logprobs is not None:
                logprobs = [*(logprobs or ()), *p.logprobs]
        elif isinstance(p, ReasoningPart):
            if p.text:
                reasoning.append(p.text)
        elif isinstance(p, RefusalPart):
            refusal.append(p.text)
        elif isinstance(p, ToolCallPart):
            calls.append(
                {"id": p.id, "type": "function", "function": {"name": p.name, "arguments": p.arguments}}
            )
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(text) if text or not (calls or refusal) else None,
        "refusal": "".join(refusal) if refusal else None,
        "annotations": [],
    }
    if reasoning:
        # Chat Completions has no reasoning field; DeepSeek's is what OpenAI-chat clients read.
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    out: dict[str, Any] = {
        "id": resp.id,
        "object": "chat.completion",
        "created": resp.created,
        "model": request.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": (
                    {"content": logprobs_to_openai(logprobs), "refusal": None}
                    if request.logprobs and logprobs is not None
                    else None
                ),
                "finish_reason": finish_to_openai(resp.finish_reason) or "stop",
            }
        ],
        "usage": usage_to_openai(resp.usage or Usage()),
        "service_tier": resp.service_tier or "default",
        "system_fingerprint": resp.system_fingerprint,
    }
    return out


class ChatStreamRenderer:
    """Canonical events -> `chat.completion.chunk` SSE, the way OpenAI streams them: a role
    chunk first, content/tool deltas, a chunk carrying `finish_reason`, then (only when the
    client asked `stream_options.include_usage`) a usage chunk with empty `choices`, and
    `data: [DONE]`. With include_usage every other chunk carries `"usage": null`, as OpenAI's do."""

    content_type = CONTENT_TYPE_SSE

    def __init__(self, request: Request, *, fallback_id: str = "chatcmpl-0", created: int = 0) -> None:
        self._model = request.model
        self._include_usage = request.include_usage
        self._id = fallback_id
        self._created = created
        self._fingerprint: str | None = None
        self._started = False
        self._tool_index: dict[int, int] = {}  # canonical block index -> OpenAI tool_calls index
        self._usage: Usage | None = None
        self._finished = False
        self._logprobs = request.logprobs

    def _chunk(
        self, delta: dict[str, Any], finish: str | None = None, logprobs: list[TokenLogprob] | None = None
    ) -> bytes:
        chunk: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "service_tier": "default",
            "system_fingerprint": self._fingerprint,
            "choices": [
                {
                    "index": 0,
                    "delta": delta,
                    "logprobs": (
                        {"content": logprobs_to_openai(logprobs), "refusal": None}
                        if logprobs is not None and self._logprobs
                        else None
                    ),
                    "finish_reason": finish,
                }
            ],
        }
        if self._include_usage:
            chunk["usage"] = None
        return encode_data(orjson.dumps(chunk))

    def _start(self) -> bytes:
        self._started = True
        return self._chunk({"role": "assistant", "content": "", "refusal": None})

    def render(self, event: StreamEvent) -> bytes:
        if isinstance(event, StreamStart):
            self._id = event.id or self._id
            self._created = event.created or self._created
            self._fingerprint = event.system_fingerprint
            if event.usage is not None:
                self._usage = event.usage
            return b"" if self._started else self._start()
        head = b"" if self._started or isinstance(event, UsageUpdate) else self._start()
        if isinstance(event, TextDelta):
            return head + self._chunk({"content": event.text}, None, event.logprobs) if event.text else head
        if isinstance(event, ReasoningDelta):
            return head + self._chunk({"reasoning_content": event.text}) if event.text else head
        if isinstance(event, RefusalDelta):
            return head + self._chunk({"refusal": event.text}) if event.text else head
        if isinstance(event, BlockStart):
            part = event.part
            if isinstance(part, ToolCallPart):
                idx = self._tool_index[event.index] = len(self._tool_index)
                call = {
                    "index": idx,
                    "id": part.id,
                    "type": "function",
                    "function": {"name": part.name, "arguments": part.arguments},
                }
                return head + self._chunk({"tool_calls": [call]})
            if isinstance(part, TextPart) and part.text:
                return head + self.render(TextDelta(event.index, part.text, part.logprobs))
            if isinstance(part, RefusalPart) and part.text:
                return head + self.render(RefusalDelta(event.index, part.text))
            if isinstance(part, ReasoningPart) and part.text:
                return head + self.render(ReasoningDelta(event.index, part.text))
            return head
        if isinstance(event, ToolArgumentsDelta):
            if not event.arguments:
                return head
            idx = self._tool_index.setdefault(event.index, len(self._tool_index))
            return head + self._chunk(
                {"tool_calls": [{"index": idx, "function": {"arguments": event.arguments}}]}
            )
        if isinstance(event, StreamFinish):
            self._finished = True
            return head + self._chunk({}, finish_to_openai(event.finish_reason))
        if isinstance(event, UsageUpdate):
            self._usage = event.usage
            return b""
        if isinstance(event, StreamError):
            return b""  # the edge renders in-stream errors (errors.render_stream_error)
        return head  # BlockStop: chat has no block framing

    def close(self) -> bytes:
        out = b"" if self._started else self._start()
        if self._include_usage:
            chunk = {
                "id": self._id,
                "object": "chat.completion.chunk",
                "created": self._created,
                "model": self._model,
                "service_tier": "default",
                "system_fingerprint": self._fingerprint,
                "choices": [],
                "usage": usage_to_openai(self._usage or Usage()),
            }
            out += encode_data(orjson.dumps(chunk))
        return out + DONE


class ChatIngress:
    """The Chat Completions ingress codec."""

    protocol = Protocol.OPENAI_CHAT

    def parse_request(self, body: bytes, headers: Mapping[str, str]) -> Request:
        return parse_chat_request(v.load_object(body))

    def render_response(self, response: Response, request: Request) -> bytes:
        return orjson.dumps(render_chat_response(response, request))

    def stream_renderer(self, request: Request) -> ChatStreamRenderer:
        return ChatStreamRenderer(request)


# ============================================================================================
# Provider


# Chat Completions fields OpenAI defines that the conservative core of the other dialects lacks.
# They tune how OpenAI makes the answer, not what it holds, so they are dropped for the others,
# some of which (Mistral) answer a field they do not know with 422. Fields OpenAI does not define
# (a vendor's own extensions) still reach every OpenAI-compatible vendor as sent.
OPENAI_ONLY_FIELDS = frozenset(
    {
        "store",
        "service_tier",
        "metadata",
        "user",
        "safety_identifier",
        "reasoning_effort",
        "verbosity",
        "prediction",
        "logit_bias",
        "prompt_cache_key",
        "prompt_cache_retention",
        "prompt_cache_options",
        "moderation",
    }
)


class Dialect(enum.StrEnum):
    """What an OpenAI-compatible upstream accepts beyond the common core."""

    OPENAI = "openai"  # developer role, max_completion_tokens, reasoning_effort, safety_identifier
    DEEPSEEK = "deepseek"  # reasoning_content in and out; system role only; max_tokens
    COMPATIBLE = "openai-compatible"  # the conservative core every compatible vendor accepts


def _image_url(p: ImagePart) -> dict[str, Any]:
    url = p.url if p.url is not None else f"data:{p.media_type or 'image/png'};base64,{p.data}"
    out: dict[str, Any] = {"url": url}
    if p.detail:
        out["detail"] = p.detail
    return out


# Between the text parts of one message sent as one string: a blank line keeps their boundary
# (Claude Code's `<system-reminder>` block and the request after it), where "" glued them.
TEXT_PART_SEPARATOR = "\n\n"


def _joined_text(parts: Sequence[Part]) -> str:
    return TEXT_PART_SEPARATOR.join(p.text for p in parts if isinstance(p, TextPart) and p.text)


def _content_to_openai(parts: list[Part]) -> str | list[dict[str, Any]]:
    if all(isinstance(p, TextPart) for p in parts):
        return _joined_text(parts)
    return _parts_to_openai(parts)


def _parts_to_openai(parts: list[Part]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in parts:
        if isinstance(p, TextPart):
            out.append({"type": "text", "text": p.text})
        elif isinstance(p, ImagePart):
            out.append({"type": "image_url", "image_url": _image_url(p)})
        elif isinstance(p, FilePart):
            f: dict[str, Any] = {}
            if p.file_id:
                f["file_id"] = p.file_id
            elif p.data is not None:
                f["file_data"] = f"data:{p.media_type or 'application/pdf'};base64,{p.data}"
            else:
                # Chat's file part has no URL field: the document would arrive empty.
                raise v.unsupported_file(p.param, "a file URL")
            if p.filename:
                f["filename"] = p.filename
            out.append({"type": "file", "file": f})
    return out


def _messages_to_openai(request: Request, dialect: Dialect) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for s in request.system:
        role = s.role if dialect is Dialect.OPENAI else "system"
        out.append({"role": role, "content": s.text})
    # A tool message holds text only; the images and files of tool results go in one user
    # message after the run of tool messages (which must follow the assistant's calls directly).
    attached: list[dict[str, Any]] = []
    for m in request.messages:
        if m.role == "tool":
            for p in m.content:
                if isinstance(p, ToolResultPart):
                    text = _joined_text(p.content)
                    others: list[Part] = [c for c in p.content if not isinstance(c, TextPart)]
                    if others:
                        attached.append(
                            {"type": "text", "text": f"Attached to the result of tool call {p.tool_call_id}:"}
                        )
                        attached += _parts_to_openai(others)
                        text = text or "(attached in the next message)"
                    if p.is_error:
                        # Chat has no error flag on a tool result (Anthropic `is_error`).
                        text = f"Error: {text}" if text else "Error"
                    out.append({"role": "tool", "tool_call_id": p.tool_call_id, "content": text})
            continue
        if attached:
            out.append({"role": "user", "content": attached})
            attached = []
        if m.role == "user":
            msg: dict[str, Any] = {"role": "user", "content": _content_to_openai(m.content)}
        else:
            text = _joined_text(m.content)
            calls = [
                {
                    "id": p.id,
                    "type": "function",
                    "function": {"name": p.name, "arguments": p.arguments or "{}"},
                }
                for p in m.content
                if isinstance(p, ToolCallPart)
            ]
            refusal = "".join(p.text for p in m.content if isinstance(p, RefusalPart))
            msg = {"role": "assistant", "content": text if text or not calls else None}
            if calls:
                msg["tool_calls"] = calls
            if refusal and dialect is Dialect.OPENAI:
                msg["refusal"] = refusal
            if dialect is Dialect.DEEPSEEK:
                reasoning = "".join(p.text for p in m.content if isinstance(p, ReasoningPart))
                if reasoning:
                    msg["reasoning_content"] = reasoning
        if m.name:
            msg["name"] = m.name
        out.append(msg)
    if attached:
        out.append({"role": "user", "content": attached})
    return out


def _tools_to_openai(request: Request) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, t in enumerate(request.tools):
        if t.kind != "function":
            if t.raw is None or t.raw_protocol is not Protocol.OPENAI_CHAT:
                raise v.unsupported_tool(i, t.kind)
            out.append(t.raw)
            continue
        fn: dict[str, Any] = {"name": t.name}
        if t.description is not None:
            fn["description"] = t.description
        fn["parameters"] = t.parameters if t.parameters is not None else {"type": "object", "properties": {}}
        if t.strict is not None:
            fn["strict"] = t.strict
        out.append({"type": "function", "function": fn})
    return out


# OpenAI's `safety_identifier` is at most 64 characters; longer end-user ids (Claude Code's
# `metadata.user_id` is about 120) are sent as their SHA-256 in hex, exactly 64: stable per end
# user and as pseudonymous as the id itself.
SAFETY_IDENTIFIER_MAX = 64


def openai_safety_identifier(end_user: str) -> str:
    if len(end_user) <= SAFETY_IDENTIFIER_MAX:
        return end_user
    return hashlib.sha256(end_user.encode()).hexdigest()


def openai_effort(request: Request) -> str | None:
    """OpenAI's `reasoning_effort` for the request, or None to send none. Only reasoning models
    take it (OpenAI refuses it for the others). An effort the client gave is sent as given; a
    thinking budget maps to low / medium / high; thinking turned off without an effort (Anthropic
    `disabled`) sends nothing, since the value that lowers reasoning most differs by model
    (`minimal`, `none`, `low`) and none of them turns it off on every reasoning model."""
    r = request.reasoning
    if r is None or not request.capable("reasoning"):
        return None
    if r.effort is not None:
        return r.effort
    if not r.enabled or r.budget_tokens is None:
        return None
    b = r.budget_tokens
    return "low" if b < 4096 else "medium" if b < 16384 else "high"


def _forces_a_tool(request: Request) -> bool:
    tc = request.tool_choice
    return tc is not None and tc.mode in ("required", "tool") and bool(request.tools)


def _unreasoned_tool_turn(request: Request) -> bool:
    """An assistant tool-call turn whose reasoning is not in the history (the call came from
    another vendor, or from a client that does not keep `reasoning_content`)."""
    return any(
        m.role == "assistant"
        and any(isinstance(p, ToolCallPart) for p in m.content)
        and not any(isinstance(p, ReasoningPart) and p.text for p in m.content)
        for m in request.messages
    )


def deepseek_thinking(request: Request) -> dict[str, Any]:
    """DeepSeek's own reasoning fields (`thinking: {"type": "enabled"|"disabled"}`,
    `reasoning_effort`) for the request, on a model with the `reasoning` capability; thinking
    is on by default there. It is turned off, reasoning being advisory, where DeepSeek refuses
    thinking: a forced tool choice, and tool-call turns in the history without their
    `reasoning_content`; and for an Anthropic client that asked none. A chat client's own
    `thinking` field is sent as given instead."""
    if not request.capable("reasoning"):
        return {}
    if request.ingress is Protocol.OPENAI_CHAT and "thinking" in request.extra:
        return {}
    off: dict[str, Any] = {"thinking": {"type": "disabled"}}
    if _forces_a_tool(request) or _unreasoned_tool_turn(request):
        return off
    r = request.reasoning
    if r is None:
        # An Anthropic client that asks no thinking gets none, as from Claude; the OpenAI
        # protocols leave reasoning to the model's default, as OpenAI's reasoning models do.
        return off if request.ingress is Protocol.ANTHROPIC_MESSAGES else {}
    if not r.enabled or r.effort == "none":
        return off
    out: dict[str, Any] = {"thinking": {"type": "enabled"}}
    if r.effort is not None:
        # DeepSeek takes minimal ... xhigh and max, and maps them to its own levels itself.
        out["reasoning_effort"] = r.effort
    elif r.budget_tokens is not None:
        out["reasoning_effort"] = "low" if r.budget_tokens < 4096 else "high"
    return out


def refuse_json_schema(request: Request) -> None:
    """A JSON schema asked of a model without `structured_outputs` (DeepSeek answers 400 "This
    response_format type is unavailable now"). Not sent as JSON mode instead: the answer would
    be JSON but not held to the schema, and a client parsing it into that schema could not
    tell; JSON mode is there for the client to ask."""
    rf = request.response_format
    if rf is None or rf.type != "json_schema" or request.capable("structured_outputs"):
        return
    param = v.response_format_field(request) + ".type"
    raise InvalidRequest(
        f"Invalid value for '{param}': 'json_schema' (structured output) is not supported with "
        "this model. Use 'json_object' (JSON mode) and describe the schema in the prompt.",
        param=param,
        code="unsupported_value",
    )


def build_chat_body(request: Request, upstream_model: str, dialect: Dialect) -> dict[str, Any]:
    v.refuse_vendor_only_fields(request, Protocol.OPENAI_CHAT)
    refuse_json_schema(request)
    v.refuse_choices(request)
    if dialect is not Dialect.OPENAI or request.ingress is Protocol.ANTHROPIC_MESSAGES:
        v.refuse_file_ids(request)
    body: dict[str, Any] = {"model": upstream_model, "messages": _messages_to_openai(request, dialect)}
    if request.stream:
        body["stream"] = True
        # Always: usage is what billing charges, whatever the client asked.
        body["stream_options"] = {"include_usage": True}
    if request.max_tokens is not None:
        body["max_completion_tokens" if dialect is Dialect.OPENAI else "max_tokens"] = request.max_tokens
    # OpenAI's reasoning models refuse the sampling settings (a temperature or top_p but 1,
    # penalties) and `stop`. A client of another protocol could not know: its sampling settings
    # are dropped, but a stop sequence cannot be (the answer would run past it), so it is refused.
    # A chat client talking to OpenAI gets what it sent, and OpenAI's answer.
    openai_reasoning = (
        dialect is Dialect.OPENAI
        and request.ingress is not Protocol.OPENAI_CHAT
        and request.capable("reasoning")
    )
    for key, value in (
        ("temperature", request.temperature),
        ("top_p", request.top_p),
        ("seed", request.seed),
        ("presence_penalty", request.presence_penalty),
        ("frequency_penalty", request.frequency_penalty),
    ):
        if value is not None and not (openai_reasoning and key != "seed"):
            body[key] = value
    if request.stop and openai_reasoning:
        param = "stop_sequences" if request.ingress is Protocol.ANTHROPIC_MESSAGES else "stop"
        raise InvalidRequest(
            f"Unsupported parameter: '{param}' is not supported with this model.",
            param=param,
            code="unsupported_parameter",
        )
    if request.stop:
        v.refuse_stop_over(request, 16 if dialect is Dialect.DEEPSEEK else 4)
        body["stop"] = request.stop
    tools = _tools_to_openai(request)
    if tools:
        body["tools"] = tools
    tc = request.tool_choice
    if tc is not None and (tools or tc.mode == "none"):
        if tc.mode == "tool":
            body["tool_choice"] = {"type": "function", "function": {"name": tc.name}}
        else:
            body["tool_choice"] = tc.mode
        if tc.disable_parallel is not None and tools:
            body["parallel_tool_calls"] = not tc.disable_parallel
    rf = request.response_format
    if rf is not None and rf.type != "text":
        if rf.type == "json_object":
            body["response_format"] = {"type": "json_object"}
        else:
            js: dict[str, Any] = {"name": rf.name or "response", "schema": rf.schema or {}}
            if rf.strict is not None:
                js["strict"] = rf.strict
            if rf.description:
                js["description"] = rf.description
            body["response_format"] = {"type": "json_schema", "json_schema": js}
    if dialect is Dialect.OPENAI:
        effort = openai_effort(request)
        if effort:
            body["reasoning_effort"] = effort
    elif dialect is Dialect.DEEPSEEK:
        body.update(deepseek_thinking(request))
    if request.end_user and dialect is Dialect.OPENAI:
        body["safety_identifier"] = openai_safety_identifier(request.end_user)
    if request.metadata and dialect is Dialect.OPENAI:
        body["metadata"] = request.metadata
    if request.logprobs:
        body["logprobs"] = True
        if request.top_logprobs is not None:
            body["top_logprobs"] = request.top_logprobs
    if request.extra and request.ingress is Protocol.OPENAI_CHAT:
        for k, val in request.extra.items():
            if dialect is Dialect.OPENAI or k not in OPENAI_ONLY_FIELDS:
                body.setdefault(k, val)
    return body


def usage_from_openai(u: Any) -> Usage | None:
    """None when absent or unreadable (the router then estimates)."""
    if not isinstance(u, dict):
        return None
    ptd = u.get("prompt_tokens_details")
    ctd = u.get("completion_tokens_details")
    try:
        # DeepSeek reports its context cache as prompt_cache_hit_tokens.
        cached = token_count(ptd.get("cached_tokens")) if isinstance(ptd, dict) else 0
        return Usage(
            input_tokens=token_count(u.get("prompt_tokens")),
            output_tokens=token_count(u.get("completion_tokens")),
            cached_input_tokens=cached or token_count(u.get("prompt_cache_hit_tokens")),
            # Part of prompt_tokens; priced at the input price unless the catalog has a write price.
            cache_write_tokens=token_count(ptd.get("cache_write_tokens")) if isinstance(ptd, dict) else 0,
            reasoning_tokens=token_count(ctd.get("reasoning_tokens")) if isinstance(ctd, dict) else 0,
        )
    except ValueError:
        return None


def _reasoning_text(d: dict[str, Any]) -> str | None:
    r = d.get("reasoning_content")
    if r is None:
        r = d.get("reasoning")  # vLLM / OpenRouter spelling
    return r if isinstance(r, str) else None


def parse_chat_completion(data: dict[str, Any]) -> Response:
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamProtocolError("upstream chat completion has no choices")
    choice = choices[0]
    msg = json_object(choice.get("message"), "message")
    content: list[Part] = []
    reasoning = _reasoning_text(msg)
    if reasoning:
        content.append(ReasoningPart(reasoning, provider=Protocol.OPENAI_CHAT))
    if isinstance(msg.get("content"), str) and (msg["content"] or not msg.get("tool_calls")):
        content.append(TextPart(msg["content"], logprobs=_chat_logprobs(choice)))
    if isinstance(msg.get("refusal"), str) and msg["refusal"]:
        content.append(RefusalPart(msg["refusal"]))
    for tc in json_array(msg.get("tool_calls"), "tool_calls"):
        tc = json_object(tc, "tool call")
        fn = json_object(tc.get("function"), "tool call function")
        content.append(
            ToolCallPart(
                id=json_text(tc.get("id"), "tool call id"),
                name=json_text(fn.get("name"), "tool call name"),
                arguments=json_text(fn.get("arguments"), "tool call arguments"),
            )
        )
    return Response(
        id=str(data.get("id") or ""),
        model=str(data.get("model") or ""),
        content=content,
        finish_reason=finish_from_openai(choice.get("finish_reason")),
        usage=usage_from_openai(data.get("usage")),
        created=epoch_seconds(data.get("created")),
        system_fingerprint=data.get("system_fingerprint"),
        service_tier=data.get("service_tier"),
    )


def _error_from_body(body: Any) -> tuple[str, str | None, str | None, str | None]:
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return (
            str(err.get("message") or ""),
            err.get("type") if isinstance(err.get("type"), str) else None,
            str(err["code"]) if err.get("code") is not None else None,
            err.get("param") if isinstance(err.get("param"), str) else None,
        )
    if isinstance(err, str):
        return err, None, None, None
    return "", None, None, None


def parse_retry_after(headers: Mapping[str, str]) -> int:
    """Milliseconds from `retry-after-ms` or `retry-after` (seconds); 0 when absent."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0, int(float(ms)))
        except ValueError:
            pass
    s = headers.get("retry-after")
    if s:
        try:
            return max(0, int(float(s) * 1000))
        except ValueError:
            return 0
    return 0


def error_kind_for_status(status: int) -> ErrorKind:
    if status == 429:
        return ErrorKind.UPSTREAM_RATE_LIMITED
    if status in (401, 403):
        return ErrorKind.UPSTREAM_AUTH
    if status == 413:
        return ErrorKind.REQUEST_TOO_LARGE
    if status in (400, 404, 409, 422):
        return ErrorKind.UPSTREAM_INVALID_REQUEST
    if status in (503, 529):
        return ErrorKind.UPSTREAM_OVERLOADED
    if status in (408, 504):
        return ErrorKind.UPSTREAM_TIMEOUT
    return ErrorKind.UPSTREAM_ERROR


def parse_chat_error(status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    message, etype, code, param = _error_from_body(data)
    if not message:
        message = body[:200].decode(errors="replace") or f"upstream returned HTTP {status}"
    return UpstreamError(
        kind=error_kind_for_status(status),
        message=message,
        status=status,
        upstream_type=etype,
        code=code,
        param=param,
        retry_after_ms=parse_retry_after(headers) if status in (429, 503, 529) else 0,
    )


class ChatStreamParser:
    """Upstream `chat.completion.chunk` SSE -> canonical events."""

    def __init__(self) -> None:
        self._sse = SSEDecoder()
        self._started = False
        self._open: int | None = None  # canonical index of the open block
        self._open_kind = ""
        self._next = 0
        self._tools: dict[int, int] = {}  # upstream tool_calls index -> canonical block index
        self._finish: FinishReason | None = None
        self.done = False

    def _close_open(self, out: list[StreamEvent]) -> None:
        if self._open is not None:
            out.append(BlockStop(self._open))
            self._open = None
            self._open_kind = ""

    def _ensure(self, kind: str, out: list[StreamEvent]) -> int:
        if self._open is not None and self._open_kind == kind:
            return self._open
        self._close_open(out)
        idx = self._next
        self._next += 1
        part: Part = (
            TextPart("")
            if kind == "text"
            else ReasoningPart("", provider=Protocol.OPENAI_CHAT)
            if kind == "reasoning"
            else RefusalPart("")
        )
        out.append(BlockStart(idx, part))
        self._open, self._open_kind = idx, kind
        return idx

    @reads_upstream("a stream event")
    def feed(self, data: bytes) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for ev in self._sse.feed(data):
            self._event(ev.data, out)
        return out

    def _event(self, payload: bytes, out: list[StreamEvent]) -> None:
        if payload == b"[DONE]":
            self.done = True
            return
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(
                f"upstream sent a stream chunk that is not JSON: {payload[:80]!r}"
            ) from None
        if not isinstance(chunk, dict):
            raise UpstreamProtocolError("upstream sent a stream chunk that is not an object")
        if chunk.get("error"):
            message, etype, _, _ = _error_from_body(chunk)
            out.append(StreamError(ErrorKind.UPSTREAM_ERROR, message or "upstream error", etype))
            return
        if not self._started:
            self._started = True
            out.append(
                StreamStart(
                    id=str(chunk.get("id") or ""),
                    model=str(chunk.get("model") or ""),
                    created=epoch_seconds(chunk.get("created")),
                    system_fingerprint=chunk.get("system_fingerprint"),
                )
            )
        choices = chunk.get("choices")
        if choices:
            choice = choices[0]
            delta = choice.get("delta") or {}
            reasoning = _reasoning_text(delta)
            if reasoning:
                out.append(ReasoningDelta(self._ensure("reasoning", out), reasoning))
            text = delta.get("content")
            if text:
                out.append(TextDelta(self._ensure("text", out), text, _chat_logprobs(choice)))
            refusal = delta.get("refusal")
            if refusal:
                out.append(RefusalDelta(self._ensure("refusal", out), refusal))
            for tc in delta.get("tool_calls") or ():
                up_idx = tc.get("index", 0)
                fn = tc.get("function") or {}
                args = fn.get("arguments") or ""
                idx = self._tools.get(up_idx)
                if idx is None:
                    self._close_open(out)
                    idx = self._tools[up_idx] = self._next
                    self._next += 1
                    out.append(
                        BlockStart(idx, ToolCallPart(id=tc.get("id") or "", name=fn.get("name") or ""))
                    )
                    self._open, self._open_kind = idx, "tool"
                if args:
                    out.append(ToolArgumentsDelta(idx, args))
            fr = choice.get("finish_reason")
            if fr:
                self._close_open(out)
                self._finish = finish_from_openai(fr)
                out.append(StreamFinish(self._finish or FinishReason.END_TURN))
        usage = usage_from_openai(chunk.get("usage"))
        if usage is not None:
            out.append(UsageUpdate(usage))

    @reads_upstream("a stream event")
    def close(self) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for ev in self._sse.flush():
            self._event(ev.data, out)
        self._close_open(out)
        return out


class ChatProvider:
    """Provider codec for every OpenAI-compatible upstream."""

    protocol = Protocol.OPENAI_CHAT

    def __init__(self, dialect: Dialect = Dialect.OPENAI) -> None:
        self.dialect = dialect

    def headers(self, api_key: str) -> dict[str, str]:
        h = {"content-type": CONTENT_TYPE_JSON}
        if api_key:
            h["authorization"] = f"Bearer {api_key}"
        return h

    def build_request(self, request: Request, upstream_model: str, api_key: str) -> UpstreamRequest:
        # Not every OpenAI-compatible vendor has chat's `allowed_tools`: only those are sent.
        request = only_allowed_tools(request)
        body = orjson.dumps(build_chat_body(request, upstream_model, self.dialect))
        return UpstreamRequest("/chat/completions", body, self.headers(api_key), request.stream)

    @reads_upstream("an answer")
    def parse_response(self, body: bytes) -> Response:
        data = upstream_json_object(body)
        return parse_chat_completion(data)

    def stream_parser(self) -> ChatStreamParser:
        return ChatStreamParser()

    def parse_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
        return parse_chat_error(status, body, headers)


# ============================================================================================
# Fast path: OpenAI-chat client -> OpenAI-family upstream


def passthrough_body(request: Request, upstream_model: str, dialect: Dialect) -> bytes:
    """The client's own body for the upstream: model replaced, usage always requested in
    streams; for non-OpenAI dialects only the fields they are known to reject are adapted."""
    raw = request.raw
    if raw is None:
        return orjson.dumps(build_chat_body(request, upstream_model, dialect))
    refuse_json_schema(request)
    body = dict(raw)
    body["model"] = upstream_model
    if request.stream:
        so = body.get("stream_options")
        body["stream_options"] = (
            {**so, "include_usage": True} if isinstance(so, dict) else {"include_usage": True}
        )
    sid = body.get("safety_identifier")
    if dialect is Dialect.OPENAI and isinstance(sid, str) and len(sid) > SAFETY_IDENTIFIER_MAX:
        body["safety_identifier"] = openai_safety_identifier(sid)
    if not request.capable("reasoning"):
        # As on the canonical path (openai_effort): OpenAI refuses it for these models.
        body.pop("reasoning_effort", None)
    if dialect is not Dialect.OPENAI:
        if "max_completion_tokens" in body:
            # It wins over `max_tokens`, as at OpenAI and in admission's reserve.
            body["max_tokens"] = body.pop("max_completion_tokens")
        for k in OPENAI_ONLY_FIELDS:
            body.pop(k, None)
        if dialect is Dialect.DEEPSEEK:
            body.update(deepseek_thinking(request))
        msgs = body["messages"]
        if any(m.get("role") == "developer" for m in msgs):
            body["messages"] = [{**m, "role": "system"} if m.get("role") == "developer" else m for m in msgs]
    return orjson.dumps(body)


class ChatPassthrough:
    """Upstream OpenAI chat SSE -> client OpenAI chat SSE with the least work: each chunk is
    decoded once (usage and finish reason are captured from it), the public model id replaces
    the upstream one, and usage is shown only if the client asked for it."""

    def __init__(self, request: Request) -> None:
        self._sse = SSEDecoder()
        self._model = request.model
        self._include_usage = request.include_usage
        self.usage: Usage | None = None
        self.finish_reason: FinishReason | None = None
        self.output_chars = 0  # for an estimate when the stream dies before usage arrives
        self.started = False
        self.done = False
        self.error: StreamError | None = None
        self.upstream_id = ""

    @reads_upstream("a stream event")
    def feed(self, data: bytes) -> bytes:
        out = []
        for ev in self._sse.feed(data):
            b = self._event(ev.data)
            if b:
                out.append(b)
        return b"".join(out)

    def flush(self) -> bytes:
        return b"".join(self._event(ev.data) for ev in self._sse.flush())

    def _event(self, payload: bytes) -> bytes:
        if payload == b"[DONE]":
            self.done = True
            return DONE
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(
                f"upstream sent a stream chunk that is not JSON: {payload[:80]!r}"
            ) from None
        if not isinstance(chunk, dict):
            raise UpstreamProtocolError("upstream sent a stream chunk that is not an object")
        if chunk.get("error"):
            message, etype, _, _ = _error_from_body(chunk)
            self.error = StreamError(ErrorKind.UPSTREAM_ERROR, message or "upstream error", etype)
            return b""
        if not self.started:
            self.started = True
            self.upstream_id = str(chunk.get("id") or "")
        chunk["model"] = self._model
        choices = chunk.get("choices")
        if choices:
            choice = choices[0]
            delta = choice.get("delta")
            if delta:
                for key in ("content", "reasoning_content", "refusal"):
                    val = delta.get(key)
                    if val:
                        self.output_chars += len(val)
                for tc in delta.get("tool_calls") or ():
                    fn = tc.get("function") or {}
                    self.output_chars += len(fn.get("arguments") or "") + len(fn.get("name") or "")
            fr = choice.get("finish_reason")
            if fr:
                self.finish_reason = finish_from_openai(fr)
        u = chunk.get("usage")
        if u is not None:
            self.usage = usage_from_openai(u)
            if not self._include_usage:
                if not choices:
                    return b""
                del chunk["usage"]
        elif not self._include_usage and "usage" in chunk:
            del chunk["usage"]
        return encode_data(orjson.dumps(chunk))


@reads_upstream("an answer")
def passthrough_response(body: bytes, request: Request) -> tuple[bytes, Response]:
    """A non-stream upstream body for the client (public model id) plus what accounting needs."""
    data = upstream_json_object(body)
    parsed = parse_chat_completion(data)
    data["model"] = request.model
    return orjson.dumps(data), parsed
