"""Anthropic Messages, both directions.

Ingress (`AnthropicIngress`): a client's `POST /v1/messages` body -> canonical; canonical
responses and stream events -> Anthropic JSON and SSE exactly as
https://docs.anthropic.com/en/api/messages-streaming defines them:

    message_start (complete usage) · per block: content_block_start, ping after the first one,
    content_block_delta (text_delta | input_json_delta | thinking_delta | signature_delta),
    content_block_stop · message_delta (stop_reason, cumulative usage) · message_stop
    (a started stream that fails ends with `event: error`, written by the edge from
    `errors.render_stream_error`).

Provider (`AnthropicProvider`): canonical -> an Anthropic upstream request (`x-api-key`,
`anthropic-version`, path `/v1/messages` under the SDK-style base URL `https://api.anthropic.com`),
upstream JSON / SSE -> canonical, including thinking with signatures,
redacted thinking, tool use with streamed `input_json_delta`, cache usage and in-stream errors.

Usage: Anthropic's `input_tokens` counts only the uncached prompt tokens; the prompt is
`input_tokens + cache_creation_input_tokens + cache_read_input_tokens`. Canonical
`Usage.input_tokens` counts the whole prompt, so this codec adds the cache counts when reading
Anthropic usage and subtracts them when rendering it.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import orjson

from crossmodel_protocols import validation as v
from crossmodel_protocols.canonical import (
    BlockStart,
    BlockStop,
    CacheControl,
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
    Tool,
    ToolArgumentsDelta,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
    UpstreamProtocolError,
    Usage,
    UsageUpdate,
    VendorDelta,
    VendorFields,
    VendorPart,
    carried_reasoning,
    carried_state,
)
from crossmodel_protocols.codec import (
    UpstreamError,
    UpstreamRequest,
    only_allowed_tools,
    reads_upstream,
    upstream_json_object,
)
from crossmodel_protocols.estimate import estimate_input_tokens
from crossmodel_protocols.sse import SSEDecoder, encode_event

CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_SSE = "text/event-stream"
ANTHROPIC_VERSION = "2023-06-01"
MIN_THINKING_BUDGET = 1024

# Top-level request fields of the Messages API (the `anthropic` SDK's MessageCreateParams, its
# beta additions, and the sampling parameters older models accept). Anthropic rejects any other
# field ("<field>: Extra inputs are not permitted"), so the ingress does too.
_MAPPED = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "metadata",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "thinking",
        "tool_choice",
        "tools",
    }
)
_FORWARDED = frozenset(
    {
        "cache_control",
        "container",
        "context_management",
        "diagnostics",
        "inference_geo",
        "mcp_servers",
        "output_config",
        "service_tier",
        "speed",
        "user_profile_id",
        "workspace_id",
        "compaction",
        "fallbacks",
        "thread",
    }
)

_STOP_TO_ANTHROPIC = {
    FinishReason.END_TURN: "end_turn",
    FinishReason.MAX_TOKENS: "max_tokens",
    FinishReason.STOP_SEQUENCE: "stop_sequence",
    FinishReason.TOOL_USE: "tool_use",
    FinishReason.PAUSE_TURN: "pause_turn",
    FinishReason.REFUSAL: "refusal",
    FinishReason.CONTENT_FILTER: "refusal",
    FinishReason.ERROR: "end_turn",
}
_STOP_FROM_ANTHROPIC = {
    "end_turn": FinishReason.END_TURN,
    "max_tokens": FinishReason.MAX_TOKENS,
    "stop_sequence": FinishReason.STOP_SEQUENCE,
    "tool_use": FinishReason.TOOL_USE,
    "pause_turn": FinishReason.PAUSE_TURN,
    "refusal": FinishReason.REFUSAL,
    "model_context_window_exceeded": FinishReason.MAX_TOKENS,
}

# Anthropic error types (https://docs.anthropic.com/en/api/errors) -> router error kinds.
_ERROR_KINDS = {
    "invalid_request_error": ErrorKind.UPSTREAM_INVALID_REQUEST,
    "not_found_error": ErrorKind.UPSTREAM_INVALID_REQUEST,
    "authentication_error": ErrorKind.UPSTREAM_AUTH,
    "permission_error": ErrorKind.UPSTREAM_AUTH,
    "billing_error": ErrorKind.UPSTREAM_AUTH,
    "request_too_large": ErrorKind.REQUEST_TOO_LARGE,
    "rate_limit_error": ErrorKind.UPSTREAM_RATE_LIMITED,
    "api_error": ErrorKind.UPSTREAM_ERROR,
    "overloaded_error": ErrorKind.UPSTREAM_OVERLOADED,
    "timeout_error": ErrorKind.UPSTREAM_TIMEOUT,
}

# OpenAI-style effort -> thinking budget, when a client asked for effort but not a budget.
_EFFORT_BUDGET = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32000, "max": 32000}


def stop_to_anthropic(reason: FinishReason | None) -> str | None:
    return None if reason is None else _STOP_TO_ANTHROPIC[reason]


def stop_from_anthropic(reason: Any) -> FinishReason | None:
    if not isinstance(reason, str):
        return None
    return _STOP_FROM_ANTHROPIC.get(reason, FinishReason.END_TURN)


# ============================================================================================
# Usage


def usage_from_anthropic(u: Any, base: Usage | None = None) -> Usage | None:
    """Anthropic usage (message, message_start or the cumulative message_delta) -> canonical.
    Fields absent from `u` keep their value from `base` (message_delta may omit the input
    counts, which then stay as message_start reported them)."""
    if not isinstance(u, dict):
        return None
    b = base or Usage()
    prev_uncached = b.input_tokens - b.cached_input_tokens - b.cache_write_tokens
    uncached = _int(u.get("input_tokens"), prev_uncached)
    read = _int(u.get("cache_read_input_tokens"), b.cached_input_tokens)
    write = _int(u.get("cache_creation_input_tokens"), b.cache_write_tokens)
    details = u.get("output_tokens_details")
    reasoning = b.reasoning_tokens
    if isinstance(details, dict):
        reasoning = _int(details.get("thinking_tokens"), reasoning)
    return Usage(
        input_tokens=uncached + read + write,
        output_tokens=_int(u.get("output_tokens"), b.output_tokens),
        cached_input_tokens=read,
        cache_write_tokens=write,
        reasoning_tokens=reasoning,
    )


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def usage_to_anthropic(u: Usage) -> dict[str, Any]:
    """Canonical -> Anthropic usage, all four counters always present."""
    out: dict[str, Any] = {
        "input_tokens": max(0, u.input_tokens - u.cached_input_tokens - u.cache_write_tokens),
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cached_input_tokens,
        "output_tokens": u.output_tokens,
    }
    if u.reasoning_tokens:
        out["output_tokens_details"] = {"thinking_tokens": u.reasoning_tokens}
    return out


# ============================================================================================
# Ingress: parse


def _cache_control(obj: dict[str, Any], path: str) -> CacheControl | None:
    cc = v.opt_object(obj, "cache_control", f"{path}.cache_control")
    if cc is None:
        return None
    kind = v.req_str(cc, "type", f"{path}.cache_control.type")
    if kind != "ephemeral":
        raise v.invalid_value(f"{path}.cache_control.type", kind, ["ephemeral"])
    ttl = v.opt_str(cc, "ttl", f"{path}.cache_control.ttl")
    if ttl is not None and ttl not in ("5m", "1h"):
        raise v.invalid_value(f"{path}.cache_control.ttl", ttl, ["5m", "1h"])
    return CacheControl(kind, ttl)


def _text_block(b: dict[str, Any], path: str) -> TextPart:
    citations = v.opt_list(b, "citations", f"{path}.citations")
    return TextPart(
        v.req_str(b, "text", f"{path}.text"),
        cache_control=_cache_control(b, path),
        annotations=citations or None,
    )


def _image_block(b: dict[str, Any], path: str) -> ImagePart:
    src = v.opt_object(b, "source", f"{path}.source")
    if src is None:
        raise v.missing(f"{path}.source")
    kind = v.req_str(src, "type", f"{path}.source.type")
    cc = _cache_control(b, path)
    if kind == "base64":
        media = v.req_str(src, "media_type", f"{path}.source.media_type")
        if media not in ("image/jpeg", "image/png", "image/gif", "image/webp"):
            raise v.invalid_value(
                f"{path}.source.media_type", media, ["image/jpeg", "image/png", "image/gif", "image/webp"]
            )
        return ImagePart(
            data=v.req_str(src, "data", f"{path}.source.data"), media_type=media, cache_control=cc, param=path
        )
    if kind == "url":
        url = v.req_str(src, "url", f"{path}.source.url")
        if not url.startswith(("http://", "https://")):
            raise v.invalid_value(f"{path}.source.url", url[:48], why="expected an http(s) URL.")
        return ImagePart(url=url, cache_control=cc, param=path)
    raise v.invalid_value(f"{path}.source.type", kind, ["base64", "url"])


def _document_block(b: dict[str, Any], path: str) -> FilePart:
    src = v.opt_object(b, "source", f"{path}.source")
    if src is None:
        raise v.missing(f"{path}.source")
    kind = v.req_str(src, "type", f"{path}.source.type")
    common: dict[str, Any] = {
        "filename": v.opt_str(b, "title", f"{path}.title"),
        "context": v.opt_str(b, "context", f"{path}.context"),
        "citations": v.opt_object(b, "citations", f"{path}.citations"),
        "cache_control": _cache_control(b, path),
    }
    if kind == "base64":
        return FilePart(
            data=v.req_str(src, "data", f"{path}.source.data"),
            media_type=v.req_str(src, "media_type", f"{path}.source.media_type"),
            **common,
        )
    if kind == "text":
        text = v.req_str(src, "data", f"{path}.source.data")
        return FilePart(
            data=base64.b64encode(text.encode()).decode(),
            media_type=v.opt_str(src, "media_type", f"{path}.source.media_type") or "text/plain",
            **common,
        )
    if kind == "url":
        return FilePart(url=v.req_str(src, "url", f"{path}.source.url"), param=f"{path}.source.url", **common)
    if kind == "file":
        return FilePart(
            file_id=v.req_str(src, "file_id", f"{path}.source.file_id"),
            param=f"{path}.source.file_id",
            **common,
        )
    raise v.invalid_value(f"{path}.source.type", kind, ["base64", "text", "url", "file"])


def _tool_result_block(b: dict[str, Any], path: str) -> ToolResultPart:
    call_id = v.req_str(b, "tool_use_id", f"{path}.tool_use_id")
    raw = b.get("content")
    content: list[TextPart | ImagePart | FilePart] = []
    if isinstance(raw, str):
        content.append(TextPart(raw))
    elif isinstance(raw, list):
        for i, item in enumerate(raw):
            pp = f"{path}.content[{i}]"
            c = v.as_object(item, pp)
            kind = v.req_str(c, "type", f"{pp}.type")
            if kind == "text":
                content.append(_text_block(c, pp))
            elif kind == "image":
                content.append(_image_block(c, pp))
            elif kind == "document":
                content.append(_document_block(c, pp))
            else:
                raise v.invalid_value(f"{pp}.type", kind, ["text", "image", "document"])
    elif raw is not None:
        raise v.wrong_type(f"{path}.content", "one of a string or array of objects", raw)
    return ToolResultPart(
        call_id,
        content,
        is_error=bool(v.opt_bool(b, "is_error", f"{path}.is_error")),
        cache_control=_cache_control(b, path),
    )


def _tool_use_block(b: dict[str, Any], path: str) -> ToolCallPart:
    tool_input = b.get("input")
    if tool_input is None:
        raise v.missing(f"{path}.input")
    if not isinstance(tool_input, dict):
        raise v.wrong_type(f"{path}.input", "an object", tool_input)
    return ToolCallPart(
        id=v.req_str(b, "id", f"{path}.id"),
        name=v.req_str(b, "name", f"{path}.name"),
        arguments=orjson.dumps(tool_input).decode(),
        cache_control=_cache_control(b, path),
    )


_USER_BLOCKS = ("text", "image", "document", "tool_result")
_ASSISTANT_BLOCKS = ("text", "thinking", "redacted_thinking", "tool_use")
# The other content blocks of the Messages API (the `anthropic` SDK's ContentBlockParam and
# BetaContentBlockParam): server tool calls and their results, which every later turn of a
# conversation with server tools carries (and a `pause_turn` continuation needs), search results,
# container uploads, MCP and compaction blocks. They mean something to Anthropic only: kept
# verbatim (`VendorPart`) and sent back to Anthropic as they came, left out for other vendors.
VERBATIM_BLOCKS = (
    "server_tool_use",
    "web_search_tool_result",
    "web_fetch_tool_result",
    "code_execution_tool_result",
    "bash_code_execution_tool_result",
    "text_editor_code_execution_tool_result",
    "tool_search_tool_result",
    "advisor_tool_result",
    "search_result",
    "container_upload",
    "mcp_tool_use",
    "mcp_tool_result",
    "mcp_tool_listing",
    "compaction",
    "tool_addition",
    "tool_removal",
    "fallback",
)
# Anthropic's citation types (`TextBlock.citations`); OpenAI's annotations are of other types.
_CITATION_TYPES = frozenset(
    {
        "char_location",
        "page_location",
        "content_block_location",
        "web_search_result_location",
        "search_result_location",
    }
)


def anthropic_citations(annotations: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """A text part's annotations when they are Anthropic citations (from an Anthropic client or
    Claude), else None: another vendor's annotations are nothing Anthropic accepts."""
    if not annotations or not all(a.get("type") in _CITATION_TYPES for a in annotations):
        return None
    return annotations


