"""Field checks for ingress codecs. Every failure raises `InvalidRequest` whose `param` is the
dotted path of the field (`messages[1].content[0].text`) and whose message reads like the
vendors' own (OpenAI: "Invalid type for 'x': expected a string, but got an integer instead.")."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson

from crossmodel_protocols.canonical import (
    FilePart,
    ImagePart,
    InvalidRequest,
    Part,
    Protocol,
    Request,
    ToolResultPart,
)


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def load_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or InvalidRequest."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise InvalidRequest(
            f"We could not parse the JSON body of your request: {e}. Send valid JSON.",
            code="invalid_json",
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequest(
            f"Invalid type for the request body: expected an object, but got {type_name(data)} instead.",
            code="invalid_type",
        )
    return data


def missing(param: str) -> InvalidRequest:
    return InvalidRequest(
        f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def wrong_type(param: str, expected: str, value: Any) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid type for '{param}': expected {expected}, but got {type_name(value)} instead.",
        param=param,
        code="invalid_type",
    )


def _show(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # an integer orjson cannot write (beyond 64 bits)
        return repr(value)


def _truthy(value: Any) -> bool:
    return bool(value)


def _present(value: Any) -> bool:
    return value is not None


# Request fields of each client protocol that shape the answer and that only that protocol's own
# vendor serves, with when a value asks for it. Sent to another vendor's model they would be
# dropped on the way, and the answer would read as if they had been honoured: no log
# probabilities, no audio, no web search, a conversation without its history, an OpenAI stored
# prompt or an MCP server never used. A vendor's own tools are checked where they are encoded.
_VENDOR_ONLY: dict[Protocol, tuple[str, dict[str, Callable[[Any], bool]]]] = {
    Protocol.OPENAI_CHAT: (
        "OpenAI-compatible",
        {
            "audio": _present,
            "modalities": lambda v: isinstance(v, list) and "audio" in v,
            "web_search_options": _present,
        },
    ),
    Protocol.OPENAI_RESPONSES: (
        "OpenAI",
        {
            "previous_response_id": _truthy,
            "conversation": _present,
            "prompt": _present,
            "background": _truthy,
        },
    ),
    Protocol.ANTHROPIC_MESSAGES: ("Anthropic", {"mcp_servers": _truthy, "container": _present}),
}


def refuse_vendor_only_fields(request: Request, served: Protocol | None) -> None:
    """Raise for a field of `_VENDOR_ONLY` when the upstream speaks `served`, not the protocol
    the client spoke."""
    if request.ingress is None or request.ingress is served or request.ingress not in _VENDOR_ONLY:
        return
    vendor, fields = _VENDOR_ONLY[request.ingress]
    for name, asks in fields.items():
        value = request.previous_response_id if name == "previous_response_id" else request.extra.get(name)
        if asks(value):
            raise InvalidRequest(
                f"Invalid value for '{name}': this model does not support it; it is served only by "
                f"{vendor} models."
                + (
                    " Send the whole conversation in 'input'."
                    if name in ("previous_response_id", "conversation")
                    else ""
                ),
                param=name,
                code="unsupported_parameter",
            )
    # An `item_reference` names an item OpenAI stored: no other vendor can read it.
    items = request.raw.get("input") if request.raw is not None else None
    if request.ingress is not Protocol.OPENAI_RESPONSES or not isinstance(items, list):
        return
    for i, item in enumerate(items):
        if isinstance(item, dict) and item.get("type") == "item_reference":
            raise InvalidRequest(
                f"Invalid value for 'input[{i}].type': item references name items stored at {vendor}; "
                f"this model does not support them, it is served only by {vendor} models. Send the "
                "items themselves.",
                param=f"input[{i}].type",
                code="unsupported_value",
            )


def refuse_logprobs(request: Request) -> None:
    """For a vendor that has no log probabilities (Anthropic): asked for, they would be missing
    from an answer that reads as complete."""
    if request.logprobs:
        param = "include" if request.ingress is Protocol.OPENAI_RESPONSES else "logprobs"
        raise InvalidRequest(
            f"Invalid value for '{param}': this model does not return log probabilities; "
            "OpenAI-compatible and Gemini models do.",
            param=param,
            code="unsupported_parameter",
        )


def refuse_choices(request: Request) -> None:
    """Chat `n` > 1 where the answer is built through the canonical model, which holds one
    choice: the other choices would be missing from an answer that reads as complete. Only the
    pass-through path to an OpenAI-family upstream relays several."""
    if request.n > 1:
        raise InvalidRequest(
            "Invalid value for 'n': this model answers one choice per request; "
            "ask for more choices with separate requests.",
            param="n",
            code="unsupported_value",
        )


def refuse_stop_over(request: Request, limit: int) -> None:
    """More stop sequences than the vendor takes (OpenAI 4, Gemini 5, ...): the ones left out
    would not stop the answer, which would read as if they had been honoured."""
    if len(request.stop) > limit:
        param = "stop_sequences" if request.ingress is Protocol.ANTHROPIC_MESSAGES else "stop"
        raise InvalidRequest(
            f"Invalid '{param}': array too long. This model takes at most {limit} stop sequences, "
            f"but got {len(request.stop)}.",
            param=param,
            code="array_above_max_length",
        )


def unsupported_file(param: str, what: str) -> InvalidRequest:
    """A file this vendor cannot be given (a URL the chat protocol has no field for, another
    vendor's file id): sent anyway it would arrive empty or name nothing, and the model would
    answer without the document."""
    param = param or "file"
    return InvalidRequest(
        f"Invalid value for '{param}': {what} is not supported with this model; "
        "send the file's content as base64 data.",
        param=param,
        code="unsupported_value",
    )


def _content_parts(request: Request) -> Iterator[Part]:
    """Every part of every message, the contents of tool results included."""
    for m in request.messages:
        for part in m.content:
            yield from part.content if isinstance(part, ToolResultPart) else [part]


def response_format_field(request: Request) -> str:
    """Where the client asked for a response format, in its own protocol."""
    return {
        Protocol.OPENAI_RESPONSES: "text.format",
        Protocol.ANTHROPIC_MESSAGES: "output_config.format",
    }.get(request.ingress, "response_format")


def refuse_file_ids(request: Request) -> None:
    """A file id names a file in one vendor's Files API (OpenAI `file-…`, Anthropic `file_…`):
    it reaches only the vendor of the client's own protocol, which may hold it."""
    for p in _content_parts(request):
        if isinstance(p, FilePart) and p.file_id:
            raise unsupported_file(p.param, "a file id of another vendor")


def refuse_images(request: Request) -> None:
    """Images (in a message or a tool result) for a model whose catalog entry lacks `vision`:
    its vendor refuses them (DeepSeek: "unknown variant `image_url`") or never sees them, and
    the client is told which of its fields holds the first one before anything is sent."""
    if request.capable("vision"):
        return
    for p in _content_parts(request):
        if isinstance(p, ImagePart):
            param = p.param or "messages"
            raise InvalidRequest(
                f"Invalid value for '{param}': this model does not accept images; "
                "send text only, or choose a model with vision.",
                param=param,
                code="unsupported_value",
            )


def unsupported_tool(index: int, kind: str) -> InvalidRequest:
    """A vendor's own tool (OpenAI's hosted `web_search`, Anthropic's server `web_search_…`, …)
    asked of a model of another vendor, which has no such tool. Dropping it would answer without
    the tool as if it had been used; the vendors themselves refuse a tool a model lacks."""
    param = f"tools[{index}].type"
    return InvalidRequest(
        f"Invalid value for '{param}': tool type '{kind}' is not supported with this model. "
        "A vendor's own hosted or server tools reach only that vendor's models; "
        "'function' tools reach every model.",
        param=param,
        code="unsupported_value",
    )


def invalid_value(
    param: str, value: Any, allowed: Iterable[str] | None = None, why: str = ""
) -> InvalidRequest:
    shown = value if isinstance(value, str) else _show(value)
    msg = f"Invalid value for '{param}': '{shown}'."
    if allowed is not None:
        opts = [f"'{a}'" for a in allowed]
        listed = ", ".join(opts[:-1]) + f", and {opts[-1]}" if len(opts) > 1 else opts[0]
        msg = f"Invalid value for '{param}': '{shown}'. Supported values are: {listed}."
    if why:
        msg = f"Invalid value for '{param}': {why}"
    return InvalidRequest(msg, param=param, code="invalid_value")


def req_str(obj: dict[str, Any], key: str, path: str) -> str:
    if key not in obj or obj[key] is None:
        raise missing(path)
    v = obj[key]
    if not isinstance(v, str):
        raise wrong_type(path, "a string", v)
    return v


def opt_str(obj: dict[str, Any], key: str, path: str) -> str | None:
    v = obj.get(key)
    if v is None:
        return None
    if not isinstance(v, str):
        raise wrong_type(path, "a string", v)
    return v


def opt_bool(obj: dict[str, Any], key: str, path: str) -> bool | None:
    v = obj.get(key)
    if v is None:
        return None
    if not isinstance(v, bool):
        raise wrong_type(path, "a boolean", v)
    return v


# Integers a request may carry: what any vendor (and the JSON the request is forwarded as) takes.
_INT64 = 2**63


def opt_int(
    obj: dict[str, Any], key: str, path: str, *, minimum: int | None = None, maximum: int | None = None
) -> int | None:
    v = obj.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        else:
            raise wrong_type(path, "an integer", v)
    if minimum is not None and v < minimum:
        raise invalid_value(
            path, v, why=f"integer below minimum value. Expected a value >= {minimum}, but got {v} instead."
        )
    top = _INT64 - 1 if maximum is None else maximum
    if not -_INT64 <= v <= top:
        raise invalid_value(
            path, v, why=f"integer above maximum value. Expected a value <= {top}, but got {v} instead."
        )
    return v


def opt_number(
    obj: dict[str, Any], key: str, path: str, *, minimum: float | None = None, maximum: float | None = None
) -> float | None:
    v = obj.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise wrong_type(path, "a number", v)
    if minimum is not None and v < minimum:
        raise invalid_value(
            path, v, why=f"number below minimum value. Expected a value >= {minimum:g}, but got {v} instead."
        )
    if maximum is not None and v > maximum:
        raise invalid_value(
            path, v, why=f"number above maximum value. Expected a value <= {maximum:g}, but got {v} instead."
        )
    return float(v)


def opt_object(obj: dict[str, Any], key: str, path: str) -> dict[str, Any] | None:
    v = obj.get(key)
    if v is None:
        return None
    if not isinstance(v, dict):
        raise wrong_type(path, "an object", v)
    return v


def opt_list(obj: dict[str, Any], key: str, path: str) -> list[Any] | None:
    v = obj.get(key)
    if v is None:
        return None
    if not isinstance(v, list):
        raise wrong_type(path, "an array", v)
    return v


def as_object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise wrong_type(path, "an object", value)
    return value


def str_map(obj: dict[str, Any], key: str, path: str) -> dict[str, str]:
    v = opt_object(obj, key, path)
    if not v:
        return {}
    for k, item in v.items():
        if not isinstance(item, str):
            raise wrong_type(f"{path}.{k}", "a string", item)
    return dict(v)


def parse_data_url(url: str, path: str) -> tuple[str, str]:
    """`data:image/png;base64,AAAA` -> ("image/png", "AAAA")."""
    head, sep, data = url.partition(",")
    if not sep or not head.startswith("data:") or not head.endswith(";base64"):
        raise invalid_value(
            path,
            url[:48],
            why="expected a base64 data URL ('data:<media type>;base64,<data>') or an http(s) URL.",
        )
    return head[5:-7], data
