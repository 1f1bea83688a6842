"""OpenAI Responses API, both directions.

Ingress (`ResponsesIngress`): a `POST /v1/responses` body -> canonical, canonical response/events
-> a `Response` object and the typed SSE events of
https://platform.openai.com/docs/api-reference/responses-streaming (`response.created`,
`response.in_progress`, output items, content parts, deltas, `response.completed` |
`response.incomplete` | `response.failed`), every event with a strictly increasing
`sequence_number`.

Provider (`ResponsesProvider`): canonical -> an upstream `POST /responses` (OpenAI models, natively),
upstream JSON/SSE -> canonical. When the client itself spoke Responses, the provider forwards the
client's own body (model replaced), so everything the canonical model has no slot for
(`previous_response_id`, `include`, hosted tools, `store`, ...) reaches OpenAI unchanged.

Ids: a response id that already is a Responses id (`resp_…`) is kept, so `previous_response_id`
works against the upstream; otherwise `resp_`/`msg_`/`fc_`/`rs_` ids are derived from the upstream
id (a hash), which keeps the codec pure and its output reproducible.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
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
    VendorDelta,
    VendorPart,
    carried_reasoning,
    carried_state,
)
from crossmodel_protocols.codec import (
    UpstreamError,
    UpstreamRequest,
    epoch_seconds,
    reads_upstream,
    token_count,
    upstream_json_object,
)
from crossmodel_protocols.errors import ApiError, error_type_for, render_stream_error
from crossmodel_protocols.openai_chat import (
    ChatProvider,
    ChatStreamParser,
    Dialect,
    error_kind_for_status,
    logprobs_from_openai,
    logprobs_to_openai,
    openai_effort,
    openai_safety_identifier,
    parse_chat_completion,
    parse_retry_after,
)
from crossmodel_protocols.sse import SSEDecoder, encode_event

CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_SSE = "text/event-stream"

# Every CreateResponse parameter of the published spec / SDK. OpenAI answers any other top-level
# key with 400 `unknown_parameter`, and so do we.
_KNOWN = frozenset(
    {
        "access_programs",
        "background",
        "background_options",
        "context_management",
        "conversation",
        "image",
        "include",
        "input",
        "instructions",
        "max_output_tokens",
        "max_tool_calls",
        "metadata",
        "model",
        "moderation",
        "parallel_tool_calls",
        "previous_response_id",
        "prompt",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
        "reasoning",
        "safety_identifier",
        "service_tier",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "text",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "truncation",
        "user",
    }
)
# Parameters the canonical model maps; the rest of `_KNOWN` goes to `Request.extra`.
_MAPPED = frozenset(
    {
        "model",
        "input",
        "instructions",
        "max_output_tokens",
        "metadata",
        "parallel_tool_calls",
        "previous_response_id",
        "reasoning",
        "safety_identifier",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "text",
        "tool_choice",
        "tools",
        "top_p",
        "top_logprobs",
        "user",
        "include",
    }
)
LOGPROBS_INCLUDE = "message.output_text.logprobs"
# `IncludeEnum` of OpenAI's published spec.
_INCLUDES = (
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
    "reasoning.encrypted_content",
    LOGPROBS_INCLUDE,
)
_TRUNCATIONS = ("auto", "disabled")
# The spec's `Metadata`: 16 pairs, keys up to 64 characters, values up to 512.
_METADATA_PAIRS, _METADATA_KEY, _METADATA_VALUE = 16, 64, 512
_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
# The item types of the spec's `InputItem` (`Item` and the rest) the canonical model has no form
# for: tool calls other than functions, hosted tools' calls and results, the client's outputs of
# its own tools, MCP, compaction and references to stored items. They are kept verbatim
# (`VendorPart`): OpenAI gets them back as sent, other vendors never see them.
_VERBATIM_ITEMS = (
    "custom_tool_call",
    "custom_tool_call_output",
    "web_search_call",
    "file_search_call",
    "image_generation_call",
    "code_interpreter_call",
    "computer_call",
    "computer_call_output",
    "local_shell_call",
    "local_shell_call_output",
    "shell_call",
    "shell_call_output",
    "apply_patch_call",
    "apply_patch_call_output",
    "mcp_list_tools",
    "mcp_approval_request",
    "mcp_approval_response",
    "mcp_call",
    "tool_search_call",
    "tool_search_output",
    "additional_tools",
    "program",
    "program_output",
    "compaction",
    "compaction_trigger",
    "item_reference",
)
# Of those, what the client sends in its own turn (its tools' outputs, approvals, references);
# the others are the model's and join the assistant turn.
_CLIENT_ITEMS = frozenset(
    {
        "custom_tool_call_output",
        "computer_call_output",
        "local_shell_call_output",
        "shell_call_output",
        "apply_patch_call_output",
        "mcp_approval_response",
        "program_output",
        "compaction_trigger",
        "item_reference",
    }
)
# Output items that are calls the client answers (the turn ends for it to act), as function calls.
_CLIENT_CALLS = frozenset(
    {
        "custom_tool_call",
        "computer_call",
        "local_shell_call",
        "shell_call",
        "apply_patch_call",
        "mcp_approval_request",
    }
)
_ITEM_TYPES = ("message", "function_call", "function_call_output", "reasoning", *_VERBATIM_ITEMS)
# https://platform.openai.com/docs/api-reference/responses/create#responses-create-max_output_tokens
MIN_OUTPUT_TOKENS = 16


# ============================================================================================
# Ids


def derive_id(prefix: str, seed: str) -> str:
    """A Responses-shaped id (`resp_` + 48 hex) derived from `seed`."""
    return prefix + hashlib.sha256(seed.encode()).hexdigest()[:48]


def response_id_for(upstream_id: str) -> str:
    return upstream_id if upstream_id.startswith("resp_") else derive_id("resp_", upstream_id)


def _item_id(prefix: str, response_id: str, output_index: int) -> str:
    return derive_id(prefix, f"{response_id}/{output_index}")


# ============================================================================================
# Ingress: parse


def _input_text_parts(value: Any, path: str) -> str:
    """System/developer content: a string or `input_text` parts, joined."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise v.wrong_type(path, "one of a string or array of objects", value)
    out: list[str] = []
    for i, raw in enumerate(value):
        p = v.as_object(raw, f"{path}[{i}]")
        kind = v.req_str(p, "type", f"{path}[{i}].type")
        if kind != "input_text":
            raise v.invalid_value(f"{path}[{i}].type", kind, ["input_text"])
        out.append(v.req_str(p, "text", f"{path}[{i}].text"))
    return "".join(out)


def _image(p: dict[str, Any], pp: str) -> ImagePart:
    detail = v.opt_str(p, "detail", f"{pp}.detail")
    if detail is not None and detail not in ("auto", "low", "high", "original"):
        raise v.invalid_value(f"{pp}.detail", detail, ["auto", "low", "high"])
    url = v.opt_str(p, "image_url", f"{pp}.image_url")
    if url is None:
        if v.opt_str(p, "file_id", f"{pp}.file_id") is not None:
            raise InvalidRequest(
                f"Invalid value for '{pp}.file_id': image file ids are not supported by this gateway; "
                "send 'image_url' (a URL or a base64 data URL).",
                param=f"{pp}.file_id",
                code="unsupported_value",
            )
        raise v.missing(f"{pp}.image_url")
    if url.startswith("data:"):
        media, data = v.parse_data_url(url, f"{pp}.image_url")
        return ImagePart(data=data, media_type=media, detail=detail, param=pp)
    if url.startswith(("http://", "https://")):
        return ImagePart(url=url, detail=detail, param=pp)
    raise v.invalid_value(f"{pp}.image_url", url[:48], why="expected an http(s) URL or a base64 data URL.")


def _file(p: dict[str, Any], pp: str) -> FilePart:
    data = v.opt_str(p, "file_data", f"{pp}.file_data")
    file_id = v.opt_str(p, "file_id", f"{pp}.file_id")
    url = v.opt_str(p, "file_url", f"{pp}.file_url")
    if data is None and file_id is None and url is None:
        raise v.missing(f"{pp}.file_data")
    media: str | None = None
    if data is not None and data.startswith("data:"):
        media, data = v.parse_data_url(data, f"{pp}.file_data")
    return FilePart(
        data=data,
        url=url,
        file_id=file_id,
        media_type=media,
        filename=v.opt_str(p, "filename", f"{pp}.filename"),
        param=f"{pp}.file_id" if file_id is not None else f"{pp}.file_url" if url is not None else "",
    )


