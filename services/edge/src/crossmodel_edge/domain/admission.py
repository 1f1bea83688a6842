"""The admission estimate: what auth counts against TPM and reserves against the balance
before the request runs. The usage event settles it to the real numbers afterwards."""

from __future__ import annotations

from dataclasses import dataclass

from crossmodel_common.money import worst_case_micros
from crossmodel_edge.domain.catalog import ModelInfo

# The most tokens one image costs at the vendors' largest input sizes (Anthropic ~1,600 for a
# 1.15 MP image; OpenAI high detail ~1,100); an image URL is a few bytes of body.
IMAGE_TOKENS_MAX = 1_600
# Output cap when neither the request nor the catalog gives one.
DEFAULT_MAX_OUTPUT_TOKENS = 4_096


@dataclass(frozen=True, slots=True)
class Admission:
    estimated_input_tokens: int
    max_output_tokens: int
    reserve_micros: int


def estimate_input_tokens(body: bytes, context_window: int) -> int:
    """An upper bound of the prompt's tokens without parsing it: a byte-level BPE token covers
    at least one byte, and the JSON around each message is longer than the chat-template tokens
    it becomes, so the body's length bounds the text. Images by URL are the exception, so each
    `"url"`/`"input_image"` adds an image's worth. Nothing can exceed the context window."""
    tokens = len(body) + IMAGE_TOKENS_MAX * (body.count(b'"url"') + body.count(b'"input_image"'))
    return min(tokens, context_window) if context_window > 0 else tokens


def max_output_tokens(requested: int | None, model: ModelInfo) -> int:
    limit = model.max_output_tokens
    if requested is None:
        return limit or DEFAULT_MAX_OUTPUT_TOKENS
    return min(requested, limit) if limit > 0 else requested


def admission_for(
    body: bytes, requested_max_output: int | None, model: ModelInfo, choices: int = 1
) -> Admission:
    """`choices` (chat `n`) answers may each reach the output limit."""
    input_tokens = estimate_input_tokens(body, model.context_window)
    out = max_output_tokens(requested_max_output, model) * choices
    reserve = worst_case_micros(model.prices, input_tokens=input_tokens, max_output_tokens=out)
    return Admission(input_tokens, out, reserve)
