"""What the edge reads from an inference body: the model, the stream flag and the output
limit. The router parses the body fully; the edge only needs these for admission."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from crossmodel_protocols import validation as v
from crossmodel_protocols.canonical import InvalidRequest, Protocol

# The fields that cap output tokens, per protocol, in order of precedence (OpenAI chat
# deprecates max_tokens in favour of max_completion_tokens).
_MAX_OUTPUT_FIELDS: dict[Protocol, tuple[str, ...]] = {
    Protocol.OPENAI_CHAT: ("max_completion_tokens", "max_tokens"),
    Protocol.OPENAI_RESPONSES: ("max_output_tokens",),
    Protocol.ANTHROPIC_MESSAGES: ("max_tokens",),
}


_MAX_CHOICES = 128  # OpenAI's limit on chat `n`


@dataclass(frozen=True, slots=True)
class RequestFacts:
    model: str
    stream: bool
    max_output_tokens: int | None
    # Chat `n`: the output limit applies to each choice. Anything but a positive integer counts
    # as one here; the router refuses it with the field named.
    choices: int = 1


class BodyError(Exception):
    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    @classmethod
    def of(cls, err: InvalidRequest) -> BodyError:
        """The router's own wording and code for the same mistake."""
        return cls(err.message, err.param or None, err.code or None)


def read_facts(body: bytes, protocol: Protocol) -> RequestFacts:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BodyError(
            f"We could not parse the JSON body of your request ({exc}). The body must be a JSON object."
        ) from None
    if not isinstance(data, dict):
        raise BodyError("The request body must be a JSON object.")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise BodyError(
            "You must provide a model parameter (a string such as 'openai/gpt-4o-mini').", "model"
        )
    stream = data.get("stream")
    if stream is None:
        stream = False
    elif not isinstance(stream, bool):
        raise BodyError.of(v.wrong_type("stream", "a boolean", stream))
    max_output: int | None = None
    for name in _MAX_OUTPUT_FIELDS[protocol]:
        value = data.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise BodyError.of(v.wrong_type(name, "an integer", value))
        if value < 1:
            raise BodyError.of(
                v.invalid_value(
                    name,
                    value,
                    why=f"integer below minimum value. Expected a value >= 1, but got {value} instead.",
                )
            )
        max_output = value
        break
    n = data.get("n") if protocol is Protocol.OPENAI_CHAT else None
    choices = n if isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= _MAX_CHOICES else 1
    return RequestFacts(model, stream, max_output, choices)