def _user_content(value: Any, path: str) -> list[Part]:
    if isinstance(value, str):
        return [TextPart(value)]
    if not isinstance(value, list):
        raise v.wrong_type(path, "one of a string or array of objects", value)
    out: list[Part] = []
    for i, raw in enumerate(value):
        pp = f"{path}[{i}]"
        p = v.as_object(raw, pp)
        kind = v.req_str(p, "type", f"{pp}.type")
        if kind == "input_text":
            out.append(TextPart(v.req_str(p, "text", f"{pp}.text")))
        elif kind == "input_image":
            out.append(_image(p, pp))
        elif kind == "input_file":
            out.append(_file(p, pp))
        elif kind == "input_audio":
            raise InvalidRequest(
                "Audio input is not supported by this gateway.", param=f"{pp}.type", code="unsupported_value"
            )
        else:
            raise v.invalid_value(f"{pp}.type", kind, ["input_text", "input_image", "input_file"])
    return out


def _assistant_content(value: Any, path: str) -> list[Part]:
    if isinstance(value, str):
        return [TextPart(value)]
    if not isinstance(value, list):
        raise v.wrong_type(path, "one of a string or array of objects", value)
    out: list[Part] = []
    for i, raw in enumerate(value):
        pp = f"{path}[{i}]"
        p = v.as_object(raw, pp)
        kind = v.req_str(p, "type", f"{pp}.type")
        if kind in ("output_text", "input_text"):
            ann = p.get("annotations")
            out.append(
                TextPart(
                    v.req_str(p, "text", f"{pp}.text"),
                    annotations=ann if isinstance(ann, list) and ann else None,
                )
            )
        elif kind == "refusal":
            out.append(RefusalPart(v.req_str(p, "refusal", f"{pp}.refusal")))
        else:
            raise v.invalid_value(f"{pp}.type", kind, ["output_text", "refusal"])
    return out


def _tool_output(value: Any, path: str) -> list[TextPart | ImagePart | FilePart]:
    if isinstance(value, str):
        return [TextPart(value)]
    if not isinstance(value, list):
        raise v.wrong_type(path, "one of a string or array of objects", value)
    out: list[TextPart | ImagePart | FilePart] = []
    for i, raw in enumerate(value):
        pp = f"{path}[{i}]"
        p = v.as_object(raw, pp)
        kind = v.req_str(p, "type", f"{pp}.type")
        if kind == "input_text":
            out.append(TextPart(v.req_str(p, "text", f"{pp}.text")))
        elif kind == "input_image":
            out.append(_image(p, pp))
        elif kind == "input_file":
            out.append(_file(p, pp))
        else:
            raise v.invalid_value(f"{pp}.type", kind, ["input_text", "input_image", "input_file"])
    return out


def _reasoning_item(item: dict[str, Any], path: str) -> ReasoningPart:
    summary: list[str] = []
    for j, raw in enumerate(v.opt_list(item, "summary", f"{path}.summary") or ()):
        s = v.as_object(raw, f"{path}.summary[{j}]")
        summary.append(v.req_str(s, "text", f"{path}.summary[{j}].text"))
    content: list[str] = []
    for j, raw in enumerate(v.opt_list(item, "content", f"{path}.content") or ()):
        c = v.as_object(raw, f"{path}.content[{j}]")
        content.append(v.req_str(c, "text", f"{path}.content[{j}].text"))
    text = "\n\n".join(summary) if summary else "".join(content)
    encrypted = v.opt_str(item, "encrypted_content", f"{path}.encrypted_content")
    # Another vendor's reasoning state, as this gateway rendered it: back to that vendor only.
    carried = carried_reasoning(encrypted, text) if encrypted else None
    if carried is not None:
        return carried
    return ReasoningPart(
        text=text,
        encrypted_content=encrypted,
        item_id=v.opt_str(item, "id", f"{path}.id"),
        summary=summary,
        provider=Protocol.OPENAI_RESPONSES,
    )


def parse_input(raw: Any) -> tuple[list[SystemPart], list[Message]]:
    """`input` (a string or a list of items) -> system parts and messages. Consecutive assistant
    items of one turn (reasoning, message, function calls) become one assistant message."""
    if raw is None:
        raise v.missing("input")
    if isinstance(raw, str):
        return [], [Message("user", [TextPart(raw)])]
    if not isinstance(raw, list):
        raise v.wrong_type("input", "one of a string or array of objects", raw)
    system: list[SystemPart] = []
    messages: list[Message] = []

    def assistant() -> Message:
        if messages and messages[-1].role == "assistant":
            return messages[-1]
        m = Message("assistant", [])
        messages.append(m)
        return m

    for i, entry in enumerate(raw):
        path = f"input[{i}]"
        item = v.as_object(entry, path)
        kind = v.opt_str(item, "type", f"{path}.type") or "message"
        if kind == "message":
            role = v.req_str(item, "role", f"{path}.role")
            if "content" not in item or item["content"] is None:
                raise v.missing(f"{path}.content")
            content = item["content"]
            if role in ("system", "developer"):
                system.append(SystemPart(_input_text_parts(content, f"{path}.content"), role=role))  # type: ignore[arg-type]
            elif role == "user":
                messages.append(Message("user", _user_content(content, f"{path}.content")))
            elif role == "assistant":
                assistant().content.extend(_assistant_content(content, f"{path}.content"))
            else:
                raise v.invalid_value(f"{path}.role", role, ["user", "assistant", "system", "developer"])
        elif kind == "function_call":
            assistant().content.append(
                ToolCallPart(
                    id=v.req_str(item, "call_id", f"{path}.call_id"),
                    name=v.req_str(item, "name", f"{path}.name"),
                    arguments=v.req_str(item, "arguments", f"{path}.arguments"),
                    item_id=v.opt_str(item, "id", f"{path}.id"),
                )
            )
        elif kind == "function_call_output":
            call_id = v.req_str(item, "call_id", f"{path}.call_id")
            if "output" not in item or item["output"] is None:
                raise v.missing(f"{path}.output")
            result = ToolResultPart(call_id, _tool_output(item["output"], f"{path}.output"))
            messages.append(Message("tool", [result]))
        elif kind == "reasoning":
            assistant().content.append(_reasoning_item(item, path))
        elif kind in _VERBATIM_ITEMS:
            part = VendorPart(item, Protocol.OPENAI_RESPONSES)
            if kind in _CLIENT_ITEMS:
                messages.append(Message("tool", [part]))
            else:
                assistant().content.append(part)
        else:
            raise v.invalid_value(f"{path}.type", kind, _ITEM_TYPES)
    return system, messages


def _parse_tools(body: dict[str, Any]) -> list[Tool]:
    out: list[Tool] = []
    for i, raw in enumerate(v.opt_list(body, "tools", "tools") or ()):
        path = f"tools[{i}]"
        t = v.as_object(raw, path)
        kind = v.req_str(t, "type", f"{path}.type")
        if kind == "function":
            out.append(
                Tool(
                    name=v.req_str(t, "name", f"{path}.name"),
                    description=v.opt_str(t, "description", f"{path}.description"),
                    parameters=v.opt_object(t, "parameters", f"{path}.parameters"),
                    strict=v.opt_bool(t, "strict", f"{path}.strict"),
                )
            )
        else:
            # Hosted tools (web_search, file_search, ...) reach only a Responses upstream.
            out.append(Tool(name=kind, kind=kind, raw=t, raw_protocol=Protocol.OPENAI_RESPONSES))
    return out


def _parse_tool_choice(body: dict[str, Any]) -> ToolChoice | None:
    parallel = v.opt_bool(body, "parallel_tool_calls", "parallel_tool_calls")
    disable = None if parallel is None else not parallel
    raw = body.get("tool_choice")
    if raw is None:
        return ToolChoice("auto", disable_parallel=disable) if disable is not None else None
    if isinstance(raw, str):
        if raw not in ("none", "auto", "required"):
            raise v.invalid_value("tool_choice", raw, ["none", "auto", "required"])
        return ToolChoice(raw, disable_parallel=disable)  # type: ignore[arg-type]
    tc = v.as_object(raw, "tool_choice")
    kind = v.req_str(tc, "type", "tool_choice.type")
    if kind == "function":
        return ToolChoice("tool", v.req_str(tc, "name", "tool_choice.name"), disable)
    if kind == "allowed_tools":
        mode = v.req_str(tc, "mode", "tool_choice.mode")
        if mode not in ("auto", "required"):
            raise v.invalid_value("tool_choice.mode", mode, ["auto", "required"])
        listed = v.opt_list(tc, "tools", "tool_choice.tools")
        if listed is None:
            raise v.missing("tool_choice.tools")
        allowed: list[str] = []
        for i, t in enumerate(listed):
            entry = v.as_object(t, f"tool_choice.tools[{i}]")
            t_kind = v.req_str(entry, "type", f"tool_choice.tools[{i}].type")
            # Function tools go by name; hosted tools by type, which is their canonical name.
            allowed.append(
                v.req_str(entry, "name", f"tool_choice.tools[{i}].name") if t_kind == "function" else t_kind
            )
        return ToolChoice(mode, allowed=allowed, disable_parallel=disable)  # type: ignore[arg-type]
    # A hosted tool forced by type: the nearest canonical meaning is "some tool".
    return ToolChoice("required", disable_parallel=disable)


