"""The shared wallet/rate-limit scripts against the real Redis on 127.0.0.1:6379.

Every test works on fresh account ids, so nothing here touches keys another test or service uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from crossmodel_common.balance_state import AdmitCode, BalanceState, Publish, window_tokens_key
from crossmodel_common.ids import new_id, new_request_id
from crossmodel_common.resp import PipelinedRedis
from crossmodel_devstack.backends import REDIS_URL


@pytest.fixture(params=["redis-py", "pipelined"])
async def state(redis: Redis, request: pytest.FixtureRequest) -> AsyncIterator[BalanceState]:
    """Every behaviour of the scripts holds whichever connection admission runs on."""
    if request.param == "redis-py":
        yield BalanceState(redis)
        return
    pipelined = PipelinedRedis(REDIS_URL, timeout=5)
    yield BalanceState(redis, pipelined=pipelined)
    await pipelined.aclose()


async def _account(state: BalanceState, balance: int, *keys: str) -> str:
    account = new_id("acct")
    await state.publish(account_id=account, balance_micros=balance, version=1)
    for key in keys:
        await state.publish_key_generation(account, key, 1)
    return account


async def _admit(
    state: BalanceState,
    account: str,
    key: str,
    *,
    reserve: int = 0,
    tokens: int = 10,
    rpm: int = 0,
    tpm: int = 0,
    cap: int = 0,
    generation: int = 1,
    request_id: str | None = None,
) -> tuple[str, AdmitCode, int]:
    rid = request_id or new_request_id()
    r = await state.admit(
        account_id=account,
        key_id=key,
        generation=generation,
        request_id=rid,
        tokens=tokens,
        reserve_micros=reserve,
        rpm=rpm,
        tpm=tpm,
        spend_cap_micros=cap,
    )
    return rid, r.code, r.retry_after_ms


async def test_concurrent_reservations_never_exceed_the_balance(state: BalanceState) -> None:
    account = await _account(state, 1_000, "key_a", "key_b")
    results = await asyncio.gather(
        *(_admit(state, account, "key_a" if i % 2 else "key_b", reserve=70) for i in range(100))
    )
    allowed = [rid for rid, code, _ in results if code is AdmitCode.ALLOWED]
    refused = [code for _, code, _ in results if code is not AdmitCode.ALLOWED]
    assert len(allowed) == 1_000 // 70
    assert set(refused) == {AdmitCode.INSUFFICIENT_BALANCE}
    snap = await state.account_state(account)
    assert snap.held_micros == 70 * len(allowed) <= 1_000
    assert set(snap.reservations) == set(allowed)


async def test_settlement_charges_and_releases_in_one_step(state: BalanceState) -> None:
    account = await _account(state, 100, "key_a")
    rid, code, _ = await _admit(state, account, "key_a", reserve=80)
    assert code is AdmitCode.ALLOWED
    assert (await _admit(state, account, "key_a", reserve=30))[1] is AdmitCode.INSUFFICIENT_BALANCE

    result = await state.publish(account_id=account, balance_micros=55, version=2, release_request_id=rid)
    assert result.balance_applied
    assert result.released_micros == 80
    snap = await state.account_state(account)
    assert (snap.balance_micros, snap.held_micros, snap.reservations) == (55, 0, {})
    assert (await _admit(state, account, "key_a", reserve=55))[1] is AdmitCode.ALLOWED

    again = await state.publish(account_id=account, balance_micros=55, version=2, release_request_id=rid)
    assert not again.balance_applied
    assert again.released_micros is None


async def test_an_older_balance_never_overwrites_a_newer_one(state: BalanceState) -> None:
    account = await _account(state, 100)
    assert (await state.publish(account_id=account, balance_micros=300, version=5)).balance_applied
    assert not (await state.publish(account_id=account, balance_micros=200, version=4)).balance_applied
    assert (await state.account_state(account)).balance_micros == 300
    assert not await state.seed_balance(account, 7)
    assert (await state.account_state(account)).balance_micros == 300


async def test_seeded_balance_yields_to_any_published_version(state: BalanceState) -> None:
    account = new_id("acct")
    await state.publish_key_generation(account, "key_a", 1)
    assert (await _admit(state, account, "key_a", reserve=1))[1] is AdmitCode.NO_BALANCE_STATE
    assert await state.seed_balance(account, 40)
    assert (await _admit(state, account, "key_a", reserve=40))[1] is AdmitCode.ALLOWED
    assert (await state.publish(account_id=account, balance_micros=90, version=1)).balance_applied
    assert (await state.account_state(account)).balance_micros == 90


async def test_zero_balance_refuses_even_free_requests(state: BalanceState) -> None:
    account = await _account(state, 0, "key_a")
    assert (await _admit(state, account, "key_a", reserve=0))[1] is AdmitCode.INSUFFICIENT_BALANCE
    await state.publish(account_id=account, balance_micros=1, version=2)
    assert (await _admit(state, account, "key_a", reserve=0))[1] is AdmitCode.ALLOWED


async def test_expired_reservations_stop_holding_the_balance(redis: Redis) -> None:
    state = BalanceState(redis, reservation_ttl_ms=200)
    account = await _account(state, 100, "key_a")
    rid, code, _ = await _admit(state, account, "key_a", reserve=100)
    assert code is AdmitCode.ALLOWED
    assert (await _admit(state, account, "key_a", reserve=1))[1] is AdmitCode.INSUFFICIENT_BALANCE
    deadline = asyncio.get_running_loop().time() + 10
    while (await _admit(state, account, "key_a", reserve=100))[1] is not AdmitCode.ALLOWED:
        assert asyncio.get_running_loop().time() < deadline, "reservation never expired"
        await asyncio.sleep(0.05)
    assert rid not in (await state.account_state(account)).reservations
    # A late usage event for the expired reservation releases nothing.
    assert (await state.publish(account_id=account, release_request_id=rid)).released_micros is None


async def test_rpm_is_exact_under_concurrency(state: BalanceState) -> None:
    account = await _account(state, 10**9, "key_a")
    results = await asyncio.gather(*(_admit(state, account, "key_a", rpm=5) for _ in range(50)))
    codes = [code for _, code, _ in results]
    assert codes.count(AdmitCode.ALLOWED) == 5
    assert codes.count(AdmitCode.RATE_LIMITED_REQUESTS) == 45
    retry = [ra for _, code, ra in results if code is AdmitCode.RATE_LIMITED_REQUESTS]
    assert all(0 < ra <= 60_000 for ra in retry)


async def test_tpm_counts_estimates_and_settles_to_actual(state: BalanceState) -> None:
    account = await _account(state, 10**9, "key_a")
    first, code, _ = await _admit(state, account, "key_a", tokens=600, tpm=1000)
    assert code is AdmitCode.ALLOWED
    _, code, retry = await _admit(state, account, "key_a", tokens=600, tpm=1000)
    assert code is AdmitCode.RATE_LIMITED_TOKENS
    assert 0 < retry <= 60_000
    assert (
        await state.settle_tokens(account_id=account, key_id="key_a", request_id=first, actual_tokens=100)
        == -500
    )
    assert (await _admit(state, account, "key_a", tokens=600, tpm=1000))[1] is AdmitCode.ALLOWED
    raw = await state.redis.hget(window_tokens_key(account, "key_a"), "=sum")
    assert int(raw) == 700


async def test_tokens_are_counted_only_for_keys_with_a_window(state: BalanceState) -> None:
    account = await _account(state, 10**9, "key_a")
    common = {"account_id": account, "key_id": "key_a", "generation": 1, "tokens": 40, "reserve_micros": 1}
    free = await state.admit(request_id=new_request_id(), rpm=0, tpm=0, spend_cap_micros=0, **common)  # type: ignore[arg-type]
    limited = await state.admit(request_id=new_request_id(), rpm=0, tpm=100, spend_cap_micros=0, **common)  # type: ignore[arg-type]
    assert (free.code, free.reserved_tokens) == (AdmitCode.ALLOWED, 0)
    assert (limited.code, limited.reserved_tokens) == (AdmitCode.ALLOWED, 40)


async def test_a_request_larger_than_the_tpm_limit_runs_alone(state: BalanceState) -> None:
    account = await _account(state, 10**9, "key_a")
    assert (await _admit(state, account, "key_a", tokens=5000, tpm=1000))[1] is AdmitCode.ALLOWED
    assert (await _admit(state, account, "key_a", tokens=1, tpm=1000))[1] is AdmitCode.RATE_LIMITED_TOKENS


async def test_windows_slide(redis: Redis) -> None:
    state = BalanceState(redis, window_ms=300)
    account = await _account(state, 10**9, "key_a")
    assert (await _admit(state, account, "key_a", rpm=1))[1] is AdmitCode.ALLOWED
    _, code, retry = await _admit(state, account, "key_a", rpm=1)
    assert code is AdmitCode.RATE_LIMITED_REQUESTS
    assert 0 < retry <= 300
    deadline = asyncio.get_running_loop().time() + 10
    while (await _admit(state, account, "key_a", rpm=1))[1] is not AdmitCode.ALLOWED:
        assert asyncio.get_running_loop().time() < deadline, "window never slid"
        await asyncio.sleep(0.02)


async def test_spend_cap_counts_spent_and_outstanding(state: BalanceState) -> None:
    account = await _account(state, 10**9, "key_a")
    assert (await _admit(state, account, "key_a", reserve=10, cap=100))[1] is AdmitCode.NO_SPEND_STATE
    await state.seed_key_spent(account, "key_a", 50)
    rid, code, _ = await _admit(state, account, "key_a", reserve=40, cap=100)
    assert code is AdmitCode.ALLOWED
    assert (await _admit(state, account, "key_a", reserve=20, cap=100))[1] is AdmitCode.SPEND_CAP_EXCEEDED
    await state.publish(
        account_id=account,
        balance_micros=10**9 - 30,
        version=2,
        release_request_id=rid,
        key_id="key_a",
        key_spent_micros=80,
    )
    assert (await _admit(state, account, "key_a", reserve=20, cap=100))[1] is AdmitCode.ALLOWED
    # Spend only grows: a stale seed cannot lower it.
    await state.seed_key_spent(account, "key_a", 10)
    assert (await _admit(state, account, "key_a", reserve=1, cap=100))[1] is AdmitCode.SPEND_CAP_EXCEEDED


async def test_key_generation_mismatch_is_stale(state: BalanceState) -> None:
    account = await _account(state, 100, "key_a")
    assert (await _admit(state, account, "key_a", reserve=1))[1] is AdmitCode.ALLOWED
    await state.publish_key_generation(account, "key_a", 2)
    assert (await _admit(state, account, "key_a", reserve=1))[1] is AdmitCode.STALE_KEY
    assert (await _admit(state, account, "key_a", reserve=1, generation=2))[1] is AdmitCode.ALLOWED
    await state.publish_key_generation(account, "key_a", 1)  # never goes back
    assert (await _admit(state, account, "key_a", reserve=1, generation=2))[1] is AdmitCode.ALLOWED
    assert (await _admit(state, account, "unknown", reserve=1))[1] is AdmitCode.STALE_KEY


async def test_admitting_the_same_request_twice_counts_it_once(state: BalanceState) -> None:
    account = await _account(state, 100, "key_a")
    rid, code, _ = await _admit(state, account, "key_a", reserve=60, rpm=1)
    assert code is AdmitCode.ALLOWED
    again = await state.admit(
        account_id=account,
        key_id="key_a",
        generation=1,
        request_id=rid,
        tokens=10,
        reserve_micros=60,
        rpm=1,
        tpm=0,
        spend_cap_micros=0,
    )
    assert again.code is AdmitCode.ALLOWED
    assert again.reserved_micros == 60
    assert (await state.account_state(account)).held_micros == 60


async def test_large_amounts_keep_exact_integers(state: BalanceState) -> None:
    big = 9_000_000_000_000_000  # 9e15 micros, above what Lua would print without an exponent
    account = await _account(state, big, "key_a")
    rid, code, _ = await _admit(state, account, "key_a", reserve=123_456_789_012_345)
    assert code is AdmitCode.ALLOWED
    assert (await state.account_state(account)).held_micros == 123_456_789_012_345
    assert (
        await state.publish(account_id=account, release_request_id=rid)
    ).released_micros == 123_456_789_012_345
    assert (await state.account_state(account)).held_micros == 0


async def test_publish_many_releases_and_publishes_in_one_round_trip(state: BalanceState) -> None:
    a = await _account(state, 1_000, "key_a")
    b = await _account(state, 500, "key_b")
    ra, _, _ = await _admit(state, a, "key_a", reserve=300)
    rb, _, _ = await _admit(state, b, "key_b", reserve=200)
    results = await state.publish_many(
        [
            Publish(a, 800, 2, ra, "key_a", 200),
            Publish(b, 450, 2, rb, "key_b", 50),
            Publish(b, 300, 1, "req_unknown"),
        ]
    )
    assert [(r.balance_applied, r.released_micros) for r in results] == [
        (True, 300),
        (True, 200),
        (False, None),
    ]
    for account, balance in ((a, 800), (b, 450)):
        snap = await state.account_state(account)
        assert (snap.balance_micros, snap.held_micros) == (balance, 0)
    assert await state.publish_many([]) == []


async def test_admission_goes_through_the_pipelined_connection_when_there_is_one(redis: Redis) -> None:
    # Everything else still reaches Redis through redis-py; only admission is sent to port 9.
    nowhere = PipelinedRedis("redis://127.0.0.1:9/0", timeout=5)
    state = BalanceState(redis, pipelined=nowhere)
    account = await _account(state, 1_000_000, "k1")
    with pytest.raises(RedisConnectionError):
        await _admit(state, account, "k1")
