"""Kafka helpers: a producer that never drops an event, and an idempotent-consumer loop.

Producer: `publish()` appends the record to the open spool segment on local disk and returns
(the hot path never waits for Kafka, nor for the disk). The segment is sealed after a linger
and sent by a background task; it is deleted only once the broker acknowledged every record in
it. Segments are written without waiting for the disk (a record survives a crash of the process
as soon as it is published, a crash of the machine once its segment is synced); a segment is
synced, with its directory, as soon as its send fails or is not acknowledged within
`sync_after`, and at once while the broker is unreachable, during which segments accumulate;
they are replayed in order when it returns, and on start-up anything left by a previous run is
replayed. Replays can duplicate records; consumers are idempotent.

Consumer: trace context and x-request-id come from the record headers, so each record is
processed in a CONSUMER span that continues the producer's trace. Offsets are committed only
after the handler's effect is durable. Records that can never be processed (undecodable,
invalid) go to a dead-letter topic instead of blocking the partition; other failures are
retried with backoff. A handler may only collect its records and write them once per batch, in
`before_commit`, which runs in a span linked to each record's span and may still turn records
away to the dead-letter topic.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from crossmodel_common.context import REQUEST_ID_HEADER, bind_request_id, reset_request_id
from crossmodel_common.logging import get_logger

log = get_logger(__name__)
_tracer = trace.get_tracer("crossmodel.kafka")

Headers = list[tuple[str, bytes]]


def trace_headers(request_id: str) -> Headers:
    """W3C trace context of the current span plus x-request-id, as Kafka headers."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    headers = [(k, v.encode()) for k, v in carrier.items()]
    headers.append((REQUEST_ID_HEADER, request_id.encode()))
    return headers


@dataclass(slots=True)
class _Segment:
    """A spool file not yet acknowledged, with its records when this process wrote it (None:
    left by an earlier run, read back from disk when sent), whether its bytes are in the file
    and whether they are on disk for sure."""

    path: Path
    records: list[OutgoingRecord] | None
    synced: bool
    written: bool = True


@dataclass(slots=True)
class OutgoingRecord:
    topic: str
    key: bytes
    value: bytes
    headers: Headers = field(default_factory=list)


# Spool frame: u32 total length, then u16 topic len, topic, u32 key len, key, u32 value len,
# value, u16 header count, then per header u16 name len, name, u32 value len, value.
def _encode_frame(rec: OutgoingRecord) -> bytes:
    parts = [struct.pack(">H", len(rec.topic.encode())), rec.topic.encode()]
    parts += [struct.pack(">I", len(rec.key)), rec.key, struct.pack(">I", len(rec.value)), rec.value]
    parts.append(struct.pack(">H", len(rec.headers)))
    for name, value in rec.headers:
        parts += [struct.pack(">H", len(name.encode())), name.encode(), struct.pack(">I", len(value)), value]
    body = b"".join(parts)
    return struct.pack(">I", len(body)) + body