def _parse_text(body: dict[str, Any]) -> ResponseFormat | None:
    text = v.opt_object(body, "text", "text")
    if text is None:
        return None
    fmt = v.opt_object(text, "format", "text.format")
    if fmt is None:
        return None
    kind = v.req_str(fmt, "type", "text.format.type")
    if kind in ("text", "json_object"):
        return ResponseFormat(kind)  # type: ignore[arg-type]
    if kind == "json_schema":
        schema = v.opt_object(fmt, "schema", "text.format.schema")
        if schema is None:
            raise v.missing("text.format.schema")
        return ResponseFormat(
            "json_schema",
            schema=schema,
            name=v.req_str(fmt, "name", "text.format.name"),
            strict=v.opt_bool(fmt, "strict", "text.format.strict"),
            description=v.opt_str(fmt, "description", "text.format.description"),
        )
    raise v.invalid_value("text.format.type", kind, ["text", "json_object", "json_schema"])


def _parse_reasoning(body: dict[str, Any]) -> ReasoningConfig | None:
    r = v.opt_object(body, "reasoning", "reasoning")
    if r is None:
        return None
    effort = v.opt_str(r, "effort", "reasoning.effort")
    if effort is not None and effort not in _EFFORTS:
        raise v.invalid_value("reasoning.effort", effort, _EFFORTS)
    summary = v.opt_str(r, "summary", "reasoning.summary") or v.opt_str(
        r, "generate_summary", "reasoning.generate_summary"
    )
    if summary is not None and summary not in ("auto", "concise", "detailed"):
        raise v.invalid_value("reasoning.summary", summary, ["auto", "concise", "detailed"])
    return ReasoningConfig(enabled=effort != "none", effort=effort, summary=summary)


def _parse_metadata(body: dict[str, Any]) -> dict[str, str]:
    metadata = v.str_map(body, "metadata", "metadata")
    if len(metadata) > _METADATA_PAIRS:
        raise v.invalid_value(
            "metadata",
            "",
            why=f"too many keys. Expected at most {_METADATA_PAIRS} keys, but got {len(metadata)} instead.",
        )
    for key, value in metadata.items():
        if len(key) > _METADATA_KEY:
            raise v.invalid_value(
                "metadata",
                "",
                why=f"key too long. Expected keys with maximum length {_METADATA_KEY}, "
                f"but got a key with length {len(key)} instead.",
            )
        if len(value) > _METADATA_VALUE:
            raise v.invalid_value(
                f"metadata.{key}",
                "",
                why=f"string too long. Expected a string with maximum length {_METADATA_VALUE}, "
                f"but got a string with length {len(value)} instead.",
            )
    return metadata


def _check_forced_tools(tools: list[Tool], raw: Any) -> None:
    """A function the client forces or allows must be one of its `tools`: OpenAI refuses it
    otherwise, and a vendor the request is translated for would be sent a call it cannot make."""
    if not isinstance(raw, dict):
        return
    functions = {t.name for t in tools if t.kind == "function"}
    if raw.get("type") == "function" and raw.get("name") not in functions:
        raise v.invalid_value(
            "tool_choice.name",
            raw.get("name"),
            why=f"no function named '{raw.get('name')}' in 'tools'.",
        )
    if raw.get("type") == "allowed_tools":
        for i, t in enumerate(raw.get("tools") or ()):
            if isinstance(t, dict) and t.get("type") == "function" and t.get("name") not in functions:
                raise v.invalid_value(
                    f"tool_choice.tools[{i}].name",
                    t.get("name"),
                    why=f"no function named '{t.get('name')}' in 'tools'.",
                )


def parse_responses_request(data: dict[str, Any]) -> Request:
    """An already-decoded CreateResponse body -> canonical."""
    for key in data:
        if key not in _KNOWN:
            raise InvalidRequest(f"Unknown parameter: '{key}'.", param=key, code="unknown_parameter")
    model = v.req_str(data, "model", "model")
    system, messages = parse_input(data.get("input"))
    instructions = data.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise v.wrong_type("instructions", "a string", instructions)
        system.insert(0, SystemPart(instructions, role="developer"))
    include_raw = v.opt_list(data, "include", "include") or []
    include: list[str] = []
    for i, inc in enumerate(include_raw):
        if not isinstance(inc, str):
            raise v.wrong_type(f"include[{i}]", "a string", inc)
        if inc not in _INCLUDES:
            raise v.invalid_value(f"include[{i}]", inc, _INCLUDES)
        include.append(inc)
    truncation = v.opt_str(data, "truncation", "truncation")
    if truncation is not None and truncation not in _TRUNCATIONS:
        raise v.invalid_value("truncation", truncation, _TRUNCATIONS)
    # The spec gives no bound; OpenAI refuses anything below 1.
    v.opt_int(data, "max_tool_calls", "max_tool_calls", minimum=1)
    stream = bool(v.opt_bool(data, "stream", "stream"))
    if v.opt_object(data, "stream_options", "stream_options") is not None and not stream:
        raise InvalidRequest(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
            code="invalid_value",
        )
    end_user = (
        v.opt_str(data, "safety_identifier", "safety_identifier") or v.opt_str(data, "user", "user") or ""
    )
    top_logprobs = v.opt_int(data, "top_logprobs", "top_logprobs", minimum=0, maximum=20)
    tools = _parse_tools(data)
    tool_choice = _parse_tool_choice(data)
    _check_forced_tools(tools, data.get("tool_choice"))
    return Request(
        model=model,
        messages=messages,
        system=system,
        stream=stream,
        max_tokens=v.opt_int(data, "max_output_tokens", "max_output_tokens", minimum=MIN_OUTPUT_TOKENS),
        temperature=v.opt_number(data, "temperature", "temperature", minimum=0, maximum=2),
        top_p=v.opt_number(data, "top_p", "top_p", minimum=0, maximum=1),
        tools=tools,
        tool_choice=tool_choice,
        response_format=_parse_text(data),
        reasoning=_parse_reasoning(data),
        include_reasoning_state="reasoning.encrypted_content" in include,
        # OpenAI returns them when `include` asks; a count of alternatives asks as well.
        logprobs=LOGPROBS_INCLUDE in include or bool(top_logprobs),
        top_logprobs=top_logprobs,
        end_user=end_user,
        metadata=_parse_metadata(data),
        # Responses always reports usage in its final event.
        include_usage=True,
        previous_response_id=v.opt_str(data, "previous_response_id", "previous_response_id"),
        store=v.opt_bool(data, "store", "store"),
        extra={k: val for k, val in data.items() if k not in _MAPPED},
        ingress=Protocol.OPENAI_RESPONSES,
        raw=data,
    )


# ============================================================================================
# Ingress: render


def usage_to_responses(u: Usage) -> dict[str, Any]:
    # OpenAI's ResponseUsage requires both details of the input: tokens read from and written to
    # the prompt cache (the latter reported by Anthropic-style caches, 0 elsewhere).
    return {
        "input_tokens": u.input_tokens,
        "input_tokens_details": {
            "cached_tokens": u.cached_input_tokens,
            "cache_write_tokens": u.cache_write_tokens,
        },
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.input_tokens + u.output_tokens,
    }


def _tool_to_responses(t: Tool) -> dict[str, Any] | None:
    if t.kind != "function":
        return t.raw if t.raw is not None and t.raw_protocol is Protocol.OPENAI_RESPONSES else None
    return {
        "type": "function",
        "name": t.name,
        "description": t.description,
        "parameters": t.parameters if t.parameters is not None else {"type": "object", "properties": {}},
        "strict": t.strict if t.strict is not None else True,
    }


def _tool_choice_to_responses(tc: ToolChoice | None) -> str | dict[str, Any]:
    if tc is None:
        return "auto"
    if tc.mode == "tool":
        return {"type": "function", "name": tc.name}
    return tc.mode


def _text_config(rf: ResponseFormat | None) -> dict[str, Any]:
    if rf is None or rf.type == "text":
        return {"format": {"type": "text"}}
    if rf.type == "json_object":
        return {"format": {"type": "json_object"}}
    fmt: dict[str, Any] = {"type": "json_schema", "name": rf.name or "response", "schema": rf.schema or {}}
    if rf.description is not None:
        fmt["description"] = rf.description
    fmt["strict"] = bool(rf.strict)
    return {"format": fmt}


