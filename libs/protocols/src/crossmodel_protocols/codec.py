"""The interfaces every codec implements, so the router drives any ingress protocol against any
provider protocol the same way:

    request = ingress.parse_request(body, headers)            # client bytes -> canonical
    up = provider.build_request(request, upstream_model, key)  # canonical -> upstream HTTP request
    # non-stream:
    response = provider.parse_response(upstream_body)          # upstream bytes -> canonical
    client_bytes = ingress.render_response(response, request)  # canonical -> client bytes
    # stream:
    parser, renderer = provider.stream_parser(), ingress.stream_renderer(request)
    for raw in upstream: for ev in parser.feed(raw): out(renderer.render(ev))
    for ev in parser.close(): out(renderer.render(ev)); out(renderer.close())

Codecs are pure: no I/O, no clocks they need for correctness (ids and `created` come from the
upstream or the caller), no service imports.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast
from typing import Protocol as TypingProtocol

import orjson

from crossmodel_protocols.canonical import (
    ErrorKind,
    Protocol,
    Request,
    Response,
    StreamEvent,
    UpstreamProtocolError,
)


@dataclass(slots=True)
class UpstreamRequest:
    """An HTTP request toward a provider. `path` (with any query string) is appended to the
    deployment's base URL, which ends before it (e.g. `https://api.openai.com/v1`)."""

    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    stream: bool = False
    method: str = "POST"


@dataclass(slots=True)
class UpstreamError:
    """An upstream HTTP error (or in-body error) mapped to our error kinds."""

    kind: ErrorKind
    message: str
    status: int = 0
    upstream_type: str | None = None
    code: str | None = None
    param: str | None = None
    retry_after_ms: int = 0


class StreamRenderer(TypingProtocol):
    """Renders canonical stream events as the client's protocol bytes (SSE framed).

    In-stream errors are not the renderer's: the router stops the stream and sends a RouteError
    frame, and the edge closes the stream with `crossmodel_protocols.errors.render_stream_error`.
    Renderers return b"" for `StreamError`."""

    content_type: str

    def render(self, event: StreamEvent) -> bytes:
        """Bytes to send now for this event; b"" when it emits nothing (yet)."""
        ...

    def close(self) -> bytes:
        """Bytes that end a stream that finished normally (e.g. the usage chunk and
        `data: [DONE]`, or `message_delta` + `message_stop`)."""
        ...


class IngressCodec(TypingProtocol):
    protocol: Protocol

    def parse_request(self, body: bytes, headers: Mapping[str, str]) -> Request:
        """Parse and validate; raises `InvalidRequest` naming the field."""
        ...

    def render_response(self, response: Response, request: Request) -> bytes:
        """The complete non-stream JSON body."""
        ...

    def stream_renderer(self, request: Request) -> StreamRenderer: ...


class StreamParser(TypingProtocol):
    """Turns an upstream stream (raw bytes, as they arrive) into canonical events."""

    def feed(self, data: bytes) -> list[StreamEvent]: ...

    def close(self) -> list[StreamEvent]:
        """At the end of the upstream stream: flush, and close blocks the upstream left open."""
        ...


class ProviderCodec(TypingProtocol):
    protocol: Protocol

    def build_request(self, request: Request, upstream_model: str, api_key: str) -> UpstreamRequest:
        """Always asks the upstream for usage (in streams too)."""
        ...

    def parse_response(self, body: bytes) -> Response: ...

    def stream_parser(self) -> StreamParser: ...

    def parse_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> UpstreamError: ...


def only_allowed_tools(request: Request) -> Request:
    """For a vendor with no list of allowed tools of its own: the request with only the tools
    `tool_choice.allowed` lets the model call, so it cannot call one the client excluded."""
    tc = request.tool_choice
    if tc is None or tc.allowed is None:
        return request
    allowed = set(tc.allowed)
    return dataclasses.replace(
        request,
        tools=[t for t in request.tools if t.name in allowed],
        tool_choice=dataclasses.replace(tc, allowed=None),
    )


def upstream_json_object(body: bytes) -> dict[str, Any]:
    """A non-streamed upstream answer as a JSON object, or UpstreamProtocolError."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise UpstreamProtocolError("upstream response is not JSON") from None
    if not isinstance(data, dict):
        raise UpstreamProtocolError("upstream response is not a JSON object")
    return data


def token_count(value: Any) -> int:
    """A token count as an upstream reports it: 0 when absent, a non-negative integer (JSON may
    carry it as an integral float); ValueError for anything else, so that a usage object with
    an unreadable count is dropped whole and the router estimates instead of billing nonsense."""
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    raise ValueError(f"not a token count: {value!r}")


def epoch_seconds(value: Any) -> int:
    """A timestamp field of an upstream answer; 0 when absent or not a number."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value == value:
        return int(value) if abs(value) < 2**53 else 0
    return 0


def json_object(value: Any, what: str) -> dict[str, Any]:
    """A nested object of an upstream answer: {} when absent, UpstreamProtocolError when it is
    something else."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UpstreamProtocolError(f"upstream {what} is not an object")
    return value


def json_array(value: Any, what: str) -> list[Any]:
    """A nested array of an upstream answer: [] when absent, UpstreamProtocolError otherwise."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise UpstreamProtocolError(f"upstream {what} is not an array")
    return value


def json_text(value: Any, what: str) -> str:
    """A string field of an upstream answer: "" when absent, UpstreamProtocolError otherwise."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise UpstreamProtocolError(f"upstream {what} is not a string")
    return value


_F = TypeVar("_F", bound=Callable[..., Any])


def reads_upstream(what: str) -> Callable[[_F], _F]:
    """For the methods that read an upstream's answer: a field of another shape than the vendor
    documents (a string where an object belongs, an index that is a list) is the upstream's
    malformed answer, reported as UpstreamProtocolError like any other, never a crash. The
    parsers check what they rely on where it matters (usage, tool calls); this covers the rest."""

    def wrap(fn: _F) -> _F:
        @functools.wraps(fn)
        def read(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
                # The client reads this message; the chained exception keeps the detail.
                raise UpstreamProtocolError(f"upstream sent {what} of an unexpected shape") from exc

        return cast(_F, read)

    return wrap
