"""Requests OpenAI refuses with 400 that a gateway could send by mistake, refused here the same
way so that tests catch them: reasoning settings for a model without reasoning, an effort an
o-series model does not take, a `safety_identifier` over 64 characters (OpenAPI `maxLength`),
and anything but text in a chat `tool` message (`ChatCompletionRequestToolMessage`)."""

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


def chat_refusal(body: dict[str, Any]) -> Refusal | None:
    model = str(body.get("model"))
    found = _effort(model, body.get("reasoning_effort"), "reasoning_effort") or _safety_identifier(body)
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
