"""AuthService through gRPC: keys, admission decisions, limits and the wallet, on real
PostgreSQL and Redis, with two replicas where the behaviour must hold across replicas."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable

import grpc
import pytest
from redis.asyncio import Redis
from sqlalchemy import text

from crossmodel.auth.v1 import auth_pb2 as pb
from crossmodel.auth.v1.auth_pb2_grpc import AuthServiceStub
from crossmodel_billing.domain.billing import Billing
from crossmodel_billing.domain.ledger import Charge, Credit
from crossmodel_common.balance_state import BalanceState, balance_key, key_spent_key
from crossmodel_common.db import make_engine
from crossmodel_common.ids import new_id, new_request_id

Pair = tuple[AuthServiceStub, AuthServiceStub]
StartAuth = Callable[..., Awaitable[tuple[object, AuthServiceStub]]]


async def eventually(cond: Callable[[], Awaitable[bool]], timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def _account_with_key(
    auth: AuthServiceStub, wallet: BalanceState | None = None, balance: int = 10**9, **limits: object
) -> tuple[str, pb.CreateKeyResponse]:
    account = (await auth.CreateAccount(pb.CreateAccountRequest(name="acme"))).account
    created = await auth.CreateKey(
        pb.CreateKeyRequest(account_id=account.id, name="ci", limits=pb.KeyLimits(**limits))  # type: ignore[arg-type]
    )
    if wallet is not None:
        await wallet.publish(account_id=account.id, balance_micros=balance, version=1)
    return account.id, created


def _authorize(
    auth: AuthServiceStub,
    secret: str,
    *,
    model: str = "openai/gpt-4o-mini",
    reserve: int = 0,
    tokens: int = 10,
) -> Awaitable[pb.AuthorizeResponse]:
    return auth.Authorize(
        pb.AuthorizeRequest(
            request_id=new_request_id(),
            api_key=secret,
            model=model,
            estimated_input_tokens=tokens,
            max_output_tokens=0,
            reserve_micros=reserve,
        )
    )


async def test_keys_are_shown_once_and_stored_only_as_hashes(
    auth: AuthServiceStub,
    wallet: BalanceState,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    account_id, created = await _account_with_key(auth, rpm=60, allowed_models=["anthropic/*"])
    secret = created.secret
    assert secret.startswith("cm-")
    assert len(secret) >= 35
    assert created.key.redacted == "cm-…" + secret[-4:]
    assert created.key.status == pb.KEY_STATUS_ACTIVE
    assert list(created.key.limits.allowed_models) == ["anthropic/*"]

    listed = (await auth.ListKeys(pb.ListKeysRequest(account_id=account_id))).keys
    assert [k.id for k in listed] == [created.key.id]
    assert secret not in str(listed)

    engine = make_engine(database_url)
    async with engine.connect() as conn:
        row = (
            await conn.execute(text("SELECT * FROM api_keys WHERE id = :id"), {"id": created.key.id})
        ).one()
    await engine.dispose()
    assert bytes(row.key_hash) == hashlib.sha256(secret.encode()).digest()
    assert all(secret not in str(v) and secret[3:] not in str(v) for v in row)
    await wallet.publish(account_id=account_id, balance_micros=100, version=1)
    assert (await _authorize(auth, secret, model="anthropic/x")).decision == pb.DECISION_ALLOWED
    assert (await _authorize(auth, secret + "x")).decision == pb.DECISION_INVALID_KEY
    assert (await auth.IntrospectKey(pb.IntrospectKeyRequest(api_key=secret))).key.id == created.key.id
    out = capsys.readouterr()
    for text_seen in (caplog.text, out.out, out.err):
        assert secret[3:] not in text_seen


async def test_admission_decisions(auth: AuthServiceStub, wallet: BalanceState) -> None:
    account_id, created = await _account_with_key(
        auth, wallet, allowed_models=["anthropic/*", "openai/gpt-4o*"]
    )
    ok = await _authorize(auth, created.secret, model="anthropic/claude-sonnet-4.6")
    assert ok.decision == pb.DECISION_ALLOWED
    assert (ok.account_id, ok.key_id, ok.key_name) == (account_id, created.key.id, "ci")

    assert (
        await _authorize(auth, created.secret, model="openai/gpt-4o-mini")
    ).decision == pb.DECISION_ALLOWED
    refused = await _authorize(auth, created.secret, model="google/gemini-2.5-flash")
    assert refused.decision == pb.DECISION_MODEL_NOT_ALLOWED
    assert "google/gemini-2.5-flash" in refused.message

    assert (await _authorize(auth, "cm-" + "x" * 48)).decision == pb.DECISION_INVALID_KEY
    assert (await _authorize(auth, "")).decision == pb.DECISION_INVALID_KEY
    assert (await _authorize(auth, "sk-not-ours")).decision == pb.DECISION_INVALID_KEY


async def test_a_revoked_key_is_refused_at_once_on_every_replica(
    auth_pair: Pair, wallet: BalanceState
) -> None:
    a, b = auth_pair
    account_id, created = await _account_with_key(a, wallet)
    # Both replicas have the key cached as active.
    assert (await _authorize(a, created.secret)).decision == pb.DECISION_ALLOWED
    assert (await _authorize(b, created.secret)).decision == pb.DECISION_ALLOWED

    revoked = (await a.RevokeKey(pb.RevokeKeyRequest(key_id=created.key.id, account_id=account_id))).key
    assert revoked.status == pb.KEY_STATUS_REVOKED
    assert revoked.revoked_at_unix_ms > 0
    # The revoke returned, so no replica may admit the key any more: no waiting at all.
    for stub in (a, b, a, b):
        assert (await _authorize(stub, created.secret)).decision == pb.DECISION_KEY_REVOKED
    intro = await b.IntrospectKey(pb.IntrospectKeyRequest(api_key=created.secret))
    assert intro.decision == pb.DECISION_KEY_REVOKED
    assert intro.key.id == created.key.id


async def test_an_expired_key_is_refused(auth: AuthServiceStub, wallet: BalanceState) -> None:
    expires = int(time.time() * 1000) + 500
    _, created = await _account_with_key(auth, wallet, expires_at_unix_ms=expires)
    assert (await _authorize(auth, created.secret)).decision == pb.DECISION_ALLOWED

    async def expired() -> bool:
        return (await _authorize(auth, created.secret)).decision == pb.DECISION_KEY_EXPIRED

    await eventually(expired)
    assert int(time.time() * 1000) >= expires


async def test_rpm_is_exact_across_two_replicas(auth_pair: Pair, wallet: BalanceState) -> None:
    a, b = auth_pair
    _, created = await _account_with_key(a, wallet, rpm=5)
    results = await asyncio.gather(*(_authorize(a if i % 2 else b, created.secret) for i in range(50)))
    allowed = [r for r in results if r.decision == pb.DECISION_ALLOWED]
    limited = [r for r in results if r.decision == pb.DECISION_RATE_LIMITED_REQUESTS]
    assert (len(allowed), len(limited)) == (5, 45)
    assert all(0 < r.retry_after_ms <= 60_000 for r in limited)
    assert all(r.rate_limit.limit_requests == 5 and r.rate_limit.remaining_requests == 0 for r in limited)
    assert sorted(r.rate_limit.remaining_requests for r in allowed) == [0, 1, 2, 3, 4]
    assert all(r.retry_after_ms == 0 for r in allowed)


async def test_reservations_never_overspend_across_replicas(auth_pair: Pair, wallet: BalanceState) -> None:
    a, b = auth_pair
    account_id, created = await _account_with_key(a, wallet, balance=1_000)
    results = await asyncio.gather(
        *(_authorize(a if i % 2 else b, created.secret, reserve=70) for i in range(50))
    )
    allowed = [r for r in results if r.decision == pb.DECISION_ALLOWED]
    assert len(allowed) == 14
    assert all(r.reserved_micros == 70 for r in allowed)
    assert {r.decision for r in results} == {pb.DECISION_ALLOWED, pb.DECISION_INSUFFICIENT_BALANCE}
    state = await wallet.account_state(account_id)
    assert state.held_micros == 980


async def test_tpm_is_corrected_by_settle(auth: AuthServiceStub, wallet: BalanceState) -> None:
    _, created = await _account_with_key(auth, wallet, tpm=1000)
    rid = new_request_id()
    first = await auth.Authorize(
        pb.AuthorizeRequest(
            request_id=rid,
            api_key=created.secret,
            model="m",
            estimated_input_tokens=600,
            max_output_tokens=200,
        )
    )
    assert first.decision == pb.DECISION_ALLOWED
    assert first.reserved_tokens == 800
    assert first.rate_limit.limit_tokens == 1000
    assert first.rate_limit.remaining_tokens == 200
    second = await _authorize(auth, created.secret, tokens=500)
    assert second.decision == pb.DECISION_RATE_LIMITED_TOKENS
    assert 0 < second.retry_after_ms <= 60_000

    await auth.Settle(
        pb.SettleRequest(request_id=rid, key_id=first.key_id, reserved_tokens=800, actual_tokens=300)
    )
    assert (await _authorize(auth, created.secret, tokens=500)).decision == pb.DECISION_ALLOWED
    assert (await _authorize(auth, created.secret, tokens=500)).decision == pb.DECISION_RATE_LIMITED_TOKENS


async def test_limit_changes_apply_at_once_on_every_replica(auth_pair: Pair, wallet: BalanceState) -> None:
    a, b = auth_pair
    account_id, created = await _account_with_key(a, wallet, rpm=1)
    assert (await _authorize(b, created.secret)).decision == pb.DECISION_ALLOWED
    assert (await _authorize(b, created.secret)).decision == pb.DECISION_RATE_LIMITED_REQUESTS
    updated = await a.UpdateKey(
        pb.UpdateKeyRequest(
            key_id=created.key.id, account_id=account_id, name="renamed", limits=pb.KeyLimits(rpm=3)
        )
    )
    assert updated.key.name == "renamed"
    assert updated.key.limits.rpm == 3
    ok = await _authorize(b, created.secret)
    assert ok.decision == pb.DECISION_ALLOWED
    assert ok.key_name == "renamed"
    assert ok.rate_limit.limit_requests == 3


async def test_refusals_from_a_cached_record_are_confirmed_after_an_update(
    auth_pair: Pair, wallet: BalanceState
) -> None:
    a, b = auth_pair
    past = int(time.time() * 1000) - 1
    account_id, created = await _account_with_key(a, wallet, allowed_models=["anthropic/*"])
    assert (
        await _authorize(b, created.secret, model="openai/gpt-4o")
    ).decision == pb.DECISION_MODEL_NOT_ALLOWED
    await a.UpdateKey(
        pb.UpdateKeyRequest(
            key_id=created.key.id, account_id=account_id, limits=pb.KeyLimits(expires_at_unix_ms=past)
        )
    )
    assert (await _authorize(b, created.secret, model="openai/gpt-4o")).decision == pb.DECISION_KEY_EXPIRED
    await a.UpdateKey(
        pb.UpdateKeyRequest(key_id=created.key.id, account_id=account_id, limits=pb.KeyLimits())
    )
    assert (await _authorize(b, created.secret, model="openai/gpt-4o")).decision == pb.DECISION_ALLOWED


async def test_last_used_is_recorded_off_the_request_path(
    auth: AuthServiceStub, wallet: BalanceState
) -> None:
    account_id, created = await _account_with_key(auth, wallet)
    assert created.key.last_used_at_unix_ms == 0
    before = int(time.time() * 1000)
    assert (await _authorize(auth, created.secret)).decision == pb.DECISION_ALLOWED

    async def recorded() -> bool:
        key = (await auth.GetKey(pb.GetKeyRequest(key_id=created.key.id, account_id=account_id))).key
        return key.last_used_at_unix_ms >= before - 5

    await eventually(recorded)


async def test_management_errors_and_paging(auth: AuthServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await auth.GetAccount(pb.GetAccountRequest(account_id="acct_missing"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await auth.CreateKey(pb.CreateKeyRequest(account_id="acct_missing", name="k"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await auth.CreateAccount(pb.CreateAccountRequest(name=" "))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    account_id, created = await _account_with_key(auth)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await auth.UpdateKey(
            pb.UpdateKeyRequest(key_id=created.key.id, account_id=account_id, limits=pb.KeyLimits(rpm=-1))
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await auth.GetKey(pb.GetKeyRequest(key_id=created.key.id, account_id="acct_other"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    await auth.RevokeKey(pb.RevokeKeyRequest(key_id=created.key.id))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await auth.UpdateKey(pb.UpdateKeyRequest(key_id=created.key.id, name="again"))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    ids = {(await auth.CreateAccount(pb.CreateAccountRequest(name=f"p{i}"))).account.id for i in range(5)}
    seen: list[str] = []
    token = ""
    while True:
        page = await auth.ListAccounts(pb.ListAccountsRequest(page_size=2, page_token=token))
        assert len(page.accounts) <= 2
        seen += [a.id for a in page.accounts]
        token = page.next_page_token
        if not token:
            break
    assert ids <= set(seen)
    assert len(seen) == len(set(seen))


async def test_no_balance_state_and_no_billing_is_unavailable(auth: AuthServiceStub) -> None:
    _, created = await _account_with_key(auth)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _authorize(auth, created.secret)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_balance_and_spend_are_read_from_billing_when_redis_lost_them(
    start_auth: StartAuth, billing: tuple[str, Billing], redis: Redis
) -> None:
    target, ledger = billing
    _, auth = await start_auth(billing_target=target)
    account_id, created = await _account_with_key(auth, spend_cap_micros=1_000)
    await ledger.credit(Credit(account_id, 5_000, new_id("pay"), "top-up", adjustment=False))
    await ledger.settle([Charge(new_request_id(), account_id, created.key.id, "m", 900)])
    # As if Redis had restarted empty: no balance, no spend for this account.
    await redis.delete(balance_key(account_id), key_spent_key(account_id))

    refused = await _authorize(auth, created.secret, reserve=200)
    assert refused.decision == pb.DECISION_SPEND_CAP_EXCEEDED
    allowed = await _authorize(auth, created.secret, reserve=100)
    assert allowed.decision == pb.DECISION_ALLOWED
    state = await BalanceState(redis).account_state(account_id)
    assert (state.balance_micros, state.version, state.held_micros) == (4_100, 0, 100)

    # Billing's next publish replaces the seeded copy.
    await ledger.credit(Credit(account_id, 1, new_id("pay"), "top-up", adjustment=False))
    assert (await BalanceState(redis).account_state(account_id)).balance_micros == 4_101


async def test_a_new_account_starts_at_zero(start_auth: StartAuth, billing: tuple[str, Billing]) -> None:
    target, ledger = billing
    _, auth = await start_auth(billing_target=target)
    account_id, created = await _account_with_key(auth)
    assert (await _authorize(auth, created.secret, reserve=1)).decision == pb.DECISION_INSUFFICIENT_BALANCE
    await ledger.credit(Credit(account_id, 10, new_id("pay"), "top-up", adjustment=False))
    assert (await _authorize(auth, created.secret, reserve=10)).decision == pb.DECISION_ALLOWED
    assert (await _authorize(auth, created.secret, reserve=1)).decision == pb.DECISION_INSUFFICIENT_BALANCE


async def test_admission_without_redis_is_unavailable(start_auth: StartAuth, auth: AuthServiceStub) -> None:
    _, created = await _account_with_key(auth)
    _, cut_off = await start_auth(redis_url="redis://127.0.0.1:9/0")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _authorize(cut_off, created.secret)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_keys_can_be_created_and_revocation_is_refused_while_redis_is_down(
    start_auth: StartAuth, auth: AuthServiceStub
) -> None:
    _, cut_off = await start_auth(redis_url="redis://127.0.0.1:9/0")
    account = (await cut_off.CreateAccount(pb.CreateAccountRequest(name="no-redis"))).account
    created = await cut_off.CreateKey(pb.CreateKeyRequest(account_id=account.id, name="k"))
    assert created.secret.startswith("cm-")
    # A revoke that could not reach Redis would leave cached copies admitting the key: refuse it
    # and keep the key as it was.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await cut_off.RevokeKey(pb.RevokeKeyRequest(key_id=created.key.id))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    key = (await auth.GetKey(pb.GetKeyRequest(key_id=created.key.id))).key
    assert key.status == pb.KEY_STATUS_ACTIVE
    assert (
        await auth.RevokeKey(pb.RevokeKeyRequest(key_id=created.key.id))
    ).key.status == pb.KEY_STATUS_REVOKED