class _Reader:
    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.pos = 0

    def num(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return int(value)

    def take(self, n: int) -> bytes:
        out = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return out


def _decode_frames(data: bytes) -> list[OutgoingRecord]:
    out: list[OutgoingRecord] = []
    pos = 0
    while pos + 4 <= len(data):
        (size,) = struct.unpack_from(">I", data, pos)
        if pos + 4 + size > len(data):
            break  # a torn last frame from a crash mid-write: it was never sent
        r = _Reader(memoryview(data)[pos + 4 : pos + 4 + size])
        topic = r.take(r.num(">H")).decode()
        key = r.take(r.num(">I"))
        value = r.take(r.num(">I"))
        headers = []
        for _ in range(r.num(">H")):
            name = r.take(r.num(">H")).decode()
            headers.append((name, r.take(r.num(">I"))))
        out.append(OutgoingRecord(topic, key, value, headers))
        pos += 4 + size
    return out


def _fsync(path: Path) -> None:
    """Wait until the file or directory at `path` is on disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _OpenSegment:
    """The segment `publish()` is appending to: its records, and its file while writing it
    works (None after a write failed: the records are then written whole when it is sealed)."""

    __slots__ = ("file", "path", "records")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[OutgoingRecord] = []
        self.file: BinaryIO | None = None


class SpooledProducer:
    """Asynchronous, batched, durable event producer (see module docstring).

    `publish()` appends each record to the open spool segment as it comes (one write into the
    page cache, no waiting for the disk), so a record survives a crash of this process from the
    moment it is published. The open segment is sealed `linger_seconds` after its first record
    (at the next turn of the event loop when 0) or at `max_batch` records, then sent in one
    produce request."""

    def __init__(
        self,
        bootstrap: str,
        spool_dir: str | Path,
        *,
        client_id: str = "crossmodel",
        enable_idempotence: bool = False,
        max_batch: int = 500,
        linger_seconds: float = 0.0,
        retry_seconds: float = 1.0,
        sync_after: float = 0.2,
    ) -> None:
        self._bootstrap = bootstrap
        self._spool = Path(spool_dir)
        self._client_id = client_id
        self._idempotence = enable_idempotence
        self._max_batch = max_batch
        self._linger = linger_seconds
        self._retry = retry_seconds
        self._sync_after = sync_after
        self._open: _OpenSegment | None = None
        self._sealer: asyncio.Handle | None = None
        self._sealed: asyncio.Queue[_Segment] = asyncio.Queue()
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self._seq = 0
        # Segments on disk not yet acknowledged, oldest first.
        self._pending: collections.deque[_Segment] = collections.deque()
        self._busy = False
        self.sent = 0

    def publish(self, record: OutgoingRecord) -> None:
        """Append to the open segment; never blocks on the broker and never raises."""
        segment = self._open
        if segment is None:
            segment = self._open = _OpenSegment(self._next_segment())
            try:
                segment.file = open(segment.path, "ab", buffering=0)  # noqa: SIM115 - closed on seal
            except OSError as exc:
                log.warning("spool not writable, events held in memory", error=str(exc))
            loop = asyncio.get_running_loop()
            if self._linger > 0:
                self._sealer = loop.call_later(self._linger, self.seal)
            else:
                self._sealer = loop.call_soon(self.seal)
        segment.records.append(record)
        if segment.file is not None:
            try:
                segment.file.write(_encode_frame(record))
            except OSError as exc:
                log.warning("spool write failed, events held in memory", error=str(exc))
                with contextlib.suppress(OSError):
                    segment.file.close()
                segment.file = None
        if len(segment.records) >= self._max_batch:
            self.seal()

    def seal(self) -> None:
        """Close the open segment and hand it to the sender (nothing to do when none is open)."""
        if self._sealer is not None:
            self._sealer.cancel()
            self._sealer = None
        segment, self._open = self._open, None
        if segment is None:
            return
        written = segment.file is not None
        if segment.file is not None:
            try:
                segment.file.close()
            except OSError:
                written = False
        if not written:
            # Not (wholly) on disk: the sender writes it, synced, before sending it.
            with contextlib.suppress(OSError):
                segment.path.unlink(missing_ok=True)
        self._sealed.put_nowait(_Segment(segment.path, segment.records, synced=False, written=written))

    @property
    def pending_segments(self) -> int:
        return len(self._pending)

    async def start(self) -> None:
        self._spool.mkdir(parents=True, exist_ok=True)
        # A durable write that a crash cut before its rename: its records were never sent under
        # the final name, so they go out now (a torn last frame is skipped when read).
        for tmp in self._spool.glob("*.tmp"):
            final = tmp.with_suffix(".spool")
            if final.exists():  # the same records are there already
                tmp.unlink()
            else:
                os.replace(tmp, final)
        existing = sorted(self._spool.glob("*.spool"))
        # Left by an earlier run: maybe only in the page cache, so synced if their send lags.
        self._pending.extend(_Segment(path, None, synced=False) for path in existing)
        self._seq = int(existing[-1].stem) + 1 if existing else 0
        self._task = asyncio.create_task(self._run(), name="usage-producer")

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap,
                client_id=self._client_id,
                acks="all",
                enable_idempotence=self._idempotence,
                # The records come in sealed segments already; each is sent at once.
                linger_ms=0,
                request_timeout_ms=10_000,
            )
            try:
                await producer.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            self._producer = producer
        return self._producer

    def _next_segment(self) -> Path:
        path = self._spool / f"{self._seq:020d}.spool"
        self._seq += 1
        return path

    @staticmethod
    def _sync_segment(path: Path) -> None:
        """Make a segment written without waiting for the disk, and its name, durable."""
        _fsync(path)
        _fsync(path.parent)

    @staticmethod
    def _write_segment(path: Path, records: Sequence[OutgoingRecord]) -> Path:
        """Write a segment durably: its bytes, then its final name."""
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(b"".join(_encode_frame(r) for r in records))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        # The rename is only durable once the directory is: without this, a power loss soon
        # after could leave the segment under its temporary name, which no start replays.
        _fsync(path.parent)
        return path

    async def _make_durable(self, segment: _Segment) -> None:
        """Write or sync `segment`; a disk that refuses leaves it in memory (still sent, lost
        only if this process dies before the broker has it)."""
        if segment.synced:
            return
        try:
            if not segment.written:
                assert segment.records is not None
                await asyncio.to_thread(self._write_segment, segment.path, segment.records)
                segment.written = True
            elif segment.path.exists():
                await asyncio.to_thread(self._sync_segment, segment.path)
        except OSError as exc:
            log.error("spool segment not durable, events held in memory", error=str(exc))
            return
        segment.synced = True

    async def _sync_pending(self) -> None:
        for segment in list(self._pending):
            await self._make_durable(segment)

    async def _send_records(self, records: list[OutgoingRecord]) -> None:
        producer = await self._ensure_producer()
        futures = [await producer.send(r.topic, value=r.value, key=r.key, headers=r.headers) for r in records]
        await asyncio.gather(*futures)

    async def _send_segment(self, segment: _Segment) -> None:
        records = segment.records
        if records is None:
            records = _decode_frames(await asyncio.to_thread(segment.path.read_bytes))
        sending = asyncio.ensure_future(self._send_records(records))
        try:
            if not segment.synced:
                # An acknowledgement that is slow in coming: the segment may wait a while, so it
                # is made durable meanwhile.
                done, _ = await asyncio.wait({sending}, timeout=self._sync_after)
                if not done:
                    await self._make_durable(segment)
            await sending
        except BaseException:
            sending.cancel()
            raise
        # unlink is one cheap syscall; a thread hop would cost more than it saves. A segment
        # that cannot be removed is sent again by the next start (consumers are idempotent).
        with contextlib.suppress(OSError):
            os.unlink(segment.path)
        self.sent += len(records)

    async def _drain_spool(self) -> bool:
        """Send every segment in order; False when the broker failed (segments kept)."""
        while self._pending:
            try:
                await self._send_segment(self._pending[0])
            except (TimeoutError, KafkaError, OSError) as exc:
                log.warning(
                    "kafka unavailable, events kept in spool", error=str(exc), segments=len(self._pending)
                )
                await self._sync_pending()
                await self._reset_producer()
                return False
            self._pending.popleft()
        return True

    async def _reset_producer(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
            self._producer = None

    def _track_sealed(self, *taken: _Segment) -> list[_Segment]:
        """Move `taken` and every segment still in the sealed queue to the pending ones."""
        segments = list(taken)
        while not self._sealed.empty():
            segments.append(self._sealed.get_nowait())
        self._pending.extend(segments)
        return segments

    async def _take_sealed(self, first: _Segment, *, healthy: bool) -> None:
        """Queue `first` and every other sealed segment for sending; written (synced) at once
        when they have to wait for the broker."""
        # Tracked first: a stop that cancels this midway still finds them (and writes them).
        segments = self._track_sealed(first)
        for segment in segments:
            if not healthy or not segment.written:
                await self._make_durable(segment)

    async def _run(self) -> None:
        healthy = await self._drain_spool()
        while True:
            first: _Segment | None
            if healthy:
                first = await self._sealed.get()
            else:
                try:
                    first = await asyncio.wait_for(self._sealed.get(), self._retry)
                except TimeoutError:
                    first = None
            self._busy = True
            try:
                if first is not None:
                    await self._take_sealed(first, healthy=healthy)
                healthy = await self._drain_spool()
            finally:
                self._busy = False

    async def flush(self, timeout: float = 5.0) -> bool:
        """Seal the open segment and wait until everything published so far reached the broker
        (True) or `timeout` passed (False; what is left stays on disk or queued)."""
        self.seal()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._open is not None or self._sealed.qsize() or self._pending or self._busy:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def stop(self, timeout: float = 5.0) -> None:
        """Give in-flight sends up to `timeout` to finish, write whatever is still queued to the
        spool, try once more to send, then stop. Nothing published is lost: what the broker did
        not acknowledge stays in the spool, synced, for the next start."""
        await self.flush(timeout)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.seal()
        self._track_sealed()
        with contextlib.suppress(asyncio.TimeoutError, Exception):
            await asyncio.wait_for(self._drain_spool(), timeout)
        # Whatever is left waits for the next start: on disk for sure.
        await self._sync_pending()
        await self._reset_producer()


class PoisonMessage(Exception):
    """Raised by a handler for a record that can never be processed: it goes to the DLQ."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that `before_commit` found can never be processed, and why: it goes to the DLQ."""

    record: ConsumerRecord[bytes, bytes]
    reason: str


Handler = Callable[[ConsumerRecord[bytes, bytes]], Awaitable[None]]
BeforeCommit = Callable[[], Awaitable[Sequence[Rejected] | None]]


def _header(record: ConsumerRecord[bytes, bytes], name: str) -> str:
    for k, v in record.headers or ():
        if k == name:
            return bytes(v).decode(errors="replace")
    return ""


class IdempotentConsumer:
    """Consume `topic` as `group`, one CONSUMER span per record in the producer's trace,
    committing after each processed batch. Handlers must be idempotent."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group: str,
        handler: Handler,
        *,
        dlq_topic: str,
        max_records: int = 200,
        retry_backoff: float = 0.5,
        before_commit: BeforeCommit | None = None,
    ) -> None:
        """`before_commit`, when given, runs after each batch's records were handled and before
        their offsets are committed: handlers may then make their effects durable once per
        batch instead of once per record. If it raises, the batch is delivered again. It may
        return records that can never be processed (`Rejected`), which are dead-lettered before
        the commit.

        `processed` counts the records whose effects are durable: handled, made durable by
        `before_commit`, and not rejected."""
        self._bootstrap = bootstrap
        self.topic = topic
        self.group = group
        self._handler = handler
        self.dlq_topic = dlq_topic
        self._max_records = max_records
        self._backoff = retry_backoff
        self._before_commit = before_commit
        self._consumer: AIOKafkaConsumer | None = None
        self._dlq: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self.processed = 0
        self.dead_lettered = 0
        self.loop_errors = 0
        self.ready = asyncio.Event()

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self._bootstrap,
            group_id=self.group,
            enable_auto_commit=False,
            # A new group starts from the beginning of the topic: usage that was produced before
            # this consumer group existed must still be billed (consumers are idempotent).
            auto_offset_reset="earliest",
            max_poll_records=self._max_records,
        )
        self._dlq = AIOKafkaProducer(bootstrap_servers=self._bootstrap, acks="all")
        await self._consumer.start()
        await self._dlq.start()
        self._task = asyncio.create_task(self._run(), name=f"consume-{self.topic}")

    async def _process(self, record: ConsumerRecord[bytes, bytes]) -> trace.SpanContext | None:
        """Handle `record` in its CONSUMER span; that span's context, or None when the record
        was dead-lettered."""
        carrier = {k: v.decode(errors="replace") for k, v in record.headers or ()}
        ctx = propagate.extract(carrier)
        token = bind_request_id(_header(record, REQUEST_ID_HEADER))
        attempt = 0
        try:
            with _tracer.start_as_current_span(
                f"{self.topic} process",
                context=ctx,
                kind=SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": self.topic,
                    "messaging.consumer.group.name": self.group,
                    "messaging.destination.partition.id": str(record.partition),
                    "messaging.kafka.offset": record.offset,
                },
            ) as span:
                while True:
                    try:
                        await self._handler(record)
                        return span.get_span_context()
                    except PoisonMessage as exc:
                        span.set_status(Status(StatusCode.ERROR, "dead-lettered"))
                        await self._dead_letter(record, str(exc))
                        return None
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:  # noqa: BLE001 - transient: retry, never skip
                        attempt += 1
                        log.warning(
                            "handler failed, retrying",
                            error=repr(exc),
                            attempt=attempt,
                            topic=self.topic,
                            partition=record.partition,
                            offset=record.offset,
                        )
                        await asyncio.sleep(min(self._backoff * 2 ** min(attempt, 6), 30))
        finally:
            reset_request_id(token)

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes], reason: str) -> None:
        assert self._dlq is not None
        headers = [
            *(record.headers or ()),
            ("crossmodel-dlq-reason", reason.encode()[:1000]),
            ("crossmodel-dlq-source", f"{record.topic}/{record.partition}/{record.offset}".encode()),
        ]
        attempt = 0
        while True:
            try:
                await self._dlq.send_and_wait(
                    self.dlq_topic, value=record.value, key=record.key, headers=headers
                )
                break
            except KafkaError as exc:
                # Until the record is safely in the DLQ its offset must not be committed, and
                # ending the loop would stop the whole partition: wait for the broker.
                attempt += 1
                log.warning("dead-letter send failed, retrying", error=repr(exc), attempt=attempt)
                await asyncio.sleep(min(self._backoff * 2 ** min(attempt, 6), 30))
        self.dead_lettered += 1
        log.error(
            "record dead-lettered",
            reason=reason,
            dlq=self.dlq_topic,
            partition=record.partition,
            offset=record.offset,
        )

    async def _run(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        while True:
            try:
                await self._poll_once(consumer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the loop must outlive any one failure
                # Whatever broke mid-batch, nothing after the last commit is skipped: rewind to
                # the committed offsets and deliver again (handlers are idempotent).
                self.loop_errors += 1
                log.error(
                    "consumer loop error, rewinding to committed offsets", error=repr(exc), topic=self.topic
                )
                await asyncio.sleep(self._backoff)
                with contextlib.suppress(Exception):
                    await consumer.seek_to_committed()

    async def _poll_once(self, consumer: AIOKafkaConsumer) -> None:
        batches = await consumer.getmany(timeout_ms=500, max_records=self._max_records)
        self.ready.set()
        if not batches:
            return
        offsets: dict[TopicPartition, int] = {}
        handled: list[trace.SpanContext] = []
        for tp, records in batches.items():
            for record in records:
                if (handled_in := await self._process(record)) is not None:
                    handled.append(handled_in)
                offsets[tp] = record.offset + 1
        rejected = 0
        if self._before_commit is not None:
            settled = await self._settle(consumer, batches, handled)
            if settled is None:
                return
            rejected = settled
        await self._commit(consumer, offsets)
        self.processed += len(handled) - rejected

    async def _settle(
        self,
        consumer: AIOKafkaConsumer,
        batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
        handled: list[trace.SpanContext],
    ) -> int | None:
        """Run before_commit in a span linked to the span of each record it settles, and
        dead-letter what it rejects (how many: an int); when it fails, rewind the batch's
        partitions so that it is delivered again (handlers are idempotent) and its offsets are
        not committed (None)."""
        assert self._before_commit is not None
        try:
            with _tracer.start_as_current_span(
                f"{self.topic} settle",
                # A batch span of its own, not a child of whatever was current.
                context=trace.set_span_in_context(trace.INVALID_SPAN),
                kind=SpanKind.CONSUMER,
                links=[trace.Link(c) for c in handled],
                attributes={
                    "messaging.system": "kafka",
                    "messaging.operation.type": "settle",
                    "messaging.destination.name": self.topic,
                    "messaging.consumer.group.name": self.group,
                    "messaging.batch.message_count": len(handled),
                },
            ):
                rejected = list(await self._before_commit() or ())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure: redeliver, never skip
            log.warning("batch not made durable, delivering it again", error=repr(exc), topic=self.topic)
            assigned = consumer.assignment()
            for tp, records in batches.items():
                if records and tp in assigned:
                    consumer.seek(tp, records[0].offset)
            await asyncio.sleep(self._backoff)
            return None
        for r in rejected:
            token = bind_request_id(_header(r.record, REQUEST_ID_HEADER))
            try:
                await self._dead_letter(r.record, r.reason)
            finally:
                reset_request_id(token)
        return len(rejected)

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        # When the group rebalanced while the batch was processed, some partitions now belong to
        # another member, which resumes them from the last commit: idempotent handlers make that
        # redelivery harmless, so only the partitions still ours are committed. Raising here
        # would end the loop and stall this member's partitions for good. The same holds for a
        # commit the broker could not take (unreachable, timed out): the next batch's commit
        # covers these offsets too, and until then a restart only redelivers.
        assigned = consumer.assignment()
        mine = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if not mine:
            return
        try:
            await consumer.commit(mine)
        except KafkaError as exc:
            log.warning("offset commit skipped", error=repr(exc), topic=self.topic)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()
        if self._dlq is not None:
            await self._dlq.stop()


def header_value(record: Any, name: str) -> str:
    return str(_header(record, name))
