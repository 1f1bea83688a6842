"""The canonical model every codec translates to and from.

One request shape, one response shape and one stream-event vocabulary that can carry everything
OpenAI Chat Completions, OpenAI Responses, Anthropic Messages and Gemini express: text, system
prompts, multi-turn, tools (parallel calls, streamed arguments), images (base64 and URL),
reasoning with signatures / encrypted content, stop reasons and usage with cached and reasoning
tokens, and the end-user id.

Conventions (codecs convert at the boundary, never the router):

- Content is a list of parts on a message. A message's role is `user`, `assistant` or `tool`.
  System and developer instructions live in `Request.system` (in order), not in `messages`.
- Tool results are `ToolResultPart`s inside `tool`-role messages (OpenAI shape). Anthropic
  ingress splits a user message that mixes `tool_result` blocks and text into a `tool` message
  followed by a `user` message; the Anthropic provider codec merges them back.
- Tool-call arguments are the JSON text exactly as produced (`arguments: str`), never re-parsed
  on the way through, so streamed fragments concatenate to the same bytes.
- `Usage.input_tokens` counts every prompt token, cached reads and cache writes included;
  `Usage.output_tokens` counts every completion token, reasoning included (OpenAI's convention).
  Anthropic's `input_tokens` excludes cache reads/writes: its codecs add/subtract them.
- A stream is a sequence of `StreamEvent`s: `StreamStart`, then content blocks (each
  `BlockStart`, deltas for its index, `BlockStop`), then `StreamFinish`, with `UsageUpdate`
  anywhere (cumulative: the latest one wins). Block indices count from 0 in order of first
  appearance; producers open blocks one at a time where the upstream allows it. Renderers may
  receive a delta for a block without a preceding `BlockStart` only if the producer cannot know
  it (never, for the codecs in this package).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

# --------------------------------------------------------------------------------------------
# Protocol identifiers and errors


class Protocol(enum.StrEnum):
    """Wire protocols (ingress and provider). The values are the names in usage events."""

    OPENAI_CHAT = "openai.chat"
    OPENAI_RESPONSES = "openai.responses"
    ANTHROPIC_MESSAGES = "anthropic.messages"
    GEMINI = "gemini.generate_content"


class ErrorKind(enum.StrEnum):
    """Mirrors `crossmodel.router.v1.ErrorKind` (names without the prefix)."""

    INVALID_REQUEST = "INVALID_REQUEST"
    MODEL_NOT_FOUND = "MODEL_NOT_FOUND"
    UPSTREAM_RATE_LIMITED = "UPSTREAM_RATE_LIMITED"
    UPSTREAM_ERROR = "UPSTREAM_ERROR"
    UPSTREAM_TIMEOUT = "UPSTREAM_TIMEOUT"
    UPSTREAM_OVERLOADED = "UPSTREAM_OVERLOADED"
    UPSTREAM_AUTH = "UPSTREAM_AUTH"
    REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
    INTERNAL = "INTERNAL"
    UPSTREAM_INVALID_REQUEST = "UPSTREAM_INVALID_REQUEST"


class ProtocolError(Exception):
    """A failure a codec detected, with what the client needs to fix or understand it."""

    kind: ErrorKind = ErrorKind.INTERNAL

    def __init__(self, message: str, *, param: str = "", code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class InvalidRequest(ProtocolError):
    """The client body is malformed: `param` names the offending field (dotted path with
    indices, e.g. `messages[2].content[0].image_url.url`)."""

    kind = ErrorKind.INVALID_REQUEST


class RequestTooLarge(ProtocolError):
    kind = ErrorKind.REQUEST_TOO_LARGE


class UpstreamProtocolError(ProtocolError):
    """The upstream answered something its own protocol does not allow."""

    kind = ErrorKind.UPSTREAM_ERROR


# --------------------------------------------------------------------------------------------
# Content parts


@dataclass(slots=True)
class CacheControl:
    """Anthropic prompt-caching breakpoint (`{"type": "ephemeral", "ttl": "5m"}`)."""

    type: str = "ephemeral"
    ttl: str | None = None


@dataclass(slots=True)
class TokenLogprob:
    """One generated token's log probability (OpenAI `logprobs`, Gemini `logprobsResult`), with
    the most likely tokens at its position when they were asked (their own `top` is empty)."""

    token: str
    logprob: float
    bytes: list[int] | None = None
    top: list[TokenLogprob] = field(default_factory=list)


@dataclass(slots=True)
class TextPart:
    text: str
    cache_control: CacheControl | None = None
    # Anthropic citations / OpenAI annotations, kept verbatim for same-protocol round trips.
    annotations: list[dict[str, Any]] | None = None
    # The tokens of `text` with their log probabilities, when the request asked for them.
    logprobs: list[TokenLogprob] | None = None
    item_id: str | None = None  # Responses message item id (`msg_…`) from the upstream
    type: Literal["text"] = "text"


@dataclass(slots=True)
class ImagePart:
    """Exactly one of `url` (http(s) URL) or `data` (base64, no `data:` prefix) is set."""

    url: str | None = None
    data: str | None = None
    media_type: str | None = None  # "image/png" ...; required with `data`
    detail: str | None = None  # OpenAI "low" | "high" | "auto"
    cache_control: CacheControl | None = None
    # The client's field that holds the image (`messages[0].content[1]`), named when the model
    # cannot take images.
    param: str = field(default="", compare=False, repr=False)
    type: Literal["image"] = "image"


@dataclass(slots=True)
class FilePart:
    """A document (PDF, text) as base64 data, URL or a provider file id."""

    data: str | None = None
    url: str | None = None
    file_id: str | None = None
    media_type: str | None = None
    filename: str | None = None  # Anthropic `title`
    cache_control: CacheControl | None = None
    # Anthropic document `context` and `citations`, kept for Claude.
    context: str | None = None
    citations: dict[str, Any] | None = None
    # The client's field that holds `url` or `file_id` (`input[0].content[1].file_url`), named
    # when a vendor cannot take them.
    param: str = field(default="", compare=False, repr=False)
    type: Literal["file"] = "file"


@dataclass(slots=True)
class ReasoningPart:
    """Model reasoning. `text` is the visible thinking (Anthropic `thinking`, DeepSeek
    `reasoning_content`, Responses reasoning summary text). `signature` (Anthropic) and
    `encrypted_content` (Responses) must round-trip unchanged to the same vendor; `redacted_data`
    is Anthropic's `redacted_thinking.data`. `provider` names the vendor protocol the opaque
    fields belong to, so a codec drops opaque fields it cannot send to another vendor."""

    text: str = ""
    signature: str | None = None
    redacted_data: str | None = None
    encrypted_content: str | None = None
    item_id: str | None = None  # Responses reasoning item id
    summary: list[str] | None = None  # Responses summary parts, when not merged into text
    provider: Protocol | None = None
    type: Literal["reasoning"] = "reasoning"


# A vendor's opaque reasoning state carried in another protocol's field (a Responses client's
# `encrypted_content`, an Anthropic client's `signature` for Gemini's) is tagged with its vendor,
# so that it goes back to that vendor only. The tags hold a ':', which none of the vendors'
# base64 states (Anthropic signatures, Gemini thought signatures, OpenAI encrypted content) has.
_CARRIED_TAGS: dict[str, tuple[Protocol, str]] = {
    "anthropic:signature:": (Protocol.ANTHROPIC_MESSAGES, "signature"),
    "anthropic:redacted:": (Protocol.ANTHROPIC_MESSAGES, "redacted_data"),
    "gemini:signature:": (Protocol.GEMINI, "signature"),
}


def carried_state(p: ReasoningPart) -> str | None:
    """The opaque state of a reasoning part from Anthropic or Gemini as one tagged string, or
    None when it has none."""
    if p.provider is Protocol.ANTHROPIC_MESSAGES:
        if p.redacted_data is not None:
            return "anthropic:redacted:" + p.redacted_data
        if p.signature:
            return "anthropic:signature:" + p.signature
    elif p.provider is Protocol.GEMINI and p.signature:
        return "gemini:signature:" + p.signature
    return None


def carried_reasoning(value: str, text: str = "") -> ReasoningPart | None:
    """A string `carried_state` made -> the reasoning part it came from (with `text`, which the
    carrying protocol holds in its own field); None for a string without a tag."""
    for tag, (provider, slot) in _CARRIED_TAGS.items():
        if value.startswith(tag):
            state = value[len(tag) :]
            if slot == "redacted_data":
                return ReasoningPart(redacted_data=state, provider=provider)
            return ReasoningPart(text, signature=state, provider=provider)
    return None


@dataclass(slots=True)
class ToolCallPart:
    """An assistant's call of a function tool. `arguments` is JSON text."""

    id: str
    name: str
    arguments: str = ""
    item_id: str | None = None  # Responses function_call item id (`fc_…`) when it differs from id
    cache_control: CacheControl | None = None
    type: Literal["tool_call"] = "tool_call"


