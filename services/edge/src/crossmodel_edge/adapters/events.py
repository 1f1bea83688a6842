"""Usage events to Kafka (through the durable spool) and fire-and-forget calls that must not
hold up a response."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from crossmodel.events.v1 import usage_event_pb2
from crossmodel_common.kafka import OutgoingRecord, SpooledProducer, trace_headers
from crossmodel_common.logging import get_logger

log = get_logger(__name__)
_tracer = trace.get_tracer("crossmodel.edge")


class UsagePublisher:
    """Turns usage events into records for the spooled producer, which puts each in its spool
    as it comes and sends them in groups (its linger)."""

    def __init__(self, producer: SpooledProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self.handed = 0  # records given to the producer by this process

    def publish(self, event: usage_event_pb2.UsageEvent) -> None:
        """Enqueue one event, keyed by account so an account's events stay in order. The
        PRODUCER span's context goes in the headers, so the consumers continue this trace."""
        with _tracer.start_as_current_span(
            f"{self.topic} publish",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "send",
                "messaging.destination.name": self.topic,
            },
        ):
            headers = trace_headers(event.request_id)
        record = OutgoingRecord(self.topic, event.account_id.encode(), event.SerializeToString(), headers)
        self.handed += 1
        self.producer.publish(record)

    def close(self) -> None:
        """Send what is grouped now, without waiting for the linger (at shutdown)."""
        self.producer.seal()

    async def delivered(self, timeout: float) -> bool:
        """Wait (at most `timeout`) until the broker acknowledged every record handed over, so
        that stopping the producer does not cut a send in flight. Records replayed from an
        older spool count as sent too, so this can end early; what is not sent then stays in
        the spool for the next start."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.producer.sent < self.handed or self.producer.pending_segments:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True


class Background:
    """Tasks nobody awaits (auth.Settle): kept referenced, failures logged, drained on shutdown."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, call: Awaitable[Any], what: str) -> None:
        task = asyncio.ensure_future(call)
        task.set_name(what)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("background call failed", call=task.get_name(), error=repr(exc))

    def __len__(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout: float) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
