"""Router errors as API errors: the upstream's retry hint survives on retryable errors only."""

from __future__ import annotations

from crossmodel.router.v1 import router_pb2
from crossmodel_edge.domain.failures import route_failure
from crossmodel_protocols.errors import ErrorType


def test_retry_hints_pass_on_retryable_errors_only() -> None:
    def failure(kind: int) -> router_pb2.RouteError:
        return router_pb2.RouteError(kind=kind, message="m", retry_after_ms=1500)  # type: ignore[arg-type]

    rate = route_failure(failure(router_pb2.ERROR_KIND_UPSTREAM_RATE_LIMITED))
    overloaded = route_failure(failure(router_pb2.ERROR_KIND_UPSTREAM_OVERLOADED))
    broken = route_failure(failure(router_pb2.ERROR_KIND_UPSTREAM_ERROR))
    assert (rate.type, rate.retry_after_ms) == (ErrorType.RATE_LIMITED, 1500)
    assert (overloaded.type, overloaded.retry_after_ms) == (ErrorType.OVERLOADED, 1500)
    assert (broken.type, broken.retry_after_ms) == (ErrorType.UPSTREAM_ERROR, None)
