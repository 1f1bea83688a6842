"""Idempotency-Key on inference requests, the edge's part: read the header, fingerprint the
request, answer auth's idempotency decisions, and say what to store once the request finished.
The records live in auth (docs/money.md, "Idempotent inference requests")."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from crossmodel.auth.v1 import auth_pb2
from crossmodel_edge.domain.exchange import Exchange, Outcome
from crossmodel_edge.domain.request import BodyError
from crossmodel_protocols.canonical import Protocol
from crossmodel_protocols.errors import ApiError, ErrorType

HEADER = b"idempotency-key"
PARAM = "Idempotency-Key"
MAX_KEY_LENGTH = 255
# Responses larger than this are not stored (a replay then gets a 409, never a second charge).
MAX_STORED_BYTES = 1 << 20
# The first request usually finishes within moments of its twin's retry; the SDKs read -ms.
IN_PROGRESS_RETRY_MS = 500

D = auth_pb2.Decision
DECISIONS = frozenset(
    {
        D.DECISION_IDEMPOTENT_REPLAY,
        D.DECISION_IDEMPOTENCY_IN_PROGRESS,
        D.DECISION_IDEMPOTENCY_MISMATCH,
        D.DECISION_IDEMPOTENCY_NOT_STORED,
    }
)
REPLAYED = ("idempotent-replayed", "true")


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    key: str
    body_sha256: bytes


@dataclass(frozen=True, slots=True)
class Replay:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def idempotency_of(
    headers: Iterable[tuple[bytes, bytes]], protocol: Protocol, body: bytes
) -> IdempotencyKey | None:
    """The request's key and fingerprint, or None without the header. The fingerprint covers the
    protocol and the body byte for byte: a client retrying sends the same bytes."""
    for name, value in headers:
        if name == HEADER:
            key = value.decode("latin-1").strip()
            if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
                raise BodyError(f"The {PARAM} header must be 1-{MAX_KEY_LENGTH} printable characters.", PARAM)
            digest = hashlib.sha256(protocol.value.encode())
            digest.update(b"\n")
            digest.update(body)
            return IdempotencyKey(key, digest.digest())
    return None


def answer(auth: auth_pb2.AuthorizeResponse) -> Replay | tuple[ApiError, list[tuple[str, str]]]:
    """The stored response for a replay, else the 409 and its headers. `x-should-retry` tells
    the OpenAI and Anthropic SDKs (which retry 409s by default) which of them to retry."""
    if auth.decision == D.DECISION_IDEMPOTENT_REPLAY:
        r = auth.replay
        return Replay(
            r.status_code, [("content-type", r.content_type or "application/json"), REPLAYED], r.body
        )
    error = ApiError(ErrorType.CONFLICT, auth.message, PARAM, _CODES.get(auth.decision, "conflict"))
    if auth.decision == D.DECISION_IDEMPOTENCY_IN_PROGRESS:
        return error, [
            ("retry-after", "1"),
            ("retry-after-ms", str(IN_PROGRESS_RETRY_MS)),
            ("x-should-retry", "true"),
        ]
    return error, [("x-should-retry", "false")]


_CODES = {
    D.DECISION_IDEMPOTENCY_IN_PROGRESS: "idempotency_key_in_use",
    D.DECISION_IDEMPOTENCY_MISMATCH: "idempotency_key_reused",
    D.DECISION_IDEMPOTENCY_NOT_STORED: "idempotency_key_reused",
}


def completion(x: Exchange) -> auth_pb2.CompleteIdempotencyRequest:
    """After the response: a success is kept (its body stored unless it streamed or is too
    large); a failure or a cancellation releases the key, so a retry runs the request again."""
    keep = x.outcome is Outcome.SUCCEEDED and 200 <= x.http_status < 300
    request = auth_pb2.CompleteIdempotencyRequest(
        account_id=x.account_id, idempotency_key=x.idempotency_key, request_id=x.request_id, keep=keep
    )
    stored = x.stored_result
    if keep and stored is not None and len(stored[2]) <= MAX_STORED_BYTES:
        r = request.result
        r.status_code, r.content_type, r.body = stored
    return request
