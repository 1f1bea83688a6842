"""Errors rendered in the protocol the client spoke: status code, body, headers, and the
in-stream form for failures after the first byte. Pure: no I/O.

Shapes:
- OpenAI Chat Completions and Responses (HTTP): `{"error":{"message","type","param","code"}}`
  https://platform.openai.com/docs/guides/error-codes
- Anthropic Messages: `{"type":"error","error":{"type","message"}}` plus a `request-id` header
  https://docs.anthropic.com/en/api/errors
- In a started stream: chat ends with `data: {"error":{...}}`; Anthropic sends `event: error`;
  Responses sends `response.failed` whose response carries `error: {code, message}`.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from crossmodel_protocols.canonical import ErrorKind, Protocol
from crossmodel_protocols.sse import encode_data, encode_event


class ErrorType(enum.StrEnum):
    """What went wrong, independent of the protocol. The values are the `error_type` recorded
    in usage events."""

    INVALID_REQUEST = "invalid_request"
    AUTHENTICATION = "authentication"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    PERMISSION = "permission"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    REQUEST_TOO_LARGE = "request_too_large"
    RATE_LIMITED = "rate_limited"
    INTERNAL = "internal"
    UPSTREAM_ERROR = "upstream_error"
    UNAVAILABLE = "unavailable"
    TIMEOUT = "timeout"
    OVERLOADED = "overloaded"


@dataclass(frozen=True, slots=True)
class _Row:
    status: int
    openai_type: str
    openai_code: str | None
    anthropic_type: str


# One row per error type: the status and each protocol's names for it. OpenAI's SDKs pick the
# exception class by status; `type`/`code` are what client code branches on.
_TABLE: dict[ErrorType, _Row] = {
    ErrorType.INVALID_REQUEST: _Row(400, "invalid_request_error", None, "invalid_request_error"),
    ErrorType.AUTHENTICATION: _Row(401, "invalid_request_error", "invalid_api_key", "authentication_error"),
    ErrorType.INSUFFICIENT_BALANCE: _Row(402, "insufficient_quota", "insufficient_quota", "billing_error"),
    ErrorType.PERMISSION: _Row(403, "permission_error", None, "permission_error"),
    ErrorType.NOT_FOUND: _Row(404, "invalid_request_error", None, "not_found_error"),
    ErrorType.CONFLICT: _Row(409, "invalid_request_error", "conflict", "invalid_request_error"),
    ErrorType.REQUEST_TOO_LARGE: _Row(413, "invalid_request_error", "request_too_large", "request_too_large"),
    ErrorType.RATE_LIMITED: _Row(429, "rate_limit_error", "rate_limit_exceeded", "rate_limit_error"),
    ErrorType.INTERNAL: _Row(500, "server_error", None, "api_error"),
    ErrorType.UPSTREAM_ERROR: _Row(502, "server_error", "upstream_error", "api_error"),
    ErrorType.UNAVAILABLE: _Row(503, "server_error", "service_unavailable", "api_error"),
    ErrorType.TIMEOUT: _Row(504, "timeout_error", "timeout", "timeout_error"),
    ErrorType.OVERLOADED: _Row(503, "server_error", "overloaded", "overloaded_error"),
}

# Anthropic's own status for overloaded; OpenAI clients only know 503.
_ANTHROPIC_OVERLOADED_STATUS = 529

# Statuses whose clients may retry; a retry-after makes no sense on the others (a 402 must
# never invite a retry: the SDKs would honour it).
_RETRYABLE = frozenset(
    {ErrorType.RATE_LIMITED, ErrorType.UNAVAILABLE, ErrorType.OVERLOADED, ErrorType.TIMEOUT}
)

_FROM_ROUTER: dict[ErrorKind, ErrorType] = {
    ErrorKind.INVALID_REQUEST: ErrorType.INVALID_REQUEST,
    ErrorKind.MODEL_NOT_FOUND: ErrorType.NOT_FOUND,
    ErrorKind.UPSTREAM_RATE_LIMITED: ErrorType.RATE_LIMITED,
    ErrorKind.UPSTREAM_ERROR: ErrorType.UPSTREAM_ERROR,
    ErrorKind.UPSTREAM_TIMEOUT: ErrorType.TIMEOUT,
    ErrorKind.UPSTREAM_OVERLOADED: ErrorType.OVERLOADED,
    ErrorKind.UPSTREAM_AUTH: ErrorType.UPSTREAM_ERROR,
    ErrorKind.REQUEST_TOO_LARGE: ErrorType.REQUEST_TOO_LARGE,
    ErrorKind.INTERNAL: ErrorType.INTERNAL,
    ErrorKind.UPSTREAM_INVALID_REQUEST: ErrorType.INVALID_REQUEST,
}


def error_type_for(kind: ErrorKind) -> ErrorType:
    """The API error type for a router error kind."""
    return _FROM_ROUTER.get(kind, ErrorType.INTERNAL)


@dataclass(frozen=True, slots=True)
class ApiError:
    """A failure to report to the client. `code` overrides the protocol's default code
    (OpenAI shapes only; e.g. `model_not_found`); `retry_after_ms` is sent only for retryable
    types."""

    type: ErrorType
    message: str
    param: str | None = None
    code: str | None = None
    retry_after_ms: int | None = None

    @property
    def status(self) -> int:
        return _TABLE[self.type].status


@dataclass(frozen=True, slots=True)
class RenderedError:
    status: int
    body: bytes
    headers: list[tuple[str, str]]


def status_for(error: ApiError, protocol: Protocol) -> int:
    if error.type is ErrorType.OVERLOADED and protocol is Protocol.ANTHROPIC_MESSAGES:
        return _ANTHROPIC_OVERLOADED_STATUS
    return _TABLE[error.type].status


def protocol_type(error: ApiError, protocol: Protocol) -> str:
    """The `type` string the client's protocol uses for this error."""
    row = _TABLE[error.type]
    return row.anthropic_type if protocol is Protocol.ANTHROPIC_MESSAGES else row.openai_type


