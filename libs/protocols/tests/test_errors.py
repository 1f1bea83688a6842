"""Error shapes per protocol: status, body, headers and the in-stream forms."""

from __future__ import annotations

import orjson
import pytest

from crossmodel_protocols.canonical import ErrorKind, Protocol
from crossmodel_protocols.errors import (
    ApiError,
    ErrorType,
    error_type_for,
    render_http,
    render_stream_error,
)
from crossmodel_protocols.sse import SSEDecoder

OPENAI = Protocol.OPENAI_CHAT
RESPONSES = Protocol.OPENAI_RESPONSES
ANTHROPIC = Protocol.ANTHROPIC_MESSAGES


# (error, status OpenAI, OpenAI type, OpenAI code, status Anthropic, Anthropic type)
CASES = [
    (
        ApiError(ErrorType.AUTHENTICATION, "bad key"),
        401,
        "invalid_request_error",
        "invalid_api_key",
        401,
        "authentication_error",
    ),
    (
        ApiError(ErrorType.PERMISSION, "no", code="model_not_allowed"),
        403,
        "permission_error",
        "model_not_allowed",
        403,
        "permission_error",
    ),
    (
        ApiError(ErrorType.NOT_FOUND, "no model", param="model", code="model_not_found"),
        404,
        "invalid_request_error",
        "model_not_found",
        404,
        "not_found_error",
    ),
    (
        ApiError(ErrorType.INVALID_REQUEST, "bad json"),
        400,
        "invalid_request_error",
        None,
        400,
        "invalid_request_error",
    ),
    (
        ApiError(ErrorType.REQUEST_TOO_LARGE, "big"),
        413,
        "invalid_request_error",
        "request_too_large",
        413,
        "request_too_large",
    ),
    (
        ApiError(ErrorType.RATE_LIMITED, "slow down", retry_after_ms=1500),
        429,
        "rate_limit_error",
        "rate_limit_exceeded",
        429,
        "rate_limit_error",
    ),
    (
        ApiError(ErrorType.INSUFFICIENT_BALANCE, "top up"),
        402,
        "insufficient_quota",
        "insufficient_quota",
        402,
        "billing_error",
    ),
    (
        ApiError(ErrorType.UPSTREAM_ERROR, "upstream 500"),
        502,
        "server_error",
        "upstream_error",
        502,
        "api_error",
    ),
    (ApiError(ErrorType.TIMEOUT, "slow upstream"), 504, "timeout_error", "timeout", 504, "timeout_error"),
    (ApiError(ErrorType.OVERLOADED, "busy"), 503, "server_error", "overloaded", 529, "overloaded_error"),
    (ApiError(ErrorType.INTERNAL, "oops"), 500, "server_error", None, 500, "api_error"),
    (ApiError(ErrorType.UNAVAILABLE, "down"), 503, "server_error", "service_unavailable", 503, "api_error"),
    (
        ApiError(ErrorType.CONFLICT, "other body"),
        409,
        "invalid_request_error",
        "conflict",
        409,
        "invalid_request_error",
    ),
]


@pytest.mark.parametrize(("error", "status", "otype", "ocode", "astatus", "atype"), CASES)
@pytest.mark.parametrize("protocol", [OPENAI, RESPONSES])
def test_openai_shape(
    error: ApiError, status: int, otype: str, ocode: str | None, astatus: int, atype: str, protocol: Protocol
) -> None:
    r = render_http(error, protocol, "req_1")
    assert r.status == status
    assert orjson.loads(r.body) == {
        "error": {"message": error.message, "type": otype, "param": error.param, "code": ocode}
    }
    names = [k for k, _ in r.headers]
    assert "request-id" not in names
    assert ("content-type", "application/json") in r.headers


@pytest.mark.parametrize(("error", "status", "otype", "ocode", "astatus", "atype"), CASES)
def test_anthropic_shape(
    error: ApiError, status: int, otype: str, ocode: str | None, astatus: int, atype: str
) -> None:
    r = render_http(error, ANTHROPIC, "req_1")
    assert r.status == astatus
    assert orjson.loads(r.body) == {"type": "error", "error": {"type": atype, "message": error.message}}
    assert ("request-id", "req_1") in r.headers