def _parse_message(m: dict[str, Any], path: str) -> list[Message]:
    """One Anthropic message -> canonical messages (a user message carrying tool results
    becomes a `tool` message followed by a `user` message with the rest)."""
    role = v.req_str(m, "role", f"{path}.role")
    if role not in ("user", "assistant"):
        raise v.invalid_value(f"{path}.role", role, ["user", "assistant"])
    content = m.get("content")
    if content is None:
        raise v.missing(f"{path}.content")
    if isinstance(content, str):
        return [Message(role, [TextPart(content)])]  # type: ignore[arg-type]
    if not isinstance(content, list):
        raise v.wrong_type(f"{path}.content", "one of a string or array of objects", content)
    parts: list[Part] = []
    results: list[Part] = []
    allowed = (_USER_BLOCKS if role == "user" else _ASSISTANT_BLOCKS) + VERBATIM_BLOCKS
    for i, item in enumerate(content):
        pp = f"{path}.content[{i}]"
        b = v.as_object(item, pp)
        kind = v.req_str(b, "type", f"{pp}.type")
        if kind not in allowed:
            raise v.invalid_value(f"{pp}.type", kind, allowed)
        if kind in VERBATIM_BLOCKS:
            parts.append(VendorPart(b, Protocol.ANTHROPIC_MESSAGES))
        elif kind == "text":
            parts.append(_text_block(b, pp))
        elif kind == "image":
            parts.append(_image_block(b, pp))
        elif kind == "document":
            parts.append(_document_block(b, pp))
        elif kind == "tool_result":
            results.append(_tool_result_block(b, pp))
        elif kind == "tool_use":
            parts.append(_tool_use_block(b, pp))
        elif kind == "thinking":
            sig = v.opt_str(b, "signature", f"{pp}.signature")
            if sig is None:
                raise v.missing(f"{pp}.signature")
            text = v.req_str(b, "thinking", f"{pp}.thinking")
            # Another vendor's signature comes back tagged with its vendor (Gemini's goes back to
            # Gemini only); an empty one is what this gateway renders for unsigned reasoning,
            # which must never be sent to Anthropic as a signed block.
            parts.append(
                carried_reasoning(sig, text)
                or ReasoningPart(text, signature=sig, provider=Protocol.ANTHROPIC_MESSAGES if sig else None)
            )
        else:  # redacted_thinking
            parts.append(
                ReasoningPart(
                    redacted_data=v.req_str(b, "data", f"{pp}.data"), provider=Protocol.ANTHROPIC_MESSAGES
                )
            )
    out: list[Message] = []
    if results:
        out.append(Message("tool", results))
    if parts or not results:
        out.append(Message(role, parts))  # type: ignore[arg-type]
    return out