def openai_error_object(error: ApiError) -> dict[str, Any]:
    row = _TABLE[error.type]
    return {
        "message": error.message,
        "type": row.openai_type,
        "param": error.param,
        "code": error.code if error.code is not None else row.openai_code,
    }


def anthropic_error_object(error: ApiError) -> dict[str, Any]:
    return {"type": _TABLE[error.type].anthropic_type, "message": error.message}


def error_body(error: ApiError, protocol: Protocol) -> bytes:
    if protocol is Protocol.ANTHROPIC_MESSAGES:
        return orjson.dumps({"type": "error", "error": anthropic_error_object(error)})
    return orjson.dumps({"error": openai_error_object(error)})


def retry_after_headers(error: ApiError) -> list[tuple[str, str]]:
    """`retry-after` (whole seconds, as RFC 9110 allows) and `retry-after-ms` (read by the
    OpenAI and Anthropic SDKs for sub-second waits), for retryable errors only."""
    if error.type not in _RETRYABLE or error.retry_after_ms is None:
        return []
    ms = max(error.retry_after_ms, 0)
    return [("retry-after", str(max(1, math.ceil(ms / 1000)))), ("retry-after-ms", str(ms))]


def render_http(error: ApiError, protocol: Protocol, request_id: str = "") -> RenderedError:
    """Status, JSON body and headers for an error answered before any byte of a response."""
    headers = [("content-type", "application/json"), *retry_after_headers(error)]
    if protocol is Protocol.ANTHROPIC_MESSAGES and request_id:
        headers.append(("request-id", request_id))
    return RenderedError(status_for(error, protocol), error_body(error, protocol), headers)


def render_stream_error(
    error: ApiError,
    protocol: Protocol,
    *,
    response: Mapping[str, Any] | None = None,
    sequence_number: int = 0,
) -> bytes:
    """The last bytes of a stream that failed after it started.

    For Responses, `response` is the response object as the stream last described it (at least
    its `id`); the `response.failed` event repeats it with `status: failed` and the error.
    """
    if protocol is Protocol.ANTHROPIC_MESSAGES:
        return encode_event("error", orjson.dumps({"type": "error", "error": anthropic_error_object(error)}))
    if protocol is Protocol.OPENAI_RESPONSES:
        failed = {
            **(response or {}),
            "object": "response",
            "status": "failed",
            "error": {"code": _responses_code(error), "message": error.message},
        }
        payload = {"type": "response.failed", "sequence_number": sequence_number, "response": failed}
        return encode_event("response.failed", orjson.dumps(payload))
    return encode_data(orjson.dumps({"error": openai_error_object(error)}))


# The codes a Responses object's `error.code` may take (OpenAI's `ResponseErrorCode`, a closed
# enum that typed clients decode strictly). The image and vector-store codes concern hosted tools
# and inputs a gateway never fails on mid-stream.
_RESPONSES_CODES = frozenset({"server_error", "rate_limit_exceeded", "invalid_prompt"})


def _responses_code(error: ApiError) -> str:
    # Responses' error.code is one of a closed set: every other failure of a started stream
    # (upstream errors, timeouts, overload, ...) is a server_error; the message says which.
    row = _TABLE[error.type]
    code = error.code or row.openai_code
    return code if code in _RESPONSES_CODES else "server_error"
