"""The Kafka loop: each UsageEvent on the usage topic becomes one request-log row and its share
of the daily aggregates. The records of one polled batch are decoded and checked one by one (a
poison record goes to the dead-letter topic on its own), collected, and written in one statement
and one durable transaction just before the consumer commits their offsets. If that fails, the
batch is delivered again; redelivered events find their request id stored and change nothing."""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaError
from google.protobuf.message import DecodeError

from crossmodel.events.v1 import usage_event_pb2 as events_pb2
from crossmodel_common.kafka import IdempotentConsumer, PoisonMessage, Rejected
from crossmodel_common.logging import get_logger
from crossmodel_usage.adapters.repository import UsageRepository
from crossmodel_usage.domain.records import InvalidRecord, UsageRecord, normalize
from crossmodel_usage.wire import record_from_event

log = get_logger(__name__)

GROUP = "usage"


class UsageBatch:
    """Collects a polled batch's records (`handle`) and stores them together (`flush`)."""

    def __init__(self, repository: UsageRepository) -> None:
        self._repository = repository
        self._pending: list[tuple[ConsumerRecord[bytes, bytes], UsageRecord]] = []
        self.stored = 0  # records written by this process that were new (operators, tests)

    async def handle(self, message: ConsumerRecord[bytes, bytes]) -> None:
        try:
            event = events_pb2.UsageEvent.FromString(message.value or b"")
        except DecodeError as exc:
            raise PoisonMessage(f"undecodable UsageEvent: {exc}") from exc
        try:
            record = normalize(record_from_event(event), fallback_time_ms=max(message.timestamp, 0))
        except InvalidRecord as exc:
            raise PoisonMessage(f"invalid UsageEvent: {exc}") from exc
        self._pending.append((message, record))

    async def flush(self) -> list[Rejected]:
        """Store the collected records; those the database refuses are returned, to be
        dead-lettered. Any other failure raises, and the consumer delivers the batch again."""
        # Taken before the await: if the write fails, the redelivered batch is collected anew.
        pending, self._pending = self._pending, []
        if not pending:
            return []
        try:
            self.stored += await self._repository.record_many([r for _, r in pending])
            return []
        except InvalidRecord:
            pass
        # The database refused a value somewhere in the batch, and stored none of it: one record
        # at a time tells which (rare; normalize() keeps values inside the columns' bounds).
        rejected: list[Rejected] = []
        for message, record in pending:
            try:
                self.stored += await self._repository.record(record)
            except InvalidRecord as exc:
                log.warning("usage event refused by the database", request_id=record.request_id)
                rejected.append(Rejected(message, f"invalid UsageEvent: {exc}"))
        return rejected


def make_consumer(
    bootstrap: str, topic: str, dlq_topic: str, repository: UsageRepository, *, group: str = GROUP
) -> IdempotentConsumer:
    batch = UsageBatch(repository)
    return IdempotentConsumer(
        bootstrap, topic, group, batch.handle, dlq_topic=dlq_topic, before_commit=batch.flush
    )


async def start_when_reachable(consumer: IdempotentConsumer, *, retry_seconds: float = 2.0) -> None:
    """Start `consumer`, retrying for as long as the broker is unreachable, so that the read API
    keeps serving meanwhile; events wait in the topic (and in the edge's spool)."""
    while True:
        try:
            await consumer.start()
            log.info("consuming", topic=consumer.topic, group=consumer.group)
            return
        except KafkaError as exc:
            log.warning("broker unreachable, retrying", error=str(exc), retry_seconds=retry_seconds)
            with contextlib.suppress(KafkaError):
                await consumer.stop()
            await asyncio.sleep(retry_seconds)