def response_shell(
    request: Request, response_id: str, created_at: int, status: str, store: bool | None = None
) -> dict[str, Any]:
    """The Response object's fields that echo the request, in OpenAI's key order. `store` is
    what the upstream said it does with the response (only OpenAI stores any: None elsewhere)."""
    instructions = next((s.text for s in request.system if s.role == "developer"), None)
    raw = request.raw if request.ingress is Protocol.OPENAI_RESPONSES and request.raw is not None else {}
    if raw:
        instructions = raw.get("instructions")
    tools = [t for t in (_tool_to_responses(t) for t in request.tools) if t is not None]
    reasoning = request.reasoning
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": instructions,
        "max_output_tokens": request.max_tokens,
        "max_tool_calls": raw.get("max_tool_calls"),
        "model": request.model,
        "output": [],
        "parallel_tool_calls": not (request.tool_choice and request.tool_choice.disable_parallel),
        "previous_response_id": request.previous_response_id,
        "prompt_cache_key": raw.get("prompt_cache_key"),
        "reasoning": {
            "effort": reasoning.effort if reasoning else None,
            "summary": reasoning.summary if reasoning else None,
        },
        "safety_identifier": raw.get("safety_identifier"),
        "service_tier": "default",
        "store": bool(store),
        "temperature": request.temperature if request.temperature is not None else 1.0,
        "text": _text_config(request.response_format),
        # What the client sent (an `allowed_tools` or hosted tool choice as it was), else the mapping.
        "tool_choice": raw["tool_choice"]
        if raw.get("tool_choice") is not None
        else _tool_choice_to_responses(request.tool_choice),
        "tools": tools,
        "top_logprobs": request.top_logprobs or 0,
        "top_p": request.top_p if request.top_p is not None else 1.0,
        "truncation": raw.get("truncation") or "disabled",
        "usage": None,
        "user": raw.get("user"),
        "metadata": request.metadata,
    }


def status_for(finish: FinishReason | None) -> tuple[str, dict[str, Any] | None]:
    """Response `status` and `incomplete_details` for a finish reason."""
    if finish is FinishReason.MAX_TOKENS:
        return "incomplete", {"reason": "max_output_tokens"}
    if finish in (FinishReason.CONTENT_FILTER, FinishReason.REFUSAL):
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def _reasoning_item_out(p: ReasoningPart, item_id: str, request: Request, status: str) -> dict[str, Any]:
    summary = p.summary if p.summary else ([p.text] if p.text else [])
    item: dict[str, Any] = {
        "id": item_id,
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": s} for s in summary],
    }
    # Opaque reasoning state is only meaningful to the vendor that made it: OpenAI's as it came,
    # another vendor's tagged with that vendor, and only when `include` asks for it.
    if p.encrypted_content and p.provider is Protocol.OPENAI_RESPONSES:
        item["encrypted_content"] = p.encrypted_content
    elif _include_encrypted(request):
        item["encrypted_content"] = carried_state(p)
    item["status"] = status
    return item


def _include_encrypted(request: Request) -> bool:
    return request.include_reasoning_state


def _content_obj(p: TextPart | RefusalPart) -> dict[str, Any]:
    if isinstance(p, RefusalPart):
        return {"type": "refusal", "refusal": p.text}
    logprobs = logprobs_to_openai(p.logprobs) if p.logprobs else []
    return {"type": "output_text", "annotations": p.annotations or [], "logprobs": logprobs, "text": p.text}


def render_output(resp: Response, request: Request, response_id: str, status: str) -> list[dict[str, Any]]:
    """Canonical content -> Responses output items (consecutive text/refusal parts share one
    message item, as OpenAI's do)."""
    item_status = "completed" if status == "completed" else "incomplete"
    out: list[dict[str, Any]] = []
    message: dict[str, Any] | None = None
    for p in resp.content:
        if isinstance(p, VendorPart):
            # OpenAI's own items verbatim; another vendor's block (a server tool call or result)
            # has no Responses form.
            if p.provider is Protocol.OPENAI_RESPONSES:
                message = None
                out.append(p.raw)
            continue
        if isinstance(p, TextPart | RefusalPart):
            if message is not None and p.item_id and p.item_id != message["id"]:
                message = None  # another upstream message item
            if message is None:
                message = {
                    # The upstream's own id (OpenAI's `msg_…`) when there is one.
                    "id": p.item_id or _item_id("msg_", response_id, len(out)),
                    "type": "message",
                    "status": item_status,
                    "content": [],
                    "role": "assistant",
                }
                out.append(message)
            message["content"].append(_content_obj(p))
            continue
        message = None
        if isinstance(p, ReasoningPart):
            if (
                p.provider is not Protocol.OPENAI_RESPONSES
                and not p.text
                and not (_include_encrypted(request) and carried_state(p))
            ):
                continue  # nothing a Responses client can see or send back
            item_id = p.item_id or _item_id("rs_", response_id, len(out))
            out.append(_reasoning_item_out(p, item_id, request, item_status))
        elif isinstance(p, ToolCallPart):
            out.append(
                {
                    "id": p.item_id or _item_id("fc_", response_id, len(out)),
                    "type": "function_call",
                    "status": item_status,
                    "arguments": p.arguments,
                    "call_id": p.id,
                    "name": p.name,
                }
            )
    return out


def render_responses_response(resp: Response, request: Request) -> dict[str, Any]:
    response_id = response_id_for(resp.id)
    status, incomplete = status_for(resp.finish_reason)
    out = response_shell(request, response_id, resp.created, status, resp.store)
    out["incomplete_details"] = incomplete
    out["output"] = render_output(resp, request, response_id, status)
    out["usage"] = usage_to_responses(resp.usage or Usage())
    if status == "completed":
        out["completed_at"] = resp.created
    return out