def test_retry_after_is_whole_seconds_rounded_up_with_ms_alongside() -> None:
    r = render_http(ApiError(ErrorType.RATE_LIMITED, "x", retry_after_ms=1500), OPENAI)
    assert dict(r.headers)["retry-after"] == "2"
    assert dict(r.headers)["retry-after-ms"] == "1500"
    r = render_http(ApiError(ErrorType.RATE_LIMITED, "x", retry_after_ms=0), ANTHROPIC, "req_1")
    assert dict(r.headers)["retry-after"] == "1"


def test_no_retry_after_on_insufficient_balance_even_if_given() -> None:
    r = render_http(ApiError(ErrorType.INSUFFICIENT_BALANCE, "x", retry_after_ms=5000), OPENAI)
    assert not any(k.startswith("retry-after") for k, _ in r.headers)
    r = render_http(ApiError(ErrorType.INSUFFICIENT_BALANCE, "x", retry_after_ms=5000), ANTHROPIC, "r")
    assert not any(k.startswith("retry-after") for k, _ in r.headers)


def test_chat_stream_error_is_one_data_event_with_the_openai_error() -> None:
    raw = render_stream_error(ApiError(ErrorType.UPSTREAM_ERROR, "dropped"), OPENAI)
    events = SSEDecoder().feed(raw)
    assert len(events) == 1
    assert events[0].event is None
    assert orjson.loads(events[0].data) == {
        "error": {"message": "dropped", "type": "server_error", "param": None, "code": "upstream_error"}
    }


def test_anthropic_stream_error_is_an_error_event() -> None:
    raw = render_stream_error(ApiError(ErrorType.OVERLOADED, "busy"), ANTHROPIC)
    (ev,) = SSEDecoder().feed(raw)
    assert ev.event == "error"
    assert orjson.loads(ev.data) == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "busy"},
    }


def test_responses_stream_error_is_response_failed_with_the_response_so_far() -> None:
    raw = render_stream_error(
        ApiError(ErrorType.RATE_LIMITED, "later"),
        RESPONSES,
        response={"id": "resp_1", "model": "openai/gpt-4o-mini", "status": "in_progress"},
        sequence_number=7,
    )
    (ev,) = SSEDecoder().feed(raw)
    assert ev.event == "response.failed"
    body = orjson.loads(ev.data)
    assert body["type"] == "response.failed"
    assert body["sequence_number"] == 7
    assert body["response"]["id"] == "resp_1"
    assert body["response"]["status"] == "failed"
    assert body["response"]["error"] == {"code": "rate_limit_exceeded", "message": "later"}
    # Responses' `error.code` is a closed enum (server_error, rate_limit_exceeded, ...): every
    # other failure of a started stream is a server_error, whatever its chat code is.
    for error_type in (ErrorType.INTERNAL, ErrorType.UPSTREAM_ERROR, ErrorType.TIMEOUT, ErrorType.OVERLOADED):
        raw = render_stream_error(ApiError(error_type, "x"), RESPONSES)
        failed = orjson.loads(SSEDecoder().feed(raw)[0].data)
        assert failed["response"]["error"]["code"] == "server_error", error_type


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        (ErrorKind.INVALID_REQUEST, 400),
        (ErrorKind.MODEL_NOT_FOUND, 404),
        (ErrorKind.UPSTREAM_RATE_LIMITED, 429),
        (ErrorKind.UPSTREAM_ERROR, 502),
        (ErrorKind.UPSTREAM_TIMEOUT, 504),
        (ErrorKind.UPSTREAM_OVERLOADED, 503),
        (ErrorKind.UPSTREAM_AUTH, 502),
        (ErrorKind.REQUEST_TOO_LARGE, 413),
        (ErrorKind.INTERNAL, 500),
        (ErrorKind.UPSTREAM_INVALID_REQUEST, 400),
    ],
)
def test_router_kinds_map_to_statuses(kind: ErrorKind, status: int) -> None:
    assert ApiError(error_type_for(kind), "m").status == status


def test_overloaded_is_529_only_for_anthropic() -> None:
    err = ApiError(error_type_for(ErrorKind.UPSTREAM_OVERLOADED), "busy")
    assert render_http(err, ANTHROPIC).status == 529
    assert render_http(err, OPENAI).status == 503
    assert render_http(err, RESPONSES).status == 503