def _parse_system(raw: Any) -> list[SystemPart]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [SystemPart(raw)] if raw else []
    if not isinstance(raw, list):
        raise v.wrong_type("system", "one of a string or array of objects", raw)
    out: list[SystemPart] = []
    for i, item in enumerate(raw):
        path = f"system[{i}]"
        b = v.as_object(item, path)
        kind = v.req_str(b, "type", f"{path}.type")
        if kind != "text":
            raise v.invalid_value(f"{path}.type", kind, ["text"])
        out.append(SystemPart(v.req_str(b, "text", f"{path}.text"), cache_control=_cache_control(b, path)))
    return out


def _parse_tools(data: dict[str, Any]) -> list[Tool]:
    raw = v.opt_list(data, "tools", "tools")
    if not raw:
        return []
    tools: list[Tool] = []
    for i, item in enumerate(raw):
        path = f"tools[{i}]"
        t = v.as_object(item, path)
        kind = v.opt_str(t, "type", f"{path}.type")
        if kind is not None and kind != "custom":
            # A server or client tool Anthropic defines (web_search_…, bash_…, text_editor_…).
            tools.append(
                Tool(
                    name=v.req_str(t, "name", f"{path}.name"),
                    kind=kind,
                    raw=t,
                    raw_protocol=Protocol.ANTHROPIC_MESSAGES,
                )
            )
            continue
        schema = v.opt_object(t, "input_schema", f"{path}.input_schema")
        if schema is None:
            raise v.missing(f"{path}.input_schema")
        tools.append(
            Tool(
                name=v.req_str(t, "name", f"{path}.name"),
                description=v.opt_str(t, "description", f"{path}.description"),
                parameters=schema,
                strict=v.opt_bool(t, "strict", f"{path}.strict"),
                cache_control=_cache_control(t, path),
            )
        )
    return tools


def _parse_tool_choice(data: dict[str, Any]) -> ToolChoice | None:
    tc = v.opt_object(data, "tool_choice", "tool_choice")
    if tc is None:
        return None
    kind = v.req_str(tc, "type", "tool_choice.type")
    disable = v.opt_bool(tc, "disable_parallel_tool_use", "tool_choice.disable_parallel_tool_use")
    if kind == "auto":
        return ToolChoice("auto", disable_parallel=disable)
    if kind == "any":
        return ToolChoice("required", disable_parallel=disable)
    if kind == "none":
        return ToolChoice("none")
    if kind == "tool":
        return ToolChoice("tool", v.req_str(tc, "name", "tool_choice.name"), disable)
    raise v.invalid_value("tool_choice.type", kind, ["auto", "any", "tool", "none"])


def _parse_thinking(data: dict[str, Any]) -> ReasoningConfig | None:
    th = v.opt_object(data, "thinking", "thinking")
    if th is None:
        return None
    kind = v.req_str(th, "type", "thinking.type")
    if kind == "enabled":
        budget = v.opt_int(th, "budget_tokens", "thinking.budget_tokens", minimum=MIN_THINKING_BUDGET)
        if budget is None:
            raise v.missing("thinking.budget_tokens")
        return ReasoningConfig(enabled=True, budget_tokens=budget)
    if kind == "adaptive":
        return ReasoningConfig(enabled=True)
    if kind == "disabled":
        return ReasoningConfig(enabled=False)
    if kind == "between_tools":
        return ReasoningConfig(enabled=True)
    raise v.invalid_value("thinking.type", kind, ["enabled", "disabled", "adaptive"])


def _parse_output_format(data: dict[str, Any]) -> ResponseFormat | None:
    oc = v.opt_object(data, "output_config", "output_config")
    if oc is None:
        return None
    fmt = v.opt_object(oc, "format", "output_config.format")
    if fmt is None:
        return None
    kind = v.req_str(fmt, "type", "output_config.format.type")
    if kind != "json_schema":
        raise v.invalid_value("output_config.format.type", kind, ["json_schema"])
    schema = v.opt_object(fmt, "schema", "output_config.format.schema")
    if schema is None:
        raise v.missing("output_config.format.schema")
    return ResponseFormat("json_schema", schema=schema, strict=True)


def _parse_stop_sequences(data: dict[str, Any]) -> list[str]:
    raw = v.opt_list(data, "stop_sequences", "stop_sequences")
    if raw is None:
        return []
    for i, s in enumerate(raw):
        if not isinstance(s, str):
            raise v.wrong_type(f"stop_sequences[{i}]", "a string", s)
    return list(raw)


def _betas(headers: Mapping[str, str]) -> list[str]:
    raw = headers.get("anthropic-beta") or ""
    return [b.strip() for b in raw.split(",") if b.strip()]


