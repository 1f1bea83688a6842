"""BillingService and the usage consumer on real PostgreSQL, Redis and a Kafka-protocol broker:
idempotent top-ups and charges, redelivery, reservation release, dead-lettering."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from redis.asyncio import Redis

from crossmodel.billing.v1 import billing_pb2 as pb
from crossmodel.events.v1 import usage_event_pb2 as ev
from crossmodel_billing.__main__ import Running
from crossmodel_common.balance_state import AdmitCode, BalanceState, balance_key
from crossmodel_common.ids import new_id, new_request_id
from crossmodel_devstack.broker import TansuBroker
from crossmodel_devstack.harness import eventually


def _event(
    account_id: str,
    cost: int,
    *,
    key_id: str = "key_a",
    reserved: int = 0,
    status: ev.RequestStatus.ValueType = ev.REQUEST_STATUS_SUCCEEDED,
) -> ev.UsageEvent:
    return ev.UsageEvent(
        request_id=new_request_id(),
        account_id=account_id,
        key_id=key_id,
        model="openai/gpt-4o-mini",
        status=status,
        input_tokens=100,
        output_tokens=20,
        cost_micros=cost,
        reserved_micros=reserved,
    )


async def _produce(bootstrap: str, topic: str, values: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in values:
            await producer.send_and_wait(topic, value=value, key=key, headers=[("x-request-id", b"req_test")])
    finally:
        await producer.stop()


async def _top_up(stub: object, account_id: str, amount: int, key: str | None = None) -> pb.TopUpResponse:
    resp: pb.TopUpResponse = await stub.TopUp(  # type: ignore[attr-defined]
        pb.TopUpRequest(account_id=account_id, amount_micros=amount, idempotency_key=key or new_id("idem"))
    )
    return resp


async def _reserve(wallet: BalanceState, account_id: str, request_id: str, micros: int) -> None:
    await wallet.publish_key_generation(account_id, "key_a", 1)
    r = await wallet.admit(
        account_id=account_id,
        key_id="key_a",
        generation=1,
        request_id=request_id,
        tokens=0,
        reserve_micros=micros,
        rpm=0,
        tpm=0,
        spend_cap_micros=0,
    )
    assert r.code is AdmitCode.ALLOWED


async def test_a_top_up_replayed_with_its_key_credits_once(
    start_billing: object, wallet: BalanceState
) -> None:
    _, stub = await start_billing()  # type: ignore[operator]
    account = new_id("acct")
    assert (await stub.GetBalance(pb.GetBalanceRequest(account_id=account))).balance_micros == 0

    first = await _top_up(stub, account, 5_000_000, "pay_1")
    again = await _top_up(stub, account, 5_000_000, "pay_1")
    assert (first.replayed, again.replayed) == (False, True)
    assert first.entry.id == again.entry.id
    assert first.balance_micros == again.balance_micros == 5_000_000
    assert first.entry.kind == pb.ENTRY_KIND_TOP_UP
    assert first.entry.balance_after_micros == 5_000_000

    concurrent = await asyncio.gather(*(_top_up(stub, account, 1_000, "pay_2") for _ in range(10)))
    assert sum(not r.replayed for r in concurrent) == 1

    balance = await stub.GetBalance(pb.GetBalanceRequest(account_id=account))
    assert balance.balance_micros == 5_001_000
    assert balance.total_credited_micros == 5_001_000
    assert balance.currency == "USD"
    ledger = (await stub.ListLedger(pb.ListLedgerRequest(account_id=account))).entries
    assert [e.amount_micros for e in ledger] == [1_000, 5_000_000]
    assert [e.balance_after_micros for e in ledger] == [5_001_000, 5_000_000]
    assert (await wallet.account_state(account)).balance_micros == 5_001_000

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _top_up(stub, account, 7, "pay_1")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    for bad in (
        pb.TopUpRequest(account_id=account, amount_micros=5),
        pb.TopUpRequest(account_id=account, amount_micros=0, idempotency_key="k"),
        pb.TopUpRequest(account_id=account, amount_micros=-5, idempotency_key="k"),
        pb.TopUpRequest(account_id="", amount_micros=5, idempotency_key="k"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.TopUp(bad)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_adjustments_may_be_negative(start_billing: object) -> None:
    _, stub = await start_billing()  # type: ignore[operator]
    account = new_id("acct")
    await _top_up(stub, account, 1_000)
    adj = await stub.TopUp(
        pb.TopUpRequest(
            account_id=account,
            amount_micros=-300,
            idempotency_key="fix-1",
            description="refund",
            adjustment=True,
        )
    )
    assert adj.entry.kind == pb.ENTRY_KIND_ADJUSTMENT
    assert adj.balance_micros == 700
    assert adj.entry.description == "refund"


async def test_usage_events_charge_once_and_release_reservations(
    start_billing: object, wallet: BalanceState, broker: TansuBroker, topics: tuple[str, str]
) -> None:
    running, stub = await start_billing()  # type: ignore[operator]
    account = new_id("acct")
    await _top_up(stub, account, 1_000_000)
    charged = _event(account, 250_000, reserved=400_000)
    await _reserve(wallet, account, charged.request_id, 400_000)
    failed = _event(account, 0, reserved=300_000, status=ev.REQUEST_STATUS_CANCELLED)
    await _reserve(wallet, account, failed.request_id, 300_000)
    assert (await wallet.account_state(account)).held_micros == 700_000

    payload = charged.SerializeToString()
    await _produce(
        broker.bootstrap,
        topics[0],
        [
            (account.encode(), payload),
            (account.encode(), failed.SerializeToString()),
            (account.encode(), payload),
        ],
    )

    async def settled() -> bool:
        return running.charges.settled >= 3

    await eventually(settled)
    balance = await stub.GetBalance(pb.GetBalanceRequest(account_id=account))
    assert balance.balance_micros == 750_000
    assert balance.total_charged_micros == 250_000
    ledger = (await stub.ListLedger(pb.ListLedgerRequest(account_id=account))).entries
    charges = [e for e in ledger if e.kind == pb.ENTRY_KIND_CHARGE]
    assert len(charges) == 1
    assert (charges[0].request_id, charges[0].amount_micros) == (charged.request_id, -250_000)
    assert charges[0].balance_after_micros == 750_000
    assert charges[0].key_id == "key_a"
    state = await wallet.account_state(account)
    assert (state.balance_micros, state.held_micros, state.reservations) == (750_000, 0, {})
    assert (await stub.GetKeySpend(pb.GetKeySpendRequest(key_id="key_a"))).spent_micros >= 250_000


async def test_redelivering_the_whole_topic_changes_nothing(
    start_billing: object, broker: TansuBroker, topics: tuple[str, str]
) -> None:
    running, stub = await start_billing()  # type: ignore[operator]
    accounts = [new_id("acct") for _ in range(3)]
    for account in accounts:
        await _top_up(stub, account, 10_000_000)
    events = [_event(accounts[i % 3], 1_000 + i, key_id=f"key_{i % 3}") for i in range(30)]
    await _produce(
        broker.bootstrap, topics[0], [(e.account_id.encode(), e.SerializeToString()) for e in events]
    )

    async def consumed() -> bool:
        return running.charges.settled >= 30

    await eventually(consumed)

    async def snapshot() -> list[tuple[int, int]]:
        out = []
        for account in accounts:
            b = await stub.GetBalance(pb.GetBalanceRequest(account_id=account))
            n = len((await stub.ListLedger(pb.ListLedgerRequest(account_id=account, limit=1000))).entries)
            out.append((b.balance_micros, n))
        return out

    before = await snapshot()
    assert sum(10_000_000 - b for b, _ in before) == sum(e.cost_micros for e in events)
    assert sum(n for _, n in before) == 30 + 3

    # A second consumer group reads the whole topic again from the beginning, and the first
    # group sees every event once more as well.
    replay, _ = await start_billing()  # type: ignore[operator]
    await _produce(
        broker.bootstrap, topics[0], [(e.account_id.encode(), e.SerializeToString()) for e in events]
    )

    async def replayed() -> bool:
        return replay.charges.settled >= 60 and running.charges.settled >= 60

    await eventually(replayed)
    assert await snapshot() == before
    assert (running.charges.charged, replay.charges.charged) == (30, 0)


async def test_poison_events_go_to_the_dead_letter_topic(
    start_billing: object, broker: TansuBroker, topics: tuple[str, str]
) -> None:
    running, stub = await start_billing()  # type: ignore[operator]
    account = new_id("acct")
    await _top_up(stub, account, 1_000)
    good = _event(account, 10)
    no_request_id = _event(account, 10)
    no_request_id.request_id = ""
    negative = _event(account, -10)
    await _produce(
        broker.bootstrap,
        topics[0],
        [
            (b"x", b"\xff\xff\xff\xff not a protobuf"),
            (account.encode(), no_request_id.SerializeToString()),
            (account.encode(), negative.SerializeToString()),
            (account.encode(), good.SerializeToString()),
        ],
    )

    async def done() -> bool:
        return running.consumer.dead_lettered >= 3 and running.charges.settled >= 1

    await eventually(done)
    assert (await stub.GetBalance(pb.GetBalanceRequest(account_id=account))).balance_micros == 990

    consumer = AIOKafkaConsumer(
        topics[1], bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest", group_id=new_id("dlq")
    )
    await consumer.start()
    try:
        got: list[object] = []
        deadline = asyncio.get_running_loop().time() + 30
        while len(got) < 3 and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got.extend(records)
    finally:
        await consumer.stop()
    assert len(got) == 3
    reasons = [dict(r.headers)["crossmodel-dlq-reason"].decode() for r in got]  # type: ignore[attr-defined]
    assert any("request_id" in r for r in reasons)
    assert any("negative" in r for r in reasons)


async def test_concurrent_deliveries_of_one_event_charge_once(start_billing: object) -> None:
    running, stub = await start_billing()  # type: ignore[operator]
    assert isinstance(running, Running)
    account = new_id("acct")
    await _top_up(stub, account, 1_000)
    from crossmodel_billing.consumer import charge_from_event

    charge = charge_from_event(_event(account, 100))
    outcomes = await asyncio.gather(*(running.billing.settle([charge]) for _ in range(10)))
    assert sum(o.applied for (o,) in outcomes) == 1
    assert (await stub.GetBalance(pb.GetBalanceRequest(account_id=account))).balance_micros == 900


async def test_a_batch_charges_each_request_once_with_its_own_balance_history(start_billing: object) -> None:
    running, stub = await start_billing()  # type: ignore[operator]
    assert isinstance(running, Running)
    from crossmodel_billing.consumer import charge_from_event

    a, b = new_id("acct"), new_id("acct")
    await _top_up(stub, a, 1_000)
    first = charge_from_event(_event(a, 100))
    batch = [first, charge_from_event(_event(b, 7)), first, charge_from_event(_event(a, 50, key_id="key_z"))]
    outcomes = await running.billing.settle(batch)
    assert [o.applied for o in outcomes] == [True, True, True]
    assert [o.balance.balance_micros for o in outcomes] == [850, -7, 850]
    again = await running.billing.settle(batch)
    assert [o.applied for o in again] == [False, False, False]

    ledger = (await stub.ListLedger(pb.ListLedgerRequest(account_id=a))).entries
    history = sorted((e.amount_micros, e.balance_after_micros) for e in ledger)
    assert history == [(-100, 900), (-50, 850), (1_000, 1_000)]
    assert (await stub.GetBalance(pb.GetBalanceRequest(account_id=b))).balance_micros == -7
    assert (await stub.GetKeySpend(pb.GetKeySpendRequest(key_id="key_z"))).spent_micros >= 50


async def test_balances_are_republished_on_start(
    start_billing: object, redis: Redis, wallet: BalanceState
) -> None:
    _, stub = await start_billing()  # type: ignore[operator]
    account = new_id("acct")
    await _top_up(stub, account, 4_242)
    await redis.delete(balance_key(account))  # as if Redis had restarted empty
    assert (await wallet.account_state(account)).balance_micros is None

    await start_billing()  # type: ignore[operator]

    async def healed() -> bool:
        return (await wallet.account_state(account)).balance_micros == 4_242

    await eventually(healed)
