"""The edge's side of Idempotency-Key: the header, the fingerprint, the answers to auth's
idempotency decisions, and what is stored once the request finished."""

from __future__ import annotations

import hashlib

import pytest

from crossmodel.auth.v1 import auth_pb2
from crossmodel_common.money import Prices
from crossmodel_edge.domain.admission import Admission
from crossmodel_edge.domain.catalog import ModelInfo
from crossmodel_edge.domain.exchange import Exchange
from crossmodel_edge.domain.idempotency import (
    DECISIONS,
    MAX_STORED_BYTES,
    Replay,
    answer,
    completion,
    idempotency_of,
)
from crossmodel_edge.domain.request import BodyError
from crossmodel_protocols.canonical import Protocol
from crossmodel_protocols.errors import ApiError, ErrorType, render_http

BODY = b'{"model":"openai/gpt-4o-mini","messages":[]}'
MODEL = ModelInfo(
    "openai/gpt-4o-mini", "openai", "mini", 128_000, 16_384, (), Prices(150_000, 600_000, 75_000), 0
)


def exchange(**kw: object) -> Exchange:
    base: dict[str, object] = {
        "request_id": "req_1",
        "protocol": Protocol.OPENAI_CHAT,
        "model": MODEL,
        "stream": False,
        "body_size": 40,
        "admission": Admission(40, 100, 66),
        "account_id": "acct_1",
        "key_id": "key_1",
        "key_name": "k",
        "reserved_micros": 66,
        "reserved_tokens": 0,
        "started_unix_ms": 1_000,
        "started_mono_ms": 50.0,
        "http_status": 200,
    }
    base.update(kw)
    return Exchange(**base)  # type: ignore[arg-type]


def test_no_header_no_key() -> None:
    assert idempotency_of([(b"content-type", b"application/json")], Protocol.OPENAI_CHAT, BODY) is None


def test_the_fingerprint_covers_the_protocol_and_every_byte() -> None:
    headers = [(b"idempotency-key", b" order-42 ")]
    chat = idempotency_of(headers, Protocol.OPENAI_CHAT, BODY)
    assert chat is not None
    assert chat.key == "order-42"
    assert chat.body_sha256 == hashlib.sha256(b"openai.chat\n" + BODY).digest()
    assert idempotency_of(headers, Protocol.OPENAI_CHAT, BODY) == chat
    assert idempotency_of(headers, Protocol.OPENAI_CHAT, BODY + b" ") != chat
    assert idempotency_of(headers, Protocol.ANTHROPIC_MESSAGES, BODY) != chat


@pytest.mark.parametrize("value", [b"", b"   ", b"x" * 256, b"tab\there"])
def test_bad_keys_are_a_400_naming_the_header(value: bytes) -> None:
    with pytest.raises(BodyError) as err:
        idempotency_of([(b"idempotency-key", value)], Protocol.OPENAI_CHAT, BODY)
    assert err.value.param == "Idempotency-Key"


def test_a_replay_answers_the_stored_response() -> None:
    auth = auth_pb2.AuthorizeResponse(
        decision=auth_pb2.DECISION_IDEMPOTENT_REPLAY,
        replay=auth_pb2.IdempotentResult(
            status_code=200, content_type="application/json", body=b'{"id":"c1"}', request_id="req_1"
        ),
    )
    assert answer(auth) == Replay(
        200, [("content-type", "application/json"), ("idempotent-replayed", "true")], b'{"id":"c1"}'
    )


def test_conflicts_are_409s_and_only_in_progress_invites_a_retry() -> None:
    assert {auth_pb2.Decision.Name(d) for d in DECISIONS} == {
        "DECISION_IDEMPOTENT_REPLAY",
        "DECISION_IDEMPOTENCY_IN_PROGRESS",
        "DECISION_IDEMPOTENCY_MISMATCH",
        "DECISION_IDEMPOTENCY_NOT_STORED",
    }
    waiting = answer(
        auth_pb2.AuthorizeResponse(decision=auth_pb2.DECISION_IDEMPOTENCY_IN_PROGRESS, message="m")
    )
    reused = answer(auth_pb2.AuthorizeResponse(decision=auth_pb2.DECISION_IDEMPOTENCY_MISMATCH, message="m"))
    assert not isinstance(waiting, Replay)
    assert not isinstance(reused, Replay)
    assert waiting[0].type is reused[0].type is ErrorType.CONFLICT
    assert dict(waiting[1]) == {"retry-after": "1", "retry-after-ms": "500", "x-should-retry": "true"}
    assert dict(reused[1]) == {"x-should-retry": "false"}
    assert render_http(reused[0], Protocol.OPENAI_CHAT).status == 409
    assert b'"code":"idempotency_key_reused"' in render_http(reused[0], Protocol.OPENAI_CHAT).body
    anthropic = render_http(reused[0], Protocol.ANTHROPIC_MESSAGES)
    assert (anthropic.status, b'"type":"invalid_request_error"' in anthropic.body) == (409, True)


def test_a_success_is_kept_with_its_body_and_a_failure_releases_the_key() -> None:
    ok = exchange(stream=False, idempotency_key="k", stored_result=(200, "application/json", b"{}"))
    done = completion(ok)
    assert (done.keep, done.idempotency_key, done.request_id, done.account_id) == (
        True,
        "k",
        "req_1",
        "acct_1",
    )
    assert (done.result.status_code, done.result.content_type, done.result.body) == (
        200,
        "application/json",
        b"{}",
    )

    stream = completion(exchange(stream=True, idempotency_key="k"))
    assert stream.keep
    assert not stream.HasField("result")

    big = completion(
        exchange(stream=False, idempotency_key="k", stored_result=(200, "a/b", b"x" * (MAX_STORED_BYTES + 1)))
    )
    assert big.keep
    assert not big.HasField("result")

    failed = exchange(
        stream=False, idempotency_key="k", http_status=502, error=ApiError(ErrorType.UPSTREAM_ERROR, "x")
    )
    assert not completion(failed).keep
    assert not completion(exchange(stream=True, idempotency_key="k", client_gone=True)).keep
