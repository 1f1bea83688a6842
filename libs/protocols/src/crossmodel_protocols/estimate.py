"""Token estimates for when no tokenizer answer exists: CountTokens before a call, and usage
when an upstream never reported it (a stream cut short, a cancelled request).

The rule is the common rule of thumb for BPE tokenizers on English text, one token per four
characters (rounded up), plus a small per-message overhead like OpenAI's chat framing. Usage
built from it is flagged `usage_estimated`.
"""

from __future__ import annotations

from crossmodel_protocols.canonical import (
    FilePart,
    ImagePart,
    ReasoningPart,
    RefusalPart,
    Request,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4
# OpenAI prices a high-detail 512px tile at 170 tokens plus 85 base; one tile is a fair guess.
IMAGE_TOKENS = 255


def tokens_for_chars(chars: int) -> int:
    return -(-chars // CHARS_PER_TOKEN) if chars > 0 else 0


def estimate_input_tokens(request: Request) -> int:
    chars = 0
    tokens = 3  # every reply is primed with <|start|>assistant<|message|>
    for s in request.system:
        chars += len(s.text)
        tokens += MESSAGE_OVERHEAD_TOKENS
    for m in request.messages:
        tokens += MESSAGE_OVERHEAD_TOKENS
        for p in m.content:
            if isinstance(p, TextPart | RefusalPart | ReasoningPart):
                chars += len(p.text)
            elif isinstance(p, ToolCallPart):
                chars += len(p.name) + len(p.arguments)
            elif isinstance(p, ToolResultPart):
                for c in p.content:
                    if isinstance(c, TextPart):
                        chars += len(c.text)
                    else:
                        tokens += IMAGE_TOKENS
            elif isinstance(p, ImagePart | FilePart):
                tokens += IMAGE_TOKENS
    for t in request.tools:
        chars += len(t.name) + len(t.description or "") + len(str(t.parameters or ""))
    return tokens + tokens_for_chars(chars)
