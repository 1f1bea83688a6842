"""The admin API's calls to auth, billing and usage: a failed call becomes the API error an
operator should see (the service's own message for the caller's mistakes, a retryable 5xx for
the service being away)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import grpc

from crossmodel_edge.adapters.backends import rpc_failure
from crossmodel_protocols.errors import ApiError, ErrorType

T = TypeVar("T")


class Refused(Exception):
    """The admin request cannot be served; `error` is what the client gets."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


_CALLER_MISTAKES = {
    grpc.StatusCode.NOT_FOUND: (ErrorType.NOT_FOUND, "not_found"),
    grpc.StatusCode.INVALID_ARGUMENT: (ErrorType.INVALID_REQUEST, None),
    grpc.StatusCode.OUT_OF_RANGE: (ErrorType.INVALID_REQUEST, None),
    grpc.StatusCode.FAILED_PRECONDITION: (ErrorType.CONFLICT, "conflict"),
    grpc.StatusCode.ALREADY_EXISTS: (ErrorType.CONFLICT, "conflict"),
}


def translate(exc: grpc.aio.AioRpcError, service: str, *, param: str | None = None) -> ApiError:
    mistake = _CALLER_MISTAKES.get(exc.code())
    if mistake is None:
        return rpc_failure(exc, service)
    etype, code = mistake
    message = exc.details() or f"The {service} service refused the request."
    return ApiError(etype, message[:1].upper() + message[1:], param, code)


async def call(rpc: Awaitable[T], service: str, *, param: str | None = None) -> T:
    try:
        return await rpc
    except grpc.aio.AioRpcError as exc:
        raise Refused(translate(exc, service, param=param)) from exc