class ResponsesStreamRenderer:
    """Canonical events -> Responses SSE events. Output items open and close one at a time:
    text/refusal blocks are content parts of one message item; reasoning blocks are reasoning
    items whose text streams as summary text; tool calls are function_call items."""

    content_type = CONTENT_TYPE_SSE

    def __init__(self, request: Request, *, fallback_id: str = "", created: int = 0) -> None:
        self._request = request
        self._id = response_id_for(fallback_id) if fallback_id else ""
        self._created = created
        self._store: bool | None = None
        self._seq = 0
        self._started = False
        self._ended = False
        self._usage: Usage | None = None
        self._finish: FinishReason | None = None
        self._output: list[dict[str, Any]] = []  # finished items, by output_index
        # The open output item and what is open inside it.
        self._item: dict[str, Any] | None = None
        self._kind = ""  # "message" | "reasoning" | "function_call"
        self._part: dict[str, Any] | None = None  # open content part of a message
        self._part_logprobs: list[TokenLogprob] = []  # the open output_text part's tokens
        self._summary_open = False
        self._blocks: dict[int, str] = {}  # canonical block index -> kind of its item
        self._reasoning_provider: Protocol | None = None
        self._pending_reasoning: ReasoningPart | None = None  # a reasoning block not shown yet

    # ------------------------------------------------------------------ framing

    def _event(self, name: str, payload: dict[str, Any]) -> bytes:
        payload = {"type": name, "sequence_number": self._seq, **payload}
        self._seq += 1
        return encode_event(name, orjson.dumps(payload))

    def _shell(self, status: str) -> dict[str, Any]:
        return response_shell(
            self._request, self._id or derive_id("resp_", ""), self._created, status, self._store
        )

    def _start(self) -> bytes:
        self._started = True
        if not self._id:
            self._id = derive_id("resp_", f"{self._request.model}/{self._created}")
        shell = self._shell("in_progress")
        return self._event("response.created", {"response": shell}) + self._event(
            "response.in_progress", {"response": shell}
        )

    @property
    def _output_index(self) -> int:
        return len(self._output)

    # ------------------------------------------------------------------ items

    def _open_item(self, kind: str, item: dict[str, Any]) -> bytes:
        self._item, self._kind = item, kind
        return self._event("response.output_item.added", {"output_index": self._output_index, "item": item})

    def _open_message(self, item_id: str | None = None) -> bytes:
        if self._kind == "message" and (not item_id or self._item is None or item_id == self._item["id"]):
            return b""
        out = self._close_item()
        item = {
            # The upstream's own id (OpenAI's `msg_…`) when there is one.
            "id": item_id or _item_id("msg_", self._id, self._output_index),
            "type": "message",
            "status": "in_progress",
            "content": [],
            "role": "assistant",
        }
        return out + self._open_item("message", item)

    def _open_part(self, part: dict[str, Any]) -> bytes:
        assert self._item is not None
        out = self._close_part()
        self._part = part
        self._part_logprobs = []
        idx = len(self._item["content"])
        return out + self._event(
            "response.content_part.added",
            {
                "item_id": self._item["id"],
                "output_index": self._output_index,
                "content_index": idx,
                "part": part,
            },
        )

    def _close_part(self) -> bytes:
        if self._part is None or self._item is None:
            return b""
        part, self._part = self._part, None
        idx = len(self._item["content"])
        common = {"item_id": self._item["id"], "output_index": self._output_index, "content_index": idx}
        if part["type"] == "refusal":
            out = self._event("response.refusal.done", {**common, "refusal": part["refusal"]})
        else:
            lps = self._part_logprobs
            part["logprobs"] = logprobs_to_openai(lps)
            done = {**common, "text": part["text"], "logprobs": logprobs_to_openai(lps, with_bytes=False)}
            out = self._event("response.output_text.done", done)
        self._item["content"].append(part)
        return out + self._event("response.content_part.done", {**common, "part": part})

    def _close_summary(self) -> bytes:
        if not self._summary_open or self._item is None:
            return b""
        self._summary_open = False
        text = self._item["summary"][-1]["text"]
        common = {"item_id": self._item["id"], "output_index": self._output_index, "summary_index": 0}
        return self._event("response.reasoning_summary_text.done", {**common, "text": text}) + self._event(
            "response.reasoning_summary_part.done", {**common, "part": {"type": "summary_text", "text": text}}
        )

    def _close_item(self, status: str = "completed") -> bytes:
        if self._item is None:
            return b""
        out = b""
        item = self._item
        if self._kind == "message":
            out += self._close_part()
        elif self._kind == "reasoning":
            out += self._close_summary()
        elif self._kind == "function_call":
            out += self._event(
                "response.function_call_arguments.done",
                {
                    "item_id": item["id"],
                    "name": item["name"],
                    "output_index": self._output_index,
                    "arguments": item["arguments"],
                },
            )
        if self._kind != "vendor":  # a verbatim item keeps the status its vendor gave it
            item["status"] = status
        out += self._event("response.output_item.done", {"output_index": self._output_index, "item": item})
        self._output.append(item)
        self._item, self._kind = None, ""
        return out

    # ------------------------------------------------------------------ events

    def render(self, event: StreamEvent) -> bytes:
        if self._ended:
            return b""
        if isinstance(event, StreamStart):
            if not self._started:
                if event.id:
                    self._id = response_id_for(event.id)
                self._created = event.created or self._created
                self._store = event.store
                if event.usage is not None:
                    self._usage = event.usage
                return self._start()
            return b""
        if isinstance(event, UsageUpdate):
            self._usage = event.usage
            return b""
        head = b"" if self._started else self._start()
        if isinstance(event, BlockStart):
            return head + self._block_start(event)
        if isinstance(event, TextDelta):
            return head + self._text(event.index, event.text, "output_text", event.logprobs)
        if isinstance(event, RefusalDelta):
            return head + self._text(event.index, event.text, "refusal")
        if isinstance(event, ReasoningDelta):
            return head + self._reasoning(event)
        if isinstance(event, ToolArgumentsDelta):
            return head + self._arguments(event.arguments)
        if isinstance(event, BlockStop):
            kind = self._blocks.pop(event.index, "")
            if kind == "reasoning":
                self._pending_reasoning = None
            if kind in ("reasoning", "function_call", "vendor") and self._kind == kind:
                return head + self._close_item()
            if kind == "message":
                return head + self._close_part()
            return head
        if isinstance(event, StreamFinish):
            self._finish = event.finish_reason
            return head
        if isinstance(event, VendorDelta):
            return head + self._vendor_delta(event)
        return head + self.render_error(event.error_kind, event.message)

    def _vendor_delta(self, event: VendorDelta) -> bytes:
        """An event of a verbatim OpenAI item, relayed with this stream's sequence number and the
        item's output index; its `output_item.done` gives the finished item, sent when the block
        stops. Another vendor's delta (a server tool's input) has nothing to show."""
        if event.raw.get("type") == "response.output_text.annotation.added":
            return self._annotation(event)
        if (
            event.provider is not Protocol.OPENAI_RESPONSES
            or self._kind != "vendor"
            or self._blocks.get(event.index) != "vendor"
            or self._item is None
        ):
            return b""
        name = event.raw.get("type")
        if name == "response.output_item.done":
            if isinstance(event.raw.get("item"), dict):
                self._item = dict(event.raw["item"])
            return b""
        if not isinstance(name, str):
            return b""
        payload = {k: val for k, val in event.raw.items() if k not in ("type", "sequence_number")}
        if "output_index" in payload:
            payload["output_index"] = self._output_index
        return self._event(name, payload)

    def _annotation(self, event: VendorDelta) -> bytes:
        """OpenAI's annotation of the open output text, added to the part and announced with this
        stream's indices."""
        part = self._part
        if (
            event.provider is not Protocol.OPENAI_RESPONSES
            or self._blocks.get(event.index) != "message"
            or self._item is None
            or part is None
            or part.get("type") != "output_text"
        ):
            return b""
        part["annotations"].append(event.raw["annotation"])
        return self._event(
            "response.output_text.annotation.added",
            {
                "item_id": self._item["id"],
                "output_index": self._output_index,
                "content_index": len(self._item["content"]),
                "annotation_index": len(part["annotations"]) - 1,
                "annotation": event.raw["annotation"],
            },
        )

    def _block_start(self, event: BlockStart) -> bytes:
        part = event.part
        if isinstance(part, TextPart | RefusalPart):
            self._blocks[event.index] = "message"
            out = self._open_message(part.item_id)
            if isinstance(part, RefusalPart):
                out += self._open_part({"type": "refusal", "refusal": ""})
                return out + (self._text(event.index, part.text, "refusal") if part.text else b"")
            out += self._open_part({"type": "output_text", "annotations": [], "logprobs": [], "text": ""})
            return out + (
                self._text(event.index, part.text, "output_text", part.logprobs) if part.text else b""
            )
        if isinstance(part, ReasoningPart):
            self._blocks[event.index] = "reasoning"
            out = self._close_item()
            self._reasoning_provider = part.provider
            self._pending_reasoning = part
            # OpenAI's own reasoning items always show; another vendor's reasoning shows once it
            # has text, or state the client asked for (`include`; a bare Gemini signature or an
            # Anthropic redacted block has nothing else).
            carried = carried_state(part) if _include_encrypted(self._request) else None
            if part.provider is Protocol.OPENAI_RESPONSES or carried:
                out += self._open_reasoning()
            if carried and self._item is not None:
                self._item["encrypted_content"] = carried
            if part.text:
                out += self._reasoning(ReasoningDelta(event.index, part.text))
            return out
        if isinstance(part, ToolCallPart):
            self._blocks[event.index] = "function_call"
            out = self._close_item()
            item = {
                "id": part.item_id or _item_id("fc_", self._id, self._output_index),
                "type": "function_call",
                "status": "in_progress",
                "arguments": "",
                "call_id": part.id,
                "name": part.name,
            }
            out += self._open_item("function_call", item)
            return out + (self._arguments(part.arguments) if part.arguments else b"")
        if isinstance(part, VendorPart) and part.provider is Protocol.OPENAI_RESPONSES:
            # One of OpenAI's own items (a custom tool's call, a hosted tool's call), verbatim.
            self._blocks[event.index] = "vendor"
            return self._close_item() + self._open_item("vendor", dict(part.raw))
        return b""

    def _text(self, index: int, text: str, kind: str, logprobs: list[TokenLogprob] | None = None) -> bytes:
        if not text:
            return b""
        out = b""
        if self._kind != "message" or self._part is None or self._part["type"] != kind:
            # A delta with no open part (never from this package's parsers): open one.
            self._blocks.setdefault(index, "message")
            out += self._open_message()
            empty = (
                {"type": "refusal", "refusal": ""}
                if kind == "refusal"
                else {
                    "type": "output_text",
                    "annotations": [],
                    "logprobs": [],
                    "text": "",
                }
            )
            out += self._open_part(empty)
        assert self._item is not None
        assert self._part is not None
        common = {
            "item_id": self._item["id"],
            "output_index": self._output_index,
            "content_index": len(self._item["content"]),
        }
        if kind == "refusal":
            self._part["refusal"] += text
            return out + self._event("response.refusal.delta", {**common, "delta": text})
        self._part["text"] += text
        if logprobs:
            self._part_logprobs.extend(logprobs)
        lps = logprobs_to_openai(logprobs, with_bytes=False) if logprobs else []
        return out + self._event("response.output_text.delta", {**common, "delta": text, "logprobs": lps})

    def _open_reasoning(self) -> bytes:
        part, self._pending_reasoning = self._pending_reasoning, None
        if part is None:
            return b""
        item: dict[str, Any] = {
            "id": part.item_id or _item_id("rs_", self._id, self._output_index),
            "type": "reasoning",
            "summary": [],
        }
        if _include_encrypted(self._request):
            item["encrypted_content"] = None
        return self._open_item("reasoning", item)

    def _reasoning(self, event: ReasoningDelta) -> bytes:
        out = b""
        responses_state = (
            bool(event.encrypted_content) and self._reasoning_provider is Protocol.OPENAI_RESPONSES
        )
        # Another vendor's signature (Anthropic sends it after the thinking text), when asked.
        carried = None
        if event.signature and self._reasoning_provider is not Protocol.OPENAI_RESPONSES:
            signed = ReasoningPart(signature=event.signature, provider=self._reasoning_provider)
            carried = carried_state(signed) if _include_encrypted(self._request) else None
        if self._pending_reasoning is not None and (event.text or responses_state or carried):
            out += self._open_reasoning()
        if self._kind != "reasoning" or self._item is None:
            return out
        item = self._item
        if event.encrypted_content and self._reasoning_provider is Protocol.OPENAI_RESPONSES:
            item["encrypted_content"] = (item.get("encrypted_content") or "") + event.encrypted_content
        if carried:
            item["encrypted_content"] = carried
        if not event.text:
            return out
        common = {"item_id": item["id"], "output_index": self._output_index, "summary_index": 0}
        if not self._summary_open:
            self._summary_open = True
            item["summary"].append({"type": "summary_text", "text": ""})
            out += self._event(
                "response.reasoning_summary_part.added",
                {**common, "part": {"type": "summary_text", "text": ""}},
            )
        item["summary"][-1]["text"] += event.text
        return out + self._event("response.reasoning_summary_text.delta", {**common, "delta": event.text})

    def _arguments(self, delta: str) -> bytes:
        if self._kind != "function_call" or self._item is None or not delta:
            return b""
        self._item["arguments"] += delta
        return self._event(
            "response.function_call_arguments.delta",
            {"item_id": self._item["id"], "output_index": self._output_index, "delta": delta},
        )

    def _final(self, status: str, incomplete: dict[str, Any] | None) -> dict[str, Any]:
        shell = self._shell(status)
        shell["incomplete_details"] = incomplete
        shell["output"] = self._output
        shell["usage"] = usage_to_responses(self._usage or Usage())
        if status == "completed":
            shell["completed_at"] = self._created
        return shell

    def close(self) -> bytes:
        if self._ended:
            return b""
        out = b"" if self._started else self._start()
        status, incomplete = status_for(self._finish)
        out += self._close_item("completed" if status == "completed" else "incomplete")
        self._ended = True
        name = "response.completed" if status == "completed" else "response.incomplete"
        return out + self._event(name, {"response": self._final(status, incomplete)})

    def render_error(self, kind: ErrorKind, message: str, *, param: str = "", code: str = "") -> bytes:
        if self._ended:
            return b""
        out = b"" if self._started else self._start()
        self._ended = True
        err = ApiError(error_type_for(kind), message, param or None, code or None)
        snapshot = self._final("failed", None)
        snapshot["usage"] = usage_to_responses(self._usage) if self._usage is not None else None
        seq = self._seq
        self._seq += 1
        return out + render_stream_error(
            err, Protocol.OPENAI_RESPONSES, response=snapshot, sequence_number=seq
        )