@dataclass(slots=True)
class ToolResultPart:
    """The result of a tool call, in a `tool`-role message."""

    tool_call_id: str
    content: list[TextPart | ImagePart | FilePart] = field(default_factory=list)
    is_error: bool = False
    name: str | None = None  # Gemini functionResponse needs the function name
    cache_control: CacheControl | None = None
    type: Literal["tool_result"] = "tool_result"


@dataclass(slots=True)
class RefusalPart:
    """OpenAI `refusal`: the model declined; rendered as text where a protocol has no refusal."""

    text: str
    item_id: str | None = None  # Responses message item id (`msg_…`) from the upstream
    type: Literal["refusal"] = "refusal"


@dataclass(slots=True)
class VendorPart:
    """A content block that only one vendor's protocol has, verbatim in `raw`: Anthropic's server
    tool calls and their results (`server_tool_use`, `web_search_tool_result`,
    `code_execution_tool_result`, ...), `search_result`, `container_upload`, MCP and compaction
    blocks; OpenAI's Responses items other than messages, function calls and reasoning
    (`custom_tool_call`, `web_search_call`, `image_generation_call`, ..., and the client's
    `custom_tool_call_output`, ...). It goes only to `provider`'s protocol (that vendor gets it
    back in the history, its protocol's clients in the answer); every other codec leaves it out.
    In a stream it opens its block whole (`BlockStart`), and its deltas, if any, are
    `VendorDelta`s (for OpenAI, the item's own stream events, its `output_item.done` last)."""

    raw: dict[str, Any]
    provider: Protocol
    type: Literal["vendor"] = "vendor"