def parse_messages_request(data: dict[str, Any], headers: Mapping[str, str] | None = None) -> Request:
    """An already-decoded Messages body -> canonical."""
    for key in data:
        if key not in _MAPPED and key not in _FORWARDED:
            raise InvalidRequest(f"{key}: Extra inputs are not permitted", param=key, code="extra_forbidden")
    model = v.req_str(data, "model", "model")
    max_tokens = v.opt_int(data, "max_tokens", "max_tokens", minimum=0)
    if max_tokens is None:
        raise v.missing("max_tokens")
    raw_messages = data.get("messages")
    if raw_messages is None:
        raise v.missing("messages")
    if not isinstance(raw_messages, list):
        raise v.wrong_type("messages", "an array", raw_messages)
    if not raw_messages:
        raise InvalidRequest(
            "Invalid 'messages': empty array. At least one message is required.",
            param="messages",
            code="empty_array",
        )
    messages: list[Message] = []
    for i, item in enumerate(raw_messages):
        messages.extend(_parse_message(v.as_object(item, f"messages[{i}]"), f"messages[{i}]"))
    metadata = v.opt_object(data, "metadata", "metadata") or {}
    end_user = v.opt_str(metadata, "user_id", "metadata.user_id") or ""
    return Request(
        model=model,
        messages=messages,
        system=_parse_system(data.get("system")),
        stream=bool(v.opt_bool(data, "stream", "stream")),
        max_tokens=max_tokens,
        temperature=v.opt_number(data, "temperature", "temperature", minimum=0, maximum=1),
        top_p=v.opt_number(data, "top_p", "top_p", minimum=0, maximum=1),
        top_k=v.opt_int(data, "top_k", "top_k", minimum=0),
        stop=_parse_stop_sequences(data),
        tools=_parse_tools(data),
        tool_choice=_parse_tool_choice(data),
        response_format=_parse_output_format(data),
        reasoning=_parse_thinking(data),
        end_user=end_user,
        # Anthropic reports usage in every stream; clients see it in message_start/delta.
        include_usage=True,
        anthropic_beta=_betas(headers or {}),
        extra={k: val for k, val in data.items() if k in _FORWARDED},
        ingress=Protocol.ANTHROPIC_MESSAGES,
        raw=data,
    )


# ============================================================================================
# Ingress: render


def message_id(upstream_id: str) -> str:
    """Anthropic ids start with `msg_`; another vendor's id is kept after the prefix so the
    upstream call can still be found from it."""
    if upstream_id.startswith("msg_"):
        return upstream_id
    return "msg_" + (upstream_id or "0")


def _tool_input(arguments: str) -> dict[str, Any]:
    """A tool call's JSON text -> the `input` object. Arguments that are not a JSON object
    (some vendors emit invalid JSON) are kept under `_raw` rather than lost."""
    if not arguments.strip():
        return {}
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {"_raw": arguments}
    return parsed if isinstance(parsed, dict) else {"_raw": arguments}


def _cc(cc: CacheControl | None) -> dict[str, Any] | None:
    if cc is None:
        return None
    out: dict[str, Any] = {"type": cc.type}
    if cc.ttl:
        out["ttl"] = cc.ttl
    return out


def _response_block(p: Part) -> dict[str, Any] | None:
    if isinstance(p, TextPart):
        block: dict[str, Any] = {"type": "text", "text": p.text}
        citations = anthropic_citations(p.annotations)
        if citations:
            block["citations"] = citations
        return block
    if isinstance(p, RefusalPart):
        return {"type": "text", "text": p.text}
    if isinstance(p, ReasoningPart):
        if p.redacted_data is not None:
            return {"type": "redacted_thinking", "data": p.redacted_data}
        return {"type": "thinking", "thinking": p.text, "signature": _signature_out(p.signature, p.provider)}
    if isinstance(p, ToolCallPart):
        return {"type": "tool_use", "id": p.id, "name": p.name, "input": _tool_input(p.arguments)}
    return _verbatim(p)


def _signature_out(signature: str | None, provider: Protocol | None) -> str:
    """A thinking block's signature for an Anthropic client: Anthropic's own as it came, another
    vendor's (a Gemini thought signature) tagged with its vendor so that it goes back there."""
    if not signature:
        return ""
    if provider is Protocol.ANTHROPIC_MESSAGES or provider is None:
        return signature
    return carried_state(ReasoningPart(signature=signature, provider=provider)) or ""


def render_message(resp: Response, request: Request) -> dict[str, Any]:
    content = [b for b in (_response_block(p) for p in resp.content) if b is not None]
    reason = resp.finish_reason or FinishReason.END_TURN
    return {
        "id": message_id(resp.id),
        "type": "message",
        "role": "assistant",
        "model": request.model,
        "content": content,
        "stop_reason": stop_to_anthropic(reason),
        "stop_sequence": resp.stop_sequence if reason is FinishReason.STOP_SEQUENCE else None,
        "usage": _usage_out(resp.usage, resp.vendor),
        **_fields_out(resp.vendor, _MESSAGE_FIELDS),
    }


def _usage_out(usage: Usage | None, vendor: VendorFields | None) -> dict[str, Any]:
    out = usage_to_anthropic(usage or Usage())
    if vendor is not None and vendor.provider is Protocol.ANTHROPIC_MESSAGES:
        out.update(vendor.usage)
    return out


def _fields_out(vendor: VendorFields | None, mapped: frozenset[str]) -> dict[str, Any]:
    if vendor is None or vendor.provider is not Protocol.ANTHROPIC_MESSAGES:
        return {}
    return {k: val for k, val in vendor.fields.items() if k not in mapped}


_PING = encode_event("ping", b'{"type":"ping"}')
_MESSAGE_STOP = encode_event("message_stop", b'{"type":"message_stop"}')


