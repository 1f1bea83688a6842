"""Refusals and failures from auth and the router, as API errors."""

from __future__ import annotations

from crossmodel.auth.v1 import auth_pb2
from crossmodel.router.v1 import router_pb2
from crossmodel_protocols.canonical import ErrorKind
from crossmodel_protocols.errors import ApiError, ErrorType, error_type_for

D = auth_pb2.Decision

# When a limiter refuses without saying when to come back, one second is the shortest wait the
# `retry-after` header can express.
DEFAULT_RETRY_AFTER_MS = 1_000

MISSING_KEY = ApiError(
    ErrorType.AUTHENTICATION,
    "You didn't provide an API key. Send it as 'Authorization: Bearer cm-...' or 'x-api-key: cm-...'.",
)
INVALID_KEY = ApiError(ErrorType.AUTHENTICATION, "Incorrect API key provided.")

_DECISIONS: dict[int, tuple[ErrorType, str, str | None]] = {
    D.DECISION_INVALID_KEY: (ErrorType.AUTHENTICATION, "Incorrect API key provided.", None),
    D.DECISION_KEY_REVOKED: (ErrorType.AUTHENTICATION, "This API key has been revoked.", None),
    D.DECISION_KEY_EXPIRED: (ErrorType.AUTHENTICATION, "This API key has expired.", None),
    D.DECISION_MODEL_NOT_ALLOWED: (
        ErrorType.PERMISSION,
        "This API key may not use this model.",
        "model_not_allowed",
    ),
    D.DECISION_ACCOUNT_DISABLED: (ErrorType.PERMISSION, "This account is disabled.", "account_disabled"),
    D.DECISION_RATE_LIMITED_REQUESTS: (
        ErrorType.RATE_LIMITED,
        "Rate limit reached for requests per minute.",
        None,
    ),
    D.DECISION_RATE_LIMITED_TOKENS: (
        ErrorType.RATE_LIMITED,
        "Rate limit reached for tokens per minute.",
        None,
    ),
    D.DECISION_INSUFFICIENT_BALANCE: (
        ErrorType.INSUFFICIENT_BALANCE,
        "Your balance is too low for this request. Top up your account to continue.",
        None,
    ),
    D.DECISION_SPEND_CAP_EXCEEDED: (
        ErrorType.INSUFFICIENT_BALANCE,
        "This API key reached its spend cap.",
        None,
    ),
}


def refusal(decision: int, message: str = "", retry_after_ms: int = 0) -> ApiError:
    """The error for any decision but ALLOWED; auth's message wins over ours when it has one."""
    row = _DECISIONS.get(decision)
    if row is None:
        return ApiError(ErrorType.INTERNAL, "Admission failed unexpectedly.")
    etype, default, code = row
    retry = (retry_after_ms or DEFAULT_RETRY_AFTER_MS) if etype is ErrorType.RATE_LIMITED else None
    return ApiError(etype, message or default, code=code, retry_after_ms=retry)


def model_not_found(model: str) -> ApiError:
    # A vendor's own name for its model is the commonest miss: say how ids are made.
    hint = " Model ids name their vendor: 'vendor/model'." if "/" not in model else ""
    return ApiError(
        ErrorType.NOT_FOUND,
        f"The model '{model}' does not exist.{hint} GET /v1/models lists the models you can use.",
        param="model",
        code="model_not_found",
    )


_RETRY_HINTED = frozenset({ErrorType.RATE_LIMITED, ErrorType.OVERLOADED, ErrorType.UNAVAILABLE})


def route_failure(err: router_pb2.RouteError) -> ApiError:
    name = router_pb2.ErrorKind.Name(err.kind).removeprefix("ERROR_KIND_")
    kind = ErrorKind.__members__.get(name, ErrorKind.INTERNAL)
    etype = error_type_for(kind)
    code = err.code or ("model_not_found" if kind is ErrorKind.MODEL_NOT_FOUND else None)
    # The upstream's own wait, on every error a client may retry (an overloaded vendor sends
    # one too); never on the others.
    retry = (err.retry_after_ms or None) if etype in _RETRY_HINTED else None
    return ApiError(etype, err.message or "The upstream request failed.", err.param or None, code, retry)