Part: TypeAlias = (
    TextPart | ImagePart | FilePart | ReasoningPart | ToolCallPart | ToolResultPart | RefusalPart | VendorPart
)

Role: TypeAlias = Literal["user", "assistant", "tool"]


@dataclass(slots=True)
class Message:
    role: Role
    content: list[Part]
    name: str | None = None  # OpenAI participant name


@dataclass(slots=True)
class SystemPart:
    """One system/developer instruction block, in order."""

    text: str
    role: Literal["system", "developer"] = "system"
    cache_control: CacheControl | None = None


# --------------------------------------------------------------------------------------------
# Tools and options


@dataclass(slots=True)
class Tool:
    """A function tool. `parameters` is a JSON Schema object. `kind` other than "function"
    carries a vendor built-in tool verbatim in `raw` (e.g. Anthropic `web_search_20250305`,
    Responses `web_search`), forwarded only to that vendor's protocol."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None
    cache_control: CacheControl | None = None
    kind: str = "function"
    raw: dict[str, Any] | None = None
    raw_protocol: Protocol | None = None


@dataclass(slots=True)
class ToolChoice:
    """`auto`: model decides; `none`: no tool; `required`: some tool (Anthropic `any`);
    `tool`: exactly `name`. `allowed` (Responses `allowed_tools`) limits `auto`/`required` to
    the tools of those names (a function's name, a hosted tool's type); the others stay in
    `tools` but the model may not call them."""

    mode: Literal["auto", "none", "required", "tool"] = "auto"
    name: str | None = None
    # Anthropic `disable_parallel_tool_use`; OpenAI `parallel_tool_calls=false` maps here too.
    disable_parallel: bool | None = None
    allowed: list[str] | None = None


@dataclass(slots=True)
class ResponseFormat:
    """`text`, `json_object` (JSON mode) or `json_schema` (structured output)."""

    type: Literal["text", "json_object", "json_schema"] = "text"
    schema: dict[str, Any] | None = None
    name: str | None = None
    strict: bool | None = None
    description: str | None = None


@dataclass(slots=True)
class ReasoningConfig:
    """Requested reasoning. `effort` (OpenAI/Gemini style: minimal|low|medium|high) and
    `budget_tokens` (Anthropic/Gemini thinking budget) are both kept; each provider codec maps
    whichever it has to its own field. `enabled=False` asks for no thinking where a vendor allows
    turning it off."""

    enabled: bool = True
    effort: str | None = None
    budget_tokens: int | None = None
    summary: str | None = None  # Responses `reasoning.summary`: auto|concise|detailed


# --------------------------------------------------------------------------------------------
# Request


@dataclass(slots=True)
class Request:
    model: str
    messages: list[Message]
    system: list[SystemPart] = field(default_factory=list)
    stream: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    response_format: ResponseFormat | None = None
    reasoning: ReasoningConfig | None = None
    # Log probabilities of the output tokens (chat `logprobs`, Responses `include:
    # ["message.output_text.logprobs"]`), and how many most likely tokens to list at each
    # position (`top_logprobs`, 0-20; None when not given).
    logprobs: bool = False
    top_logprobs: int | None = None
    # Responses `include: ["reasoning.encrypted_content"]`: the client keeps the reasoning state
    # (stateless tool loops). It asks for no reasoning by itself.
    include_reasoning_state: bool = False
    # Chat `n`: how many choices to generate. Only an OpenAI-family upstream on the pass-through
    # path answers more than one (the canonical response has one); elsewhere n > 1 is refused.
    n: int = 1
    # OpenAI `safety_identifier` (else legacy `user`), Anthropic `metadata.user_id`,
    # forwarded to each vendor in its own field and recorded in the usage event.
    end_user: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    # The client asked the gateway for usage inside the stream (OpenAI
    # `stream_options.include_usage`); upstream usage is requested regardless.
    include_usage: bool = False
    # Responses-only state that other protocols ignore.
    previous_response_id: str | None = None
    store: bool | None = None
    instructions_from_previous: bool = False
    # Anthropic beta flags / version, forwarded to Anthropic only.
    anthropic_beta: list[str] = field(default_factory=list)
    # Fields of the ingress protocol the canonical model has no slot for, forwarded verbatim
    # only to a provider speaking the same protocol family (e.g. `logprobs` to OpenAI).
    extra: dict[str, Any] = field(default_factory=dict)
    ingress: Protocol = Protocol.OPENAI_CHAT
    # The parsed client body: lets same-protocol fast paths forward it without re-rendering.
    raw: dict[str, Any] | None = None
    # The catalog capabilities of the model asked (`reasoning`, `vision`, ...), set by the router
    # before a provider codec builds the upstream body; None when unknown (all are assumed).
    capabilities: frozenset[str] | None = None
    # The model's output limit in the catalog, set by the router with the capabilities: what a
    # vendor that requires a limit (Anthropic's `max_tokens`) gets when the client set none, as
    # OpenAI's models then allow their whole limit (and admission reserved for it).
    output_limit: int | None = None

    def capable(self, capability: str) -> bool:
        return self.capabilities is None or capability in self.capabilities


# --------------------------------------------------------------------------------------------
# Response


class FinishReason(enum.StrEnum):
    """Why generation stopped. Protocol names map as:
    OpenAI chat stop/length/tool_calls/content_filter; Anthropic end_turn/max_tokens/
    stop_sequence/tool_use/pause_turn/refusal; Gemini STOP/MAX_TOKENS/SAFETY/...;
    Responses status completed / incomplete(max_output_tokens|content_filter)."""

    END_TURN = "end_turn"
    MAX_TOKENS = "max_tokens"
    STOP_SEQUENCE = "stop_sequence"
    TOOL_USE = "tool_use"
    CONTENT_FILTER = "content_filter"
    PAUSE_TURN = "pause_turn"
    REFUSAL = "refusal"
    ERROR = "error"


@dataclass(slots=True)
class VendorFields:
    """Message-level fields that only one vendor's protocol has, verbatim, for clients of
    `provider`'s protocol: Anthropic's `container` (code execution) or `stop_details` in
    `fields`, `server_tool_use` (web search / fetch request counts) in `usage`."""

    provider: Protocol
    fields: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(slots=True)
class Response:
    id: str
    model: str
    content: list[Part]
    finish_reason: FinishReason | None
    usage: Usage | None
    created: int = 0  # unix seconds
    stop_sequence: str | None = None
    system_fingerprint: str | None = None
    upstream_request_id: str | None = None
    service_tier: str | None = None
    store: bool | None = None  # Responses upstream: whether the vendor stored the response
    vendor: VendorFields | None = None


# --------------------------------------------------------------------------------------------
# Stream events


@dataclass(slots=True)
class StreamStart:
    id: str
    model: str
    created: int = 0
    usage: Usage | None = None  # Anthropic message_start carries input usage up front
    system_fingerprint: str | None = None
    upstream_request_id: str | None = None
    store: bool | None = None  # Responses upstream: whether the vendor stores the response
    kind: Literal["start"] = "start"


@dataclass(slots=True)
class BlockStart:
    """A content block opens. `part` is an empty TextPart / ReasoningPart / RefusalPart, a
    ToolCallPart with `id` and `name` set and `arguments` empty (or its first fragment), or a
    VendorPart as its vendor opened it."""

    index: int
    part: Part
    kind: Literal["block_start"] = "block_start"


@dataclass(slots=True)
class TextDelta:
    index: int
    text: str
    logprobs: list[TokenLogprob] | None = None  # the tokens of this delta, when asked
    kind: Literal["text_delta"] = "text_delta"


@dataclass(slots=True)
class RefusalDelta:
    index: int
    text: str
    kind: Literal["refusal_delta"] = "refusal_delta"


@dataclass(slots=True)
class ReasoningDelta:
    """Thinking text, or (Anthropic `signature_delta`) the block's signature, or (Responses)
    its encrypted content."""

    index: int
    text: str = ""
    signature: str | None = None
    encrypted_content: str | None = None
    kind: Literal["reasoning_delta"] = "reasoning_delta"


@dataclass(slots=True)
class ToolArgumentsDelta:
    index: int
    arguments: str
    kind: Literal["tool_arguments_delta"] = "tool_arguments_delta"


@dataclass(slots=True)
class VendorDelta:
    """A delta that only one vendor's protocol has, verbatim in `raw`: Anthropic's
    `input_json_delta` of a `server_tool_use` block, `citations_delta` of a text block; an event
    of an OpenAI Responses item (`response.custom_tool_call_input.delta`, ...). Clients of another
    protocol get nothing for it."""

    index: int
    raw: dict[str, Any]
    provider: Protocol
    kind: Literal["vendor_delta"] = "vendor_delta"


@dataclass(slots=True)
class BlockStop:
    index: int
    kind: Literal["block_stop"] = "block_stop"


@dataclass(slots=True)
class StreamFinish:
    finish_reason: FinishReason
    stop_sequence: str | None = None
    vendor: VendorFields | None = None  # as `Response.vendor`
    kind: Literal["finish"] = "finish"


@dataclass(slots=True)
class UsageUpdate:
    """Cumulative usage so far (the latest one wins)."""

    usage: Usage
    kind: Literal["usage"] = "usage"


@dataclass(slots=True)
class StreamError:
    """The upstream reported an error inside a stream that had started."""

    error_kind: ErrorKind
    message: str
    upstream_type: str | None = None
    kind: Literal["error"] = "error"


StreamEvent: TypeAlias = (
    StreamStart
    | BlockStart
    | TextDelta
    | RefusalDelta
    | ReasoningDelta
    | ToolArgumentsDelta
    | VendorDelta
    | BlockStop
    | StreamFinish
    | UsageUpdate
    | StreamError
)
