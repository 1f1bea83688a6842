"""The request id of the work in progress, bound per asyncio task.

Every hop binds it (edge: generated; gRPC servers: from metadata; Kafka consumers: from headers),
so that logs and spans carry it without threading it through every call.
"""

from __future__ import annotations

from contextvars import ContextVar, Token

REQUEST_ID_HEADER = "x-request-id"
REQUEST_ID_ATTRIBUTE = "crossmodel.request_id"

request_id_var: ContextVar[str] = ContextVar("crossmodel_request_id", default="")


def current_request_id() -> str:
    return request_id_var.get()


def bind_request_id(request_id: str) -> Token[str]:
    return request_id_var.set(request_id)


def reset_request_id(token: Token[str]) -> None:
    request_id_var.reset(token)