class AnthropicStreamRenderer:
    """Canonical events -> Anthropic SSE. Blocks are re-indexed from 0 in the order they open
    and framed one at a time (a block still open when another starts is stopped first), as
    Anthropic's own streams are. `message_start` carries the upstream's usage when it gave one
    up front (Anthropic does); otherwise the input is estimated from the request, and
    `message_delta` carries the final cumulative counts (input and cache counts included,
    which the SDKs let override message_start)."""

    content_type = CONTENT_TYPE_SSE

    def __init__(self, request: Request, *, fallback_id: str = "msg_0") -> None:
        self._request = request
        self._model = request.model
        self._id = fallback_id
        self._started = False
        self._pinged = False
        self._usage: Usage | None = None
        self._finish: FinishReason | None = None
        self._stop_sequence: str | None = None
        self._vendor: VendorFields | None = None
        self._index: dict[int, int] = {}  # canonical block index -> Anthropic index
        self._kind: dict[int, str] = {}  # Anthropic index -> block type
        self._provider: dict[int, Protocol | None] = {}  # Anthropic index -> reasoning's vendor
        self._open: int | None = None  # Anthropic index of the open block
        self._closed = False

    # -- framing helpers

    def _start(self) -> bytes:
        self._started = True
        usage = self._usage or Usage(input_tokens=estimate_input_tokens(self._request))
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage_to_anthropic(usage),
        }
        return encode_event("message_start", orjson.dumps({"type": "message_start", "message": message}))

    def _stop_open(self) -> bytes:
        if self._open is None:
            return b""
        idx, self._open = self._open, None
        return encode_event("content_block_stop", b'{"type":"content_block_stop","index":%d}' % idx)

    def _open_block(self, canonical: int, block: dict[str, Any]) -> bytes:
        out = self._stop_open()
        idx = self._index[canonical] = len(self._index)
        self._kind[idx] = block["type"]
        self._open = idx
        out += encode_event(
            "content_block_start",
            orjson.dumps({"type": "content_block_start", "index": idx, "content_block": block}),
        )
        if not self._pinged:
            self._pinged = True
            out += _PING
        return out

    def _delta(self, idx: int, delta: dict[str, Any]) -> bytes:
        return encode_event(
            "content_block_delta", orjson.dumps({"type": "content_block_delta", "index": idx, "delta": delta})
        )

    def _target(self, canonical: int, kind: str) -> tuple[int, bytes]:
        """The Anthropic index for a delta; opens a block when the producer never announced it."""
        idx = self._index.get(canonical)
        if idx is not None:
            return idx, b""
        block: dict[str, Any]
        if kind == "thinking":
            block = {"type": "thinking", "thinking": "", "signature": ""}
        elif kind == "tool_use":
            block = {"type": "tool_use", "id": f"toolu_{canonical}", "name": "", "input": {}}
        else:
            block = {"type": "text", "text": ""}
        head = self._open_block(canonical, block)
        return self._index[canonical], head

    # -- StreamRenderer

    def render(self, event: StreamEvent) -> bytes:
        if self._closed:
            return b""
        if isinstance(event, StreamStart):
            if event.id:
                self._id = message_id(event.id)
            if event.usage is not None:
                self._usage = event.usage
            return b"" if self._started else self._start()
        if isinstance(event, UsageUpdate):
            self._usage = event.usage
            return b""
        head = b"" if self._started else self._start()
        if isinstance(event, BlockStart):
            return head + self._block_start(event)
        if isinstance(event, TextDelta | RefusalDelta):
            if not event.text:
                return head
            idx, more = self._target(event.index, "text")
            return head + more + self._delta(idx, {"type": "text_delta", "text": event.text})
        if isinstance(event, ReasoningDelta):
            idx, more = self._target(event.index, "thinking")
            if self._kind.get(idx) != "thinking":
                return head + more
            out = head + more
            if event.text:
                out += self._delta(idx, {"type": "thinking_delta", "thinking": event.text})
            if event.signature:
                sig = _signature_out(event.signature, self._provider.get(idx))
                out += self._delta(idx, {"type": "signature_delta", "signature": sig})
            return out
        if isinstance(event, ToolArgumentsDelta):
            if not event.arguments:
                return head
            idx, more = self._target(event.index, "tool_use")
            return (
                head + more + self._delta(idx, {"type": "input_json_delta", "partial_json": event.arguments})
            )
        if isinstance(event, VendorDelta):
            idx_ = self._index.get(event.index)
            if event.provider is not Protocol.ANTHROPIC_MESSAGES or idx_ is None or idx_ != self._open:
                return head
            return head + self._delta(idx_, event.raw)
        if isinstance(event, BlockStop):
            stopped = self._index.get(event.index)
            if stopped is not None and stopped == self._open:
                return head + self._stop_open()
            return head
        if isinstance(event, StreamFinish):
            self._finish = event.finish_reason
            self._stop_sequence = event.stop_sequence
            self._vendor = event.vendor
            return head + self._stop_open()
        return b""  # StreamError: the edge ends the stream (errors.render_stream_error)

    def _block_start(self, event: BlockStart) -> bytes:
        part = event.part
        if isinstance(part, ToolCallPart):
            out = self._open_block(
                event.index, {"type": "tool_use", "id": part.id, "name": part.name, "input": {}}
            )
            if part.arguments:
                out += self._delta(
                    self._index[event.index], {"type": "input_json_delta", "partial_json": part.arguments}
                )
            return out
        if isinstance(part, ReasoningPart):
            if part.redacted_data is not None:
                return self._open_block(
                    event.index, {"type": "redacted_thinking", "data": part.redacted_data}
                )
            out = self._open_block(event.index, {"type": "thinking", "thinking": "", "signature": ""})
            idx = self._index[event.index]
            self._provider[idx] = part.provider
            if part.text:
                out += self._delta(idx, {"type": "thinking_delta", "thinking": part.text})
            if part.signature:
                sig = _signature_out(part.signature, part.provider)
                out += self._delta(idx, {"type": "signature_delta", "signature": sig})
            return out
        if isinstance(part, TextPart | RefusalPart):
            out = self._open_block(event.index, {"type": "text", "text": ""})
            if part.text:
                out += self._delta(self._index[event.index], {"type": "text_delta", "text": part.text})
            return out
        block = _verbatim(part)
        return b"" if block is None else self._open_block(event.index, block)

    def close(self) -> bytes:
        if self._closed:
            return b""
        out = b"" if self._started else self._start()
        out += self._stop_open()
        self._closed = True
        reason = self._finish or FinishReason.END_TURN
        delta = {
            "type": "message_delta",
            "delta": {
                "stop_reason": stop_to_anthropic(reason),
                "stop_sequence": self._stop_sequence if reason is FinishReason.STOP_SEQUENCE else None,
                **_fields_out(self._vendor, _DELTA_FIELDS),
            },
            "usage": _usage_out(self._usage, self._vendor),
        }
        return out + encode_event("message_delta", orjson.dumps(delta)) + _MESSAGE_STOP


class AnthropicIngress:
    """The Messages ingress codec."""

    protocol = Protocol.ANTHROPIC_MESSAGES

    def parse_request(self, body: bytes, headers: Mapping[str, str]) -> Request:
        return parse_messages_request(v.load_object(body), headers)

    def render_response(self, response: Response, request: Request) -> bytes:
        return orjson.dumps(render_message(response, request))

    def stream_renderer(self, request: Request) -> AnthropicStreamRenderer:
        return AnthropicStreamRenderer(request)


# ============================================================================================
# Provider: build


def _image_to_anthropic(p: ImagePart) -> dict[str, Any]:
    if p.url is not None:
        source: dict[str, Any] = {"type": "url", "url": p.url}
    else:
        source = {"type": "base64", "media_type": p.media_type or "image/png", "data": p.data or ""}
    block: dict[str, Any] = {"type": "image", "source": source}
    cc = _cc(p.cache_control)
    if cc:
        block["cache_control"] = cc
    return block


def _file_to_anthropic(p: FilePart, ingress: Protocol) -> dict[str, Any]:
    if p.file_id:
        if ingress is not Protocol.ANTHROPIC_MESSAGES:
            # Another vendor's file id (OpenAI `file-…`) names nothing in Anthropic's Files API.
            raise v.unsupported_file(p.param, "a file id of another vendor")
        source: dict[str, Any] = {"type": "file", "file_id": p.file_id}
    elif p.url is not None:
        source = {"type": "url", "url": p.url}
    elif (p.media_type or "").startswith("text/"):
        # Anthropic takes base64 documents as PDF only; plain text has its own source.
        text = base64.b64decode(p.data or "").decode(errors="replace")
        source = {"type": "text", "media_type": "text/plain", "data": text}
    else:
        source = {"type": "base64", "media_type": p.media_type or "application/pdf", "data": p.data or ""}
    block: dict[str, Any] = {"type": "document", "source": source}
    if p.filename:
        block["title"] = p.filename
    if p.context is not None:
        block["context"] = p.context
    if p.citations is not None:
        block["citations"] = p.citations
    cc = _cc(p.cache_control)
    if cc:
        block["cache_control"] = cc
    return block