class ResponsesIngress:
    """The Responses ingress codec."""

    protocol = Protocol.OPENAI_RESPONSES

    def parse_request(self, body: bytes, headers: Mapping[str, str]) -> Request:
        return parse_responses_request(v.load_object(body))

    def render_response(self, response: Response, request: Request) -> bytes:
        return orjson.dumps(render_responses_response(response, request))

    def stream_renderer(self, request: Request) -> ResponsesStreamRenderer:
        return ResponsesStreamRenderer(request)


# ============================================================================================
# Provider: canonical -> upstream /responses


def _image_out(p: ImagePart) -> dict[str, Any]:
    url = p.url if p.url is not None else f"data:{p.media_type or 'image/png'};base64,{p.data}"
    return {"type": "input_image", "image_url": url, "detail": p.detail or "auto"}


def _file_out(p: FilePart) -> dict[str, Any]:
    f: dict[str, Any] = {"type": "input_file"}
    if p.file_id:
        f["file_id"] = p.file_id
    elif p.data is not None:
        f["file_data"] = f"data:{p.media_type or 'application/pdf'};base64,{p.data}"
    elif p.url:
        f["file_url"] = p.url
    if p.filename:
        f["filename"] = p.filename
    return f


def _input_content(parts: list[Part] | list[TextPart | ImagePart | FilePart]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in parts:
        if isinstance(p, TextPart):
            out.append({"type": "input_text", "text": p.text})
        elif isinstance(p, ImagePart):
            out.append(_image_out(p))
        elif isinstance(p, FilePart):
            out.append(_file_out(p))
    return out


def _reasoning_input(p: ReasoningPart) -> dict[str, Any]:
    summary = p.summary if p.summary is not None else ([p.text] if p.text else [])
    r: dict[str, Any] = {
        "type": "reasoning",
        "id": p.item_id,
        "summary": [{"type": "summary_text", "text": s} for s in summary],
    }
    if p.encrypted_content:
        r["encrypted_content"] = p.encrypted_content
    return r


def _assistant_items(parts: list[Part]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    content: list[dict[str, Any]] = []
    for p in parts:
        if isinstance(p, TextPart):
            content.append({"type": "output_text", "text": p.text, "annotations": p.annotations or []})
            continue
        if isinstance(p, RefusalPart):
            content.append({"type": "refusal", "refusal": p.text})
            continue
        item: dict[str, Any] | None = None
        if isinstance(p, ToolCallPart):
            item = {
                "type": "function_call",
                "call_id": p.id,
                "name": p.name,
                "arguments": p.arguments or "{}",
            }
            if p.item_id:
                item["id"] = p.item_id
        # Only OpenAI's own reasoning items can go back to it (they need its id and encrypted
        # state); other vendors' thinking is not replayable there.
        elif isinstance(p, ReasoningPart) and p.provider is Protocol.OPENAI_RESPONSES and p.item_id:
            item = _reasoning_input(p)
        elif isinstance(p, VendorPart) and p.provider is Protocol.OPENAI_RESPONSES:
            item = p.raw
        if item is not None:
            if content:
                items.append({"role": "assistant", "content": content})
                content = []
            items.append(item)
    if content:
        items.append({"role": "assistant", "content": content})
    return items


def build_input(request: Request) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for m in request.messages:
        if m.role == "user":
            items.append({"role": "user", "content": _input_content(m.content)})
        elif m.role == "tool":
            for p in m.content:
                if isinstance(p, ToolResultPart):
                    if all(isinstance(c, TextPart) for c in p.content):
                        output: Any = "".join(c.text for c in p.content if isinstance(c, TextPart))
                    else:
                        output = _input_content(p.content)
                    items.append(
                        {"type": "function_call_output", "call_id": p.tool_call_id, "output": output}
                    )
                elif isinstance(p, VendorPart) and p.provider is Protocol.OPENAI_RESPONSES:
                    items.append(p.raw)  # the client's output of another tool, as it sent it
        else:
            items.extend(_assistant_items(m.content))
    return items


def _upstream_tool(i: int, t: Tool) -> dict[str, Any]:
    if t.kind != "function":
        if t.raw is None or t.raw_protocol is not Protocol.OPENAI_RESPONSES:
            raise v.unsupported_tool(i, t.kind)
        return t.raw
    out: dict[str, Any] = {"type": "function", "name": t.name}
    if t.description is not None:
        out["description"] = t.description
    out["parameters"] = t.parameters if t.parameters is not None else {"type": "object", "properties": {}}
    # Responses makes function tools strict unless told otherwise; other protocols' tools are not.
    out["strict"] = bool(t.strict)
    return out


def _carries_another_vendors_state(item: Any) -> bool:
    """A reasoning item this gateway rendered for another vendor's answer (Claude's, Gemini's):
    its state cannot go to OpenAI."""
    if not isinstance(item, dict) or item.get("type") != "reasoning":
        return False
    encrypted = item.get("encrypted_content")
    return isinstance(encrypted, str) and carried_reasoning(encrypted) is not None


def build_responses_body(request: Request, upstream_model: str) -> dict[str, Any]:
    if request.ingress is Protocol.OPENAI_RESPONSES and request.raw is not None:
        # Native path: the client's own body, so hosted tools, include, previous_response_id and
        # every other Responses parameter reach OpenAI unchanged.
        body = dict(request.raw)
        body["model"] = upstream_model
        items = body.get("input")
        if isinstance(items, list) and any(_carries_another_vendors_state(i) for i in items):
            body["input"] = [i for i in items if not _carries_another_vendors_state(i)]
        sid = body.get("safety_identifier")
        if isinstance(sid, str):
            body["safety_identifier"] = openai_safety_identifier(sid)
        return body
    v.refuse_vendor_only_fields(request, Protocol.OPENAI_RESPONSES)
    v.refuse_choices(request)
    if request.ingress is Protocol.ANTHROPIC_MESSAGES:
        v.refuse_file_ids(request)
    body = {"model": upstream_model, "input": build_input(request)}
    if request.system:
        body["instructions"] = "\n\n".join(s.text for s in request.system)
    if request.stream:
        body["stream"] = True
    # Stateless by default: nothing is stored at the vendor for a client that did not ask.
    body["store"] = False
    if request.max_tokens is not None:
        body["max_output_tokens"] = max(request.max_tokens, MIN_OUTPUT_TOKENS)
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    tools = [_upstream_tool(i, t) for i, t in enumerate(request.tools)]
    if tools:
        body["tools"] = tools
    tc = request.tool_choice
    if tc is not None and (tools or tc.mode == "none"):
        body["tool_choice"] = _tool_choice_to_responses(tc)
        if tc.disable_parallel is not None and tools:
            body["parallel_tool_calls"] = not tc.disable_parallel
    rf = request.response_format
    if rf is not None and rf.type != "text":
        fmt = _text_config(rf)
        if rf.type == "json_schema" and rf.strict is None:
            fmt["format"].pop("strict", None)
        body["text"] = fmt
    if request.reasoning is not None and request.capable("reasoning"):
        r = request.reasoning
        effort = openai_effort(request)
        reasoning: dict[str, Any] = {}
        if effort:
            reasoning["effort"] = effort
        reasoning["summary"] = r.summary or "auto"
        body["reasoning"] = reasoning
        # Stateless reasoning models need their encrypted state back to continue a tool loop.
        body["include"] = ["reasoning.encrypted_content"]
    if request.logprobs:
        body["include"] = [*body.get("include", ()), LOGPROBS_INCLUDE]
        if request.top_logprobs is not None:
            body["top_logprobs"] = request.top_logprobs
    if request.end_user:
        body["safety_identifier"] = openai_safety_identifier(request.end_user)
    if request.metadata:
        body["metadata"] = request.metadata
    return body


def usage_from_responses(u: Any) -> Usage | None:
    """None when absent or unreadable (the router then estimates)."""
    if not isinstance(u, dict):
        return None
    itd = u.get("input_tokens_details")
    otd = u.get("output_tokens_details")
    try:
        return Usage(
            input_tokens=token_count(u.get("input_tokens")),
            output_tokens=token_count(u.get("output_tokens")),
            cached_input_tokens=token_count(itd.get("cached_tokens")) if isinstance(itd, dict) else 0,
            # Part of input_tokens; priced at the input price unless the catalog has a write price.
            cache_write_tokens=token_count(itd.get("cache_write_tokens")) if isinstance(itd, dict) else 0,
            reasoning_tokens=token_count(otd.get("reasoning_tokens")) if isinstance(otd, dict) else 0,
        )
    except ValueError:
        return None


def _finish_from(data: dict[str, Any], has_calls: bool) -> FinishReason:
    status = data.get("status")
    if status == "incomplete":
        reason = (data.get("incomplete_details") or {}).get("reason")
        return FinishReason.CONTENT_FILTER if reason == "content_filter" else FinishReason.MAX_TOKENS
    if status == "failed":
        return FinishReason.ERROR
    return FinishReason.TOOL_USE if has_calls else FinishReason.END_TURN


def parse_output_items(output: Any) -> list[Part]:
    parts: list[Part] = []
    for item in output if isinstance(output, list) else ():
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "message":
            item_id = item.get("id") if isinstance(item.get("id"), str) else None
            for c in item.get("content") or ():
                if c.get("type") == "output_text":
                    ann = c.get("annotations")
                    lps = logprobs_from_openai(c.get("logprobs"))
                    parts.append(
                        TextPart(
                            c.get("text") or "",
                            annotations=ann if ann else None,
                            logprobs=lps or None,
                            item_id=item_id,
                        )
                    )
                elif c.get("type") == "refusal":
                    parts.append(RefusalPart(c.get("refusal") or "", item_id=item_id))
        elif kind == "function_call":
            parts.append(
                ToolCallPart(
                    id=item.get("call_id") or "",
                    name=item.get("name") or "",
                    arguments=item.get("arguments") or "",
                    item_id=item.get("id"),
                )
            )
        elif kind == "reasoning":
            summary = [s.get("text") or "" for s in item.get("summary") or ()]
            content = [c.get("text") or "" for c in item.get("content") or ()]
            parts.append(
                ReasoningPart(
                    text="\n\n".join(summary) if summary else "".join(content),
                    encrypted_content=item.get("encrypted_content"),
                    item_id=item.get("id"),
                    summary=summary,
                    provider=Protocol.OPENAI_RESPONSES,
                )
            )
        elif isinstance(kind, str):
            # Every other item (a custom tool's call, a hosted tool's call and result, MCP, ...)
            # verbatim, for Responses clients.
            parts.append(VendorPart(item, Protocol.OPENAI_RESPONSES))
    return parts


def _has_calls(parts: list[Part]) -> bool:
    """The answer ends for the client to run tools: function calls, or calls of the client's own
    other tools (a custom tool, a local shell, a computer, an MCP approval)."""
    return any(
        isinstance(p, ToolCallPart) or (isinstance(p, VendorPart) and p.raw.get("type") in _CLIENT_CALLS)
        for p in parts
    )


def parse_responses_response(data: dict[str, Any]) -> Response:
    if data.get("object") != "response" and "output" not in data:
        raise UpstreamProtocolError("upstream body is not a Responses response object")
    if data.get("status") == "failed":
        err = data.get("error") or {}
        raise UpstreamProtocolError(f"upstream response failed: {err.get('message') or 'unknown error'}")
    content = parse_output_items(data.get("output"))
    return Response(
        id=str(data.get("id") or ""),
        model=str(data.get("model") or ""),
        content=content,
        finish_reason=_finish_from(data, _has_calls(content)),
        usage=usage_from_responses(data.get("usage")),
        created=epoch_seconds(data.get("created_at")),
        service_tier=data.get("service_tier"),
        store=data["store"] if isinstance(data.get("store"), bool) else None,
    )


_CODE_KINDS = {
    "rate_limit_exceeded": ErrorKind.UPSTREAM_RATE_LIMITED,
    "server_error": ErrorKind.UPSTREAM_ERROR,
    "invalid_prompt": ErrorKind.UPSTREAM_INVALID_REQUEST,
}


class ResponsesStreamParser:
    """Upstream Responses SSE -> canonical events. Each output item (and each content part of a
    message) becomes one canonical block."""

    def __init__(self) -> None:
        self._sse = SSEDecoder()
        self._started = False
        self._next = 0
        self._open: int | None = None
        self._open_kind = ""
        self._args_seen = False
        self._has_calls = False
        self._reasoning_summary = -1
        # The open verbatim item's upstream output index and id, which its own events name.
        self._vendor_output: Any = None
        self._vendor_item: Any = None
        self.done = False

    @reads_upstream("a stream event")
    def feed(self, data: bytes) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for ev in self._sse.feed(data):
            self._event(ev.data, out)
        return out

    def _begin(self, part: Part, kind: str, out: list[StreamEvent]) -> int:
        self._stop(out)
        idx = self._next
        self._next += 1
        out.append(BlockStart(idx, part))
        self._open, self._open_kind = idx, kind
        return idx

    def _stop(self, out: list[StreamEvent]) -> None:
        if self._open is not None:
            out.append(BlockStop(self._open))
            self._open, self._open_kind = None, ""

    def _start(self, resp: dict[str, Any], out: list[StreamEvent]) -> None:
        if not self._started:
            self._started = True
            out.append(
                StreamStart(
                    id=str(resp.get("id") or ""),
                    model=str(resp.get("model") or ""),
                    created=epoch_seconds(resp.get("created_at")),
                    store=resp["store"] if isinstance(resp.get("store"), bool) else None,
                )
            )

    def _event(self, payload: bytes, out: list[StreamEvent]) -> None:
        try:
            ev = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(
                f"upstream sent a stream event that is not JSON: {payload[:80]!r}"
            ) from None
        if not isinstance(ev, dict):
            raise UpstreamProtocolError("upstream sent a stream event that is not an object")
        kind = ev.get("type")
        if self._open_kind == "vendor" and self._vendor_event(ev, kind, out):
            return
        if kind in ("response.created", "response.in_progress", "response.queued"):
            self._start(ev.get("response") or {}, out)
        elif kind == "response.output_item.added":
            item = ev.get("item") or {}
            itype = item.get("type")
            if itype == "function_call":
                self._has_calls = True
                self._args_seen = False
                self._begin(
                    ToolCallPart(
                        id=item.get("call_id") or "",
                        name=item.get("name") or "",
                        arguments="",
                        item_id=item.get("id"),
                    ),
                    "function_call",
                    out,
                )
                if item.get("arguments"):
                    self._args_seen = True
                    out.append(ToolArgumentsDelta(self._open or 0, item["arguments"]))
            elif itype == "reasoning":
                self._reasoning_summary = -1
                self._begin(
                    ReasoningPart("", item_id=item.get("id"), provider=Protocol.OPENAI_RESPONSES),
                    "reasoning",
                    out,
                )
            elif isinstance(itype, str) and itype != "message":
                # Any other item (a custom tool's call, a hosted tool's call, MCP, ...) opens
                # verbatim; its events follow as vendor deltas (`_vendor_event`).
                self._has_calls = self._has_calls or itype in _CLIENT_CALLS
                self._begin(VendorPart(item, Protocol.OPENAI_RESPONSES), "vendor", out)
                self._vendor_output, self._vendor_item = ev.get("output_index"), item.get("id")
        elif kind == "response.content_part.added":
            part = ev.get("part") or {}
            item_id = ev.get("item_id") if isinstance(ev.get("item_id"), str) else None
            if part.get("type") == "refusal":
                self._begin(RefusalPart("", item_id=item_id), "refusal", out)
            elif part.get("type") == "output_text":
                self._begin(TextPart("", item_id=item_id), "text", out)
        elif kind == "response.output_text.delta":
            if self._open_kind == "text" and self._open is not None and ev.get("delta"):
                lps = logprobs_from_openai(ev.get("logprobs"))
                out.append(TextDelta(self._open, ev["delta"], lps or None))
        elif kind == "response.output_text.annotation.added":
            # A citation of a hosted tool's result (web search's `url_citation`, …), relayed to
            # Responses clients only, as the non-stream answer keeps its `annotations`.
            if (
                self._open_kind == "text"
                and self._open is not None
                and isinstance(ev.get("annotation"), dict)
            ):
                out.append(VendorDelta(self._open, ev, Protocol.OPENAI_RESPONSES))
        elif kind == "response.refusal.delta":
            if self._open_kind == "refusal" and self._open is not None and ev.get("delta"):
                out.append(RefusalDelta(self._open, ev["delta"]))
        elif kind == "response.content_part.done":
            if self._open_kind in ("text", "refusal"):
                self._stop(out)
        elif kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            if self._open_kind == "reasoning" and self._open is not None and ev.get("delta"):
                si = ev.get("summary_index", 0)
                if kind == "response.reasoning_summary_text.delta" and si != self._reasoning_summary:
                    if self._reasoning_summary >= 0:
                        out.append(ReasoningDelta(self._open, "\n\n"))
                    self._reasoning_summary = si
                out.append(ReasoningDelta(self._open, ev["delta"]))
        elif kind == "response.function_call_arguments.delta":
            if self._open_kind == "function_call" and self._open is not None and ev.get("delta"):
                self._args_seen = True
                out.append(ToolArgumentsDelta(self._open, ev["delta"]))
        elif kind == "response.output_item.done":
            item = ev.get("item") or {}
            if self._open is not None:
                if self._open_kind == "function_call" and not self._args_seen and item.get("arguments"):
                    out.append(ToolArgumentsDelta(self._open, item["arguments"]))
                if self._open_kind == "reasoning" and item.get("encrypted_content"):
                    out.append(ReasoningDelta(self._open, encrypted_content=item["encrypted_content"]))
                if self._open_kind in ("function_call", "reasoning"):
                    self._stop(out)
            self._stop(out)
        elif kind in ("response.completed", "response.incomplete"):
            resp = ev.get("response") or {}
            self._start(resp, out)
            self._stop(out)
            usage = usage_from_responses(resp.get("usage"))
            if usage is not None:
                out.append(UsageUpdate(usage))
            out.append(StreamFinish(_finish_from(resp, self._has_calls)))
            self.done = True
        elif kind == "response.failed":
            resp = ev.get("response") or {}
            self._stop(out)
            usage = usage_from_responses(resp.get("usage"))
            if usage is not None:
                out.append(UsageUpdate(usage))
            err = resp.get("error") or {}
            code = err.get("code")
            out.append(
                StreamError(
                    _CODE_KINDS.get(str(code), ErrorKind.UPSTREAM_ERROR),
                    err.get("message") or "upstream response failed",
                    code,
                )
            )
            self.done = True
        elif kind == "error":
            code = ev.get("code")
            out.append(
                StreamError(
                    _CODE_KINDS.get(str(code), ErrorKind.UPSTREAM_ERROR),
                    ev.get("message") or "upstream error",
                    code,
                )
            )
            self.done = True

    def _vendor_event(self, ev: dict[str, Any], kind: Any, out: list[StreamEvent]) -> bool:
        """An event of the open verbatim item (`response.custom_tool_call_input.delta`,
        `response.web_search_call.searching`, ..., and its `response.output_item.done`, which
        holds the finished item) -> a `VendorDelta` carrying the event as it came."""
        if not isinstance(kind, str) or not kind.startswith("response.") or self._open is None:
            return False
        if kind == "response.output_item.added":
            return False
        index, item_id = ev.get("output_index"), ev.get("item_id")
        if not (
            (index is not None and index == self._vendor_output)
            or (item_id is not None and item_id == self._vendor_item)
        ):
            return False
        out.append(VendorDelta(self._open, ev, Protocol.OPENAI_RESPONSES))
        if kind == "response.output_item.done":
            self._stop(out)
        return True

    @reads_upstream("a stream event")
    def close(self) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for ev in self._sse.flush():
            self._event(ev.data, out)
        self._stop(out)
        return out


def parse_responses_error(status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    err = data.get("error") if isinstance(data, dict) else None
    message = etype = code = param = None
    if isinstance(err, dict):
        message = err.get("message")
        etype = err.get("type") if isinstance(err.get("type"), str) else None
        code = str(err["code"]) if err.get("code") is not None else None
        param = err.get("param") if isinstance(err.get("param"), str) else None
    return UpstreamError(
        kind=error_kind_for_status(status),
        message=str(message or body[:200].decode(errors="replace") or f"upstream returned HTTP {status}"),
        status=status,
        upstream_type=etype,
        code=code,
        param=param,
        retry_after_ms=parse_retry_after(headers) if status in (429, 503, 529) else 0,
    )


class ResponsesProvider:
    """Provider codec for OpenAI's `/v1/responses`."""

    protocol = Protocol.OPENAI_RESPONSES

    def build_request(self, request: Request, upstream_model: str, api_key: str) -> UpstreamRequest:
        headers = {"content-type": CONTENT_TYPE_JSON}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        body = orjson.dumps(build_responses_body(request, upstream_model))
        return UpstreamRequest("/responses", body, headers, request.stream)

    @reads_upstream("an answer")
    def parse_response(self, body: bytes) -> Response:
        data = upstream_json_object(body)
        return parse_responses_response(data)

    def stream_parser(self) -> ResponsesStreamParser:
        return ResponsesStreamParser()

    def parse_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError:
        return parse_responses_error(status, body, headers)


# ============================================================================================
# OpenAI: chat completions, or the Responses API natively for Responses clients


class _SniffingStreamParser:
    """Picks the Responses or the chat-chunk parser from the first SSE event: Responses events
    are typed (`"type":"response.…"`), chat chunks are not."""

    def __init__(self) -> None:
        self._buf = b""
        self._inner: ResponsesStreamParser | ChatStreamParser | None = None

    def feed(self, data: bytes) -> list[StreamEvent]:
        if self._inner is not None:
            return self._inner.feed(data)
        self._buf += data
        head = self._buf.lstrip()
        if not head.startswith((b"event:", b"data:")) or b"\n" not in head:
            return []
        first_line = head.split(b"\n", 1)[0]
        responses = first_line.startswith(b"event:") or b'"type":"response.' in first_line.replace(b" ", b"")
        self._inner = ResponsesStreamParser() if responses else ChatStreamParser()
        buf, self._buf = self._buf, b""
        return self._inner.feed(buf)

    def close(self) -> list[StreamEvent]:
        if self._inner is None:
            if not self._buf.strip():
                return []
            self._inner = ChatStreamParser()
            buf, self._buf = self._buf, b""
            return self._inner.feed(buf) + self._inner.close()
        return self._inner.close()


class OpenAIProvider(ChatProvider):
    """OpenAI's own models: Chat Completions for every client, except that a client speaking the
    Responses API is served by OpenAI's Responses API natively (its state, hosted tools and
    reasoning items stay intact). It stays a `ChatProvider`, so chat clients keep the chat fast
    path. Answers are told apart by their shape, since parsing gets no request."""

    def __init__(self) -> None:
        super().__init__(Dialect.OPENAI)
        self._responses = ResponsesProvider()

    def build_request(self, request: Request, upstream_model: str, api_key: str) -> UpstreamRequest:
        if request.ingress is Protocol.OPENAI_RESPONSES:
            return self._responses.build_request(request, upstream_model, api_key)
        return super().build_request(request, upstream_model, api_key)

    @reads_upstream("an answer")
    def parse_response(self, body: bytes) -> Response:
        data = upstream_json_object(body)
        if data.get("object") == "response":
            return parse_responses_response(data)
        return parse_chat_completion(data)

    def stream_parser(self) -> _SniffingStreamParser:  # type: ignore[override]
        return _SniffingStreamParser()
