"""Requests OpenAI refuses with 400 that a gateway could send by mistake, refused here the same
way so that tests catch them: reasoning settings for a model without reasoning, an effort an
o-series model does not take, a `temperature` other than 1 or `top_p` other than 1 on a
reasoning model, `stop` on o3 / o4-mini, a `safety_identifier` over 64 characters (OpenAPI
`maxLength`), and anything but text in a chat `tool` message
(`ChatCompletionRequestToolMessage`). DeepSeek's chat refusals are `deepseek_refusal`."""

from __future__ import annotations

from typing import Any

# (message, param, code) of OpenAI's error body.
Refusal = tuple[str, str, str]

SAFETY_IDENTIFIER_MAX = 64
_O_SERIES_EFFORTS = ("low", "medium", "high")


def reasons(model: str) -> bool:
    """OpenAI's reasoning models: the o-series and GPT-5 (not its chat variants)."""
    if model[:1] == "o" and model[1:2].isdigit():
        return True
    return model.startswith("gpt-5") and "-chat" not in model


def _effort(model: str, effort: Any, param: str) -> Refusal | None:
    if effort is None:
        return None
    if not reasons(model):
        return (
            f"Unsupported parameter: '{param}' is not supported with this model.",
            param,
            "unsupported_parameter",
        )
    if model.startswith("o") and effort not in _O_SERIES_EFFORTS:
        listed = ", ".join(f"'{e}'" for e in _O_SERIES_EFFORTS)
        return (
            f"Unsupported value: '{param}' does not support '{effort}' with this model. "
            f"Supported values are: {listed}.",
            param,
            "unsupported_value",
        )
    return None


def _safety_identifier(body: dict[str, Any]) -> Refusal | None:
    sid = body.get("safety_identifier")
    if isinstance(sid, str) and len(sid) > SAFETY_IDENTIFIER_MAX:
        return (
            f"Invalid 'safety_identifier': string too long. Expected a string with maximum length "
            f"{SAFETY_IDENTIFIER_MAX}, but got a string with length {len(sid)} instead.",
            "safety_identifier",
            "string_above_max_length",
        )
    return None


def _sampling(model: str, body: dict[str, Any]) -> Refusal | None:
    """Reasoning models take the default sampling only; o3 and o4-mini no `stop` (o3-mini does)."""
    if not reasons(model):
        return None
    for key in ("temperature", "top_p"):
        value = body.get(key)
        if value is not None and value != 1:
            return (
                f"Unsupported value: '{key}' does not support {value} with this model. "
                "Only the default (1) value is supported.",
                key,
                "unsupported_value",
            )
    if body.get("stop") is not None and model.startswith(("o3", "o4")) and not model.startswith("o3-mini"):
        return (
            "Unsupported parameter: 'stop' is not supported with this model.",
            "stop",
            "unsupported_parameter",
        )
    return None


def chat_refusal(body: dict[str, Any]) -> Refusal | None:
    model = str(body.get("model"))
    found = (
        _effort(model, body.get("reasoning_effort"), "reasoning_effort")
        or _sampling(model, body)
        or _safety_identifier(body)
    )
    if found:
        return found
    for i, m in enumerate(body.get("messages") or ()):
        if not isinstance(m, dict) or m.get("role") != "tool" or not isinstance(m.get("content"), list):
            continue
        for j, part in enumerate(m["content"]):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind != "text":
                return (
                    f"Invalid value: '{kind}'. Supported values are: 'text'.",
                    f"messages[{i}].content[{j}].type",
                    "invalid_value",
                )
    return None


def responses_refusal(body: dict[str, Any]) -> Refusal | None:
    reasoning = body.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
    return _effort(str(body.get("model")), effort, "reasoning.effort") or _safety_identifier(body)


def deepseek_thinks(body: dict[str, Any]) -> bool:
    """DeepSeek V4 thinks unless `thinking.type` is `disabled`; deepseek-reasoner always,
    deepseek-chat (V4 without thinking) never."""
    model = str(body.get("model"))
    if model == "deepseek-chat":
        return False
    if model == "deepseek-reasoner":
        return True
    thinking = body.get("thinking")
    return not (isinstance(thinking, dict) and thinking.get("type") == "disabled")


def deepseek_refusal(body: dict[str, Any]) -> Refusal | None:
    """What DeepSeek's chat API answers 400 to (its body has `param: null`, `code` the type):
    a response format other than `text` / `json_object`, and a forced tool choice in thinking
    mode."""
    rf = body.get("response_format")
    if isinstance(rf, dict) and rf.get("type") not in (None, "text", "json_object"):
        return ("This response_format type is unavailable now", "", "invalid_request_error")
    choice = body.get("tool_choice")
    if (choice == "required" or isinstance(choice, dict)) and deepseek_thinks(body):
        return ("Thinking mode does not support this tool_choice", "", "invalid_request_error")
    return None