def _text_to_anthropic(p: TextPart) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": p.text}
    citations = anthropic_citations(p.annotations)
    if citations:
        block["citations"] = citations
    cc = _cc(p.cache_control)
    if cc:
        block["cache_control"] = cc
    return block


def _user_block(p: Part, ingress: Protocol) -> dict[str, Any] | None:
    if isinstance(p, TextPart):
        return _text_to_anthropic(p)
    if isinstance(p, ImagePart):
        return _image_to_anthropic(p)
    if isinstance(p, FilePart):
        return _file_to_anthropic(p, ingress)
    if isinstance(p, RefusalPart):
        return {"type": "text", "text": p.text}
    return _verbatim(p)


def _verbatim(p: Part) -> dict[str, Any] | None:
    """A block only Anthropic has, as it came from Anthropic (or an Anthropic client)."""
    if isinstance(p, VendorPart) and p.provider is Protocol.ANTHROPIC_MESSAGES:
        return p.raw
    return None


def _tool_result_to_anthropic(p: ToolResultPart, ingress: Protocol) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": p.tool_call_id}
    if all(isinstance(c, TextPart) and c.cache_control is None for c in p.content):
        block["content"] = "".join(c.text for c in p.content if isinstance(c, TextPart))
    else:
        block["content"] = [b for b in (_user_block(c, ingress) for c in p.content) if b is not None]
    if p.is_error:
        block["is_error"] = True
    cc = _cc(p.cache_control)
    if cc:
        block["cache_control"] = cc
    return block


def _assistant_block(p: Part) -> dict[str, Any] | None:
    if isinstance(p, ReasoningPart):
        # Only Anthropic-signed thinking can go back to Anthropic; another vendor's reasoning
        # has no signature and would be rejected, so it is left out of the history.
        if p.redacted_data is not None:
            return {"type": "redacted_thinking", "data": p.redacted_data}
        if p.signature and p.provider in (Protocol.ANTHROPIC_MESSAGES, None):
            return {"type": "thinking", "thinking": p.text, "signature": p.signature}
        return None
    if isinstance(p, ToolCallPart):
        block: dict[str, Any] = {
            "type": "tool_use",
            "id": p.id,
            "name": p.name,
            "input": _tool_input(p.arguments),
        }
        cc = _cc(p.cache_control)
        if cc:
            block["cache_control"] = cc
        return block
    if isinstance(p, TextPart):
        if not p.text and p.cache_control is None:
            return None  # Anthropic rejects empty text blocks
        return _text_to_anthropic(p)
    if isinstance(p, RefusalPart):
        return {"type": "text", "text": p.text}
    return _verbatim(p)


def messages_to_anthropic(request: Request) -> list[dict[str, Any]]:
    """Canonical messages -> Anthropic `messages`: `tool` messages and the user message after
    them merge into one user turn (tool results first, as Anthropic requires)."""
    out: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []  # tool_result blocks waiting for their user turn
    for m in request.messages:
        if m.role == "tool":
            pending.extend(
                _tool_result_to_anthropic(p, request.ingress)
                for p in m.content
                if isinstance(p, ToolResultPart)
            )
            continue
        if m.role == "user":
            blocks = pending + [
                b for b in (_user_block(p, request.ingress) for p in m.content) if b is not None
            ]
            pending = []
            if (
                len(blocks) == 1
                and blocks[0]["type"] == "text"
                and "cache_control" not in blocks[0]
                and "citations" not in blocks[0]
                and len(m.content) == 1
            ):
                out.append({"role": "user", "content": blocks[0]["text"]})
            else:
                out.append({"role": "user", "content": blocks})
            continue
        if pending:
            out.append({"role": "user", "content": pending})
            pending = []
        ablocks = [b for b in (_assistant_block(p) for p in m.content) if b is not None]
        if ablocks:  # a turn of only another vendor's items (OpenAI's tool calls) goes without them
            out.append({"role": "assistant", "content": ablocks})
    if pending:
        out.append({"role": "user", "content": pending})
    return out


def _system_to_anthropic(request: Request) -> str | list[dict[str, Any]] | None:
    if not request.system:
        return None
    if len(request.system) == 1 and request.system[0].cache_control is None:
        return request.system[0].text
    out: list[dict[str, Any]] = []
    for s in request.system:
        block: dict[str, Any] = {"type": "text", "text": s.text}
        cc = _cc(s.cache_control)
        if cc:
            block["cache_control"] = cc
        out.append(block)
    return out


def _tools_to_anthropic(request: Request) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, t in enumerate(request.tools):
        if t.kind != "function":
            if t.raw is None or t.raw_protocol is not Protocol.ANTHROPIC_MESSAGES:
                raise v.unsupported_tool(i, t.kind)
            out.append(t.raw)
            continue
        tool: dict[str, Any] = {"name": t.name}
        if t.description is not None:
            tool["description"] = t.description
        tool["input_schema"] = (
            t.parameters if t.parameters is not None else {"type": "object", "properties": {}}
        )
        if t.strict is not None:
            tool["strict"] = t.strict
        cc = _cc(t.cache_control)
        if cc:
            tool["cache_control"] = cc
        out.append(tool)
    return out


def _tool_choice_to_anthropic(tc: ToolChoice) -> dict[str, Any]:
    kind = {"auto": "auto", "required": "any", "tool": "tool", "none": "none"}[tc.mode]
    out: dict[str, Any] = {"type": kind}
    if tc.mode == "tool":
        out["name"] = tc.name
    if tc.disable_parallel is not None and tc.mode != "none":
        out["disable_parallel_tool_use"] = tc.disable_parallel
    return out


def _tool_turn_without_thinking(messages: list[dict[str, Any]]) -> bool:
    """The conversation continues a tool-use turn (the last user turn carries tool results)
    whose assistant message does not start with a thinking block: Anthropic then refuses
    thinking ("a final `assistant` message must start with a thinking block")."""
    if not messages or messages[-1]["role"] != "user" or not isinstance(messages[-1]["content"], list):
        return False
    if not any(b.get("type") == "tool_result" for b in messages[-1]["content"]):
        return False
    for m in reversed(messages[:-1]):
        if m["role"] == "assistant":
            content = m["content"]
            return not content or content[0].get("type") not in ("thinking", "redacted_thinking")
    return False


def _fit_anthropic_rules(body: dict[str, Any]) -> None:
    """Sampling and thinking from an OpenAI protocol, fitted to what Anthropic accepts
    (https://platform.claude.com/docs/en/build-with-claude/extended-thinking). Thinking is
    advisory, so it is left off rather than the request refused when it continues a tool turn
    without a signed thinking block (a chat client has no field for the signature) or when
    the tool choice forces a call. OpenAI's temperature runs to 2, Anthropic's to 1. With
    thinking, only temperature 1, top_p 0.95-1 and no top_k are accepted; and recent models
    refuse temperature and top_p together, so top_p gives way."""
    forced = body.get("tool_choice", {}).get("type") in ("any", "tool")
    if "thinking" in body and (forced or _tool_turn_without_thinking(body["messages"])):
        del body["thinking"]
    if body.get("temperature", 0) > 1:
        body["temperature"] = 1
    if "thinking" in body:
        if body.get("temperature", 1) != 1:
            del body["temperature"]
        if body.get("top_p", 1) < 0.95:
            del body["top_p"]
        body.pop("top_k", None)
    if "temperature" in body and "top_p" in body:
        del body["top_p"]


