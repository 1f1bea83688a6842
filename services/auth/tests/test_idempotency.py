"""Idempotency-Key through Authorize and CompleteIdempotency, on real PostgreSQL and Redis, with
two replicas where the behaviour must hold across replicas."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable

import grpc
import pytest
from redis.asyncio import Redis

from crossmodel.auth.v1 import auth_pb2 as pb
from crossmodel.auth.v1.auth_pb2_grpc import AuthServiceStub
from crossmodel_auth.adapters.idempotency import record_key
from crossmodel_common.balance_state import BalanceState
from crossmodel_common.ids import new_id, new_request_id

Pair = tuple[AuthServiceStub, AuthServiceStub]
BODY = hashlib.sha256(b'chat\n{"model":"openai/gpt-4o-mini"}').digest()
OTHER_BODY = hashlib.sha256(b'chat\n{"model":"openai/gpt-4o"}').digest()


async def _account(
    auth: AuthServiceStub, wallet: BalanceState, balance: int = 10**9, **limits: object
) -> tuple[str, str, str]:
    account = (await auth.CreateAccount(pb.CreateAccountRequest(name="idem"))).account
    created = await auth.CreateKey(
        pb.CreateKeyRequest(account_id=account.id, name="k", limits=pb.KeyLimits(**limits))  # type: ignore[arg-type]
    )
    await wallet.publish(account_id=account.id, balance_micros=balance, version=1)
    return account.id, created.key.id, created.secret


def _authorize(
    auth: AuthServiceStub,
    secret: str,
    key: str,
    body: bytes = BODY,
    *,
    request_id: str | None = None,
    reserve: int = 10,
) -> Awaitable[pb.AuthorizeResponse]:
    return auth.Authorize(
        pb.AuthorizeRequest(
            request_id=request_id or new_request_id(),
            api_key=secret,
            model="openai/gpt-4o-mini",
            estimated_input_tokens=10,
            reserve_micros=reserve,
            idempotency_key=key,
            body_sha256=body,
        )
    )


def _complete(
    auth: AuthServiceStub,
    account_id: str,
    key: str,
    request_id: str,
    *,
    keep: bool,
    body: bytes | None = b'{"id":"chatcmpl-1"}',
) -> Awaitable[pb.CompleteIdempotencyResponse]:
    request = pb.CompleteIdempotencyRequest(
        account_id=account_id, idempotency_key=key, request_id=request_id, keep=keep
    )
    if body is not None:
        request.result.CopyFrom(
            pb.IdempotentResult(status_code=200, content_type="application/json", body=body)
        )
    return auth.CompleteIdempotency(request)


async def test_a_stored_result_is_replayed_without_admission(
    auth_pair: Pair, wallet: BalanceState, redis: Redis
) -> None:
    a, b = auth_pair
    account_id, _, secret = await _account(a, wallet, rpm=2)
    key = "idem-" + new_id("k")
    first = await _authorize(a, secret, key)
    assert first.decision == pb.DECISION_ALLOWED
    rid = (await wallet.account_state(account_id)).reservations
    assert len(rid) == 1
    request_id = next(iter(rid))

    # While it runs, the same key waits on every replica; another body is a mismatch.
    assert (await _authorize(b, secret, key)).decision == pb.DECISION_IDEMPOTENCY_IN_PROGRESS
    assert (await _authorize(b, secret, key, OTHER_BODY)).decision == pb.DECISION_IDEMPOTENCY_MISMATCH

    assert (await _complete(a, account_id, key, request_id, keep=True)).applied
    for replica in (a, b, a):
        replay = await _authorize(replica, secret, key)
        assert replay.decision == pb.DECISION_IDEMPOTENT_REPLAY
        assert (replay.replay.status_code, replay.replay.content_type, replay.replay.body) == (
            200,
            "application/json",
            b'{"id":"chatcmpl-1"}',
        )
        assert replay.replay.request_id == request_id
    # Three replays counted nothing: RPM 2 still admits one more request, and reserved nothing.
    assert (await wallet.account_state(account_id)).reservations.keys() == {request_id}
    assert (await _authorize(a, secret, "")).decision == pb.DECISION_ALLOWED
    assert (await _authorize(a, secret, "")).decision == pb.DECISION_RATE_LIMITED_REQUESTS
    # Kept for a day from the first request.
    ttl = await redis.pttl(record_key(account_id, key))
    assert 23 * 3600 * 1000 < ttl <= 24 * 3600 * 1000
    # Only the claiming request completes a key, once.
    assert not (await _complete(b, account_id, key, request_id, keep=False)).applied
    assert not (await _complete(b, account_id, key, new_request_id(), keep=True)).applied


async def test_concurrent_requests_with_one_key_admit_one(auth_pair: Pair, wallet: BalanceState) -> None:
    a, b = auth_pair
    account_id, _, secret = await _account(a, wallet)
    key = "idem-" + new_id("k")
    results = await asyncio.gather(*(_authorize(a if i % 2 else b, secret, key) for i in range(20)))
    decisions = sorted(r.decision for r in results)
    assert decisions == [pb.DECISION_ALLOWED] + [pb.DECISION_IDEMPOTENCY_IN_PROGRESS] * 19
    assert len((await wallet.account_state(account_id)).reservations) == 1


async def test_a_released_key_runs_again_and_a_stream_is_not_replayed(
    auth: AuthServiceStub, wallet: BalanceState
) -> None:
    account_id, _, secret = await _account(auth, wallet)
    key = "idem-" + new_id("k")
    rid = new_request_id()
    assert (await _authorize(auth, secret, key, request_id=rid)).decision == pb.DECISION_ALLOWED
    # A retried Authorize of the same request keeps its claim and its one admission.
    assert (await _authorize(auth, secret, key, request_id=rid)).decision == pb.DECISION_ALLOWED
    assert (await _complete(auth, account_id, key, rid, keep=False)).applied  # failed: released

    rid2 = new_request_id()
    assert (await _authorize(auth, secret, key, request_id=rid2)).decision == pb.DECISION_ALLOWED
    assert (await _complete(auth, account_id, key, rid2, keep=True, body=None)).applied  # a stream
    refused = await _authorize(auth, secret, key)
    assert refused.decision == pb.DECISION_IDEMPOTENCY_NOT_STORED
    assert "stream" in refused.message


async def test_keys_are_scoped_per_account(auth: AuthServiceStub, wallet: BalanceState) -> None:
    key = "shared-" + new_id("k")
    _, _, first = await _account(auth, wallet)
    _, _, second = await _account(auth, wallet)
    assert (await _authorize(auth, first, key)).decision == pb.DECISION_ALLOWED
    assert (await _authorize(auth, second, key, OTHER_BODY)).decision == pb.DECISION_ALLOWED


async def test_a_refused_request_leaves_the_key_free(auth: AuthServiceStub, wallet: BalanceState) -> None:
    account_id, key_id, secret = await _account(auth, wallet, balance=5)
    key = "idem-" + new_id("k")
    assert (await _authorize(auth, secret, key, reserve=100)).decision == pb.DECISION_INSUFFICIENT_BALANCE
    assert (await _authorize(auth, secret, key, reserve=5)).decision == pb.DECISION_ALLOWED
    # A revoked key replays nothing.
    await auth.RevokeKey(pb.RevokeKeyRequest(key_id=key_id, account_id=account_id))
    assert (await _authorize(auth, secret, key)).decision == pb.DECISION_KEY_REVOKED


async def test_malformed_keys_are_invalid_arguments(auth: AuthServiceStub, wallet: BalanceState) -> None:
    account_id, _, secret = await _account(auth, wallet)
    for bad in ("x" * 256, "line\nbreak"):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _authorize(auth, secret, bad)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _complete(auth, account_id, "", new_request_id(), keep=False)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