def build_messages_body(request: Request, upstream_model: str, default_max_tokens: int) -> dict[str, Any]:
    v.refuse_vendor_only_fields(request, Protocol.ANTHROPIC_MESSAGES)
    v.refuse_logprobs(request)
    v.refuse_choices(request)
    if request.max_tokens is not None:
        max_tokens = request.max_tokens
    else:
        max_tokens = request.output_limit or default_max_tokens
    body: dict[str, Any] = {"model": upstream_model, "max_tokens": max_tokens}
    system = _system_to_anthropic(request)
    if system is not None:
        body["system"] = system
    body["messages"] = messages_to_anthropic(request)
    if request.stream:
        body["stream"] = True  # Anthropic streams always carry usage
    for key, value in (
        ("temperature", request.temperature),
        ("top_p", request.top_p),
        ("top_k", request.top_k),
    ):
        if value is not None:
            body[key] = value
    if request.stop:
        body["stop_sequences"] = request.stop
    tools = _tools_to_anthropic(request)
    if tools:
        body["tools"] = tools
    tc = request.tool_choice
    if tc is not None and (tools or tc.mode == "none"):
        body["tool_choice"] = _tool_choice_to_anthropic(tc)
    raw_thinking = (
        request.raw.get("thinking")
        if request.raw and request.ingress is Protocol.ANTHROPIC_MESSAGES
        else None
    )
    if isinstance(raw_thinking, dict):
        body["thinking"] = raw_thinking  # same protocol: adaptive/display options kept as sent
    elif request.reasoning is not None and request.reasoning.enabled:
        r = request.reasoning
        budget = r.budget_tokens or _EFFORT_BUDGET.get(r.effort or "medium", 8192)
        # Thinking counts toward max_tokens and its budget must stay below it; a budget that
        # would not leave room for the answer gets half of the limit.
        if budget >= max_tokens:
            budget = max_tokens // 2
        if budget >= MIN_THINKING_BUDGET:
            body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    if request.ingress is not Protocol.ANTHROPIC_MESSAGES:
        # An Anthropic client gets Anthropic's own answer to what it sent; another protocol's
        # request is fitted to the rules Anthropic enforces.
        _fit_anthropic_rules(body)
    rf = request.response_format
    if rf is not None and rf.type == "json_schema" and rf.schema is not None:
        body["output_config"] = {"format": {"type": "json_schema", "schema": rf.schema}}
    if request.end_user:
        body["metadata"] = {"user_id": request.end_user}
    if request.extra and request.ingress is Protocol.ANTHROPIC_MESSAGES:
        for k, val in request.extra.items():
            if k == "output_config" and "output_config" in body and isinstance(val, dict):
                body["output_config"] = {**val, **body["output_config"]}
            else:
                body.setdefault(k, val)
    return body


# ============================================================================================
# Provider: parse


def _part_from_block(b: Any) -> Part | None:
    if not isinstance(b, dict):
        return None
    kind = b.get("type")
    if kind == "text":
        citations = b.get("citations")
        return TextPart(
            str(b.get("text") or ""),
            annotations=citations if isinstance(citations, list) and citations else None,
        )
    if kind == "thinking":
        return ReasoningPart(
            str(b.get("thinking") or ""),
            signature=b.get("signature") or None,
            provider=Protocol.ANTHROPIC_MESSAGES,
        )
    if kind == "redacted_thinking":
        return ReasoningPart(redacted_data=str(b.get("data") or ""), provider=Protocol.ANTHROPIC_MESSAGES)
    if kind == "tool_use":
        tool_input = b.get("input")
        return ToolCallPart(
            id=str(b.get("id") or ""),
            name=str(b.get("name") or ""),
            arguments=orjson.dumps(tool_input if tool_input is not None else {}).decode(),
        )
    if isinstance(kind, str):
        # Server tool calls and results, and whatever block types Anthropic adds: verbatim.
        return VendorPart(b, Protocol.ANTHROPIC_MESSAGES)
    return None


# The message fields every codec maps; Anthropic's others (`container`, `stop_details`, …) and
# the usage fields beyond the token counts (`server_tool_use`) reach Anthropic clients verbatim.
_MESSAGE_FIELDS = frozenset(
    {"id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"}
)
_VENDOR_USAGE = ("server_tool_use",)


def _vendor_fields(fields: dict[str, Any], usage: Any, mapped: frozenset[str]) -> VendorFields | None:
    extra = {k: val for k, val in fields.items() if k not in mapped and val is not None}
    usage_extra = (
        {k: usage[k] for k in _VENDOR_USAGE if usage.get(k) is not None} if isinstance(usage, dict) else {}
    )
    if not extra and not usage_extra:
        return None
    return VendorFields(Protocol.ANTHROPIC_MESSAGES, extra, usage_extra)


def parse_message(data: dict[str, Any]) -> Response:
    if data.get("type") != "message" or not isinstance(data.get("content"), list):
        raise UpstreamProtocolError("upstream Anthropic response is not a message")
    content = [p for p in (_part_from_block(b) for b in data["content"]) if p is not None]
    stop_sequence = data.get("stop_sequence")
    return Response(
        id=str(data.get("id") or ""),
        model=str(data.get("model") or ""),
        content=content,
        finish_reason=stop_from_anthropic(data.get("stop_reason")),
        usage=usage_from_anthropic(data.get("usage")),
        stop_sequence=stop_sequence if isinstance(stop_sequence, str) else None,
        vendor=_vendor_fields(data, data.get("usage"), _MESSAGE_FIELDS),
    )


def _error_fields(data: Any) -> tuple[str, str | None]:
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        etype = err.get("type")
        return str(err.get("message") or ""), etype if isinstance(etype, str) else None
    return "", None


def parse_retry_after(headers: Mapping[str, str]) -> int:
    """Milliseconds from `retry-after-ms` or `retry-after` (seconds); 0 when absent."""
    for name, scale in (("retry-after-ms", 1), ("retry-after", 1000)):
        raw = headers.get(name)
        if raw:
            try:
                return max(0, int(float(raw) * scale))
            except ValueError:
                continue
    return 0


def _kind_for_status(status: int) -> ErrorKind:
    if status == 429:
        return ErrorKind.UPSTREAM_RATE_LIMITED
    if status in (401, 402, 403):
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


def parse_messages_error(status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    message, etype = _error_fields(data)
    if not message:
        message = body[:200].decode(errors="replace") or f"upstream returned HTTP {status}"
    kind = _ERROR_KINDS.get(etype or "", _kind_for_status(status))
    retryable = kind in (ErrorKind.UPSTREAM_RATE_LIMITED, ErrorKind.UPSTREAM_OVERLOADED)
    return UpstreamError(
        kind=kind,
        message=message,
        status=status,
        upstream_type=etype,
        retry_after_ms=parse_retry_after(headers) if retryable else 0,
    )


_DELTA_FIELDS = frozenset({"stop_reason", "stop_sequence"})
_CANONICAL_BLOCKS = frozenset({"text", "thinking", "redacted_thinking", "tool_use"})
_CANONICAL_DELTAS = frozenset({"text_delta", "input_json_delta", "thinking_delta", "signature_delta"})


class AnthropicStreamParser:
    """Upstream Anthropic SSE -> canonical events. Blocks other than text, thinking and tool use
    (server tool calls and results, …) open as a `VendorPart` and their deltas are
    `VendorDelta`s, as are deltas the canonical model has no form for (`citations_delta`).
    Block indices are renumbered from 0 in order of appearance."""

    def __init__(self) -> None:
        self._sse = SSEDecoder()
        self._usage: Usage | None = None
        self._index: dict[int, int] = {}  # upstream index -> canonical index
        self._open: set[int] = set()  # canonical indices still open
        self._kinds: dict[int, str] = {}  # canonical index -> block type
        self.started = False
        self.done = False
        self.output_chars = 0  # for an estimate when the stream dies before message_delta

    @reads_upstream("a stream event")
    def feed(self, data: bytes) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for ev in self._sse.feed(data):
            self._event(ev.data, out)
        return out

    @reads_upstream("a stream event")
    def close(self) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for ev in self._sse.flush():
            self._event(ev.data, out)
        for idx in sorted(self._open):
            out.append(BlockStop(idx))
        self._open.clear()
        return out

    def _event(self, payload: bytes, out: list[StreamEvent]) -> None:
        try:
            ev = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(
                f"upstream sent an event that is not JSON: {payload[:80]!r}"
            ) from None
        if not isinstance(ev, dict):
            raise UpstreamProtocolError("upstream sent an event that is not an object")
        kind = ev.get("type")
        if kind == "content_block_delta":
            self._block_delta(ev, out)
        elif kind == "content_block_start":
            self._block_start(ev, out)
        elif kind == "content_block_stop":
            idx = self._index.get(ev.get("index", -1))
            if idx is not None and idx in self._open:
                self._open.discard(idx)
                out.append(BlockStop(idx))
        elif kind == "message_start":
            msg = ev.get("message") or {}
            self.started = True
            self._usage = usage_from_anthropic(msg.get("usage"))
            out.append(
                StreamStart(id=str(msg.get("id") or ""), model=str(msg.get("model") or ""), usage=self._usage)
            )
            if self._usage is not None:
                out.append(UsageUpdate(self._usage))
        elif kind == "message_delta":
            delta = ev.get("delta") or {}
            for idx in sorted(self._open):
                out.append(BlockStop(idx))
            self._open.clear()
            reason = stop_from_anthropic(delta.get("stop_reason"))
            if reason is not None:
                seq = delta.get("stop_sequence")
                vendor = _vendor_fields(delta, ev.get("usage"), _DELTA_FIELDS)
                out.append(StreamFinish(reason, seq if isinstance(seq, str) else None, vendor))
            usage = usage_from_anthropic(ev.get("usage"), self._usage)
            if usage is not None:
                self._usage = usage
                out.append(UsageUpdate(usage))
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            message, etype = _error_fields(ev)
            out.append(
                StreamError(
                    _ERROR_KINDS.get(etype or "", ErrorKind.UPSTREAM_ERROR),
                    message or "upstream error",
                    etype,
                )
            )
        # ping and event types added later are ignored, as Anthropic's versioning policy asks.

    def _block_start(self, ev: dict[str, Any], out: list[StreamEvent]) -> None:
        block = ev.get("content_block") or {}
        btype = block.get("type")
        part: Part
        first = ""
        if btype == "text":
            part, first = TextPart(""), str(block.get("text") or "")
        elif btype == "thinking":
            part, first = (
                ReasoningPart("", provider=Protocol.ANTHROPIC_MESSAGES),
                str(block.get("thinking") or ""),
            )
        elif btype == "redacted_thinking":
            part = ReasoningPart(
                redacted_data=str(block.get("data") or ""), provider=Protocol.ANTHROPIC_MESSAGES
            )
        elif btype == "tool_use":
            tool_input = block.get("input")
            part = ToolCallPart(
                id=str(block.get("id") or ""),
                name=str(block.get("name") or ""),
                arguments=orjson.dumps(tool_input).decode() if tool_input else "",
            )
        elif isinstance(btype, str):
            part = VendorPart(block, Protocol.ANTHROPIC_MESSAGES)
        else:
            return
        idx = self._index[ev.get("index", len(self._index))] = len(self._index)
        self._open.add(idx)
        self._kinds[idx] = btype
        out.append(BlockStart(idx, part))
        if first:
            self.output_chars += len(first)
            out.append(TextDelta(idx, first) if btype == "text" else ReasoningDelta(idx, first))

    def _block_delta(self, ev: dict[str, Any], out: list[StreamEvent]) -> None:
        idx = self._index.get(ev.get("index", -1))
        if idx is None:
            return
        delta = ev.get("delta") or {}
        dtype = delta.get("type")
        if self._kinds.get(idx) not in _CANONICAL_BLOCKS or dtype not in _CANONICAL_DELTAS:
            # A server tool call's input, a text block's citations: for Anthropic clients only.
            if isinstance(dtype, str):
                self.output_chars += len(str(delta.get("partial_json") or ""))
                out.append(VendorDelta(idx, delta, Protocol.ANTHROPIC_MESSAGES))
        elif dtype == "text_delta":
            text = delta.get("text") or ""
            if text:
                self.output_chars += len(text)
                out.append(TextDelta(idx, text))
        elif dtype == "input_json_delta":
            partial = delta.get("partial_json") or ""
            if partial:
                self.output_chars += len(partial)
                out.append(ToolArgumentsDelta(idx, partial))
        elif dtype == "thinking_delta":
            text = delta.get("thinking") or ""
            if text:
                self.output_chars += len(text)
                out.append(ReasoningDelta(idx, text))
        elif dtype == "signature_delta":
            sig = delta.get("signature") or ""
            if sig:
                out.append(ReasoningDelta(idx, signature=sig))


class AnthropicProvider:
    """Provider codec for the Anthropic Messages API. `default_max_tokens` fills the required
    `max_tokens` when the client set none (OpenAI clients may omit it)."""

    protocol = Protocol.ANTHROPIC_MESSAGES

    def __init__(self, *, default_max_tokens: int = 4096, version: str = ANTHROPIC_VERSION) -> None:
        self.default_max_tokens = default_max_tokens
        self.version = version

    def headers(self, api_key: str, betas: list[str] | None = None) -> dict[str, str]:
        h = {"content-type": CONTENT_TYPE_JSON, "anthropic-version": self.version}
        if api_key:
            h["x-api-key"] = api_key
        if betas:
            h["anthropic-beta"] = ",".join(betas)
        return h

    def build_request(self, request: Request, upstream_model: str, api_key: str) -> UpstreamRequest:
        # Anthropic has no list of allowed tools: only those are sent.
        request = only_allowed_tools(request)
        body = orjson.dumps(build_messages_body(request, upstream_model, self.default_max_tokens))
        return UpstreamRequest(
            "/v1/messages", body, self.headers(api_key, request.anthropic_beta), request.stream
        )

    @reads_upstream("an answer")
    def parse_response(self, body: bytes) -> Response:
        data = upstream_json_object(body)
        return parse_message(data)

    def stream_parser(self) -> AnthropicStreamParser:
        return AnthropicStreamParser()

    def parse_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
        return parse_messages_error(status, body, headers)
