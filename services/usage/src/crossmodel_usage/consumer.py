"""The Kafka loop: each UsageEvent on the usage topic becomes one request-log row and its share
of the daily aggregates. Each event is committed to the database on its own (atomically, without
waiting for the disk); once per batch the writes are made durable, and only then does the
consumer helper commit the batch's offsets. Redelivered events find their request id stored and
change nothing."""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaError
from google.protobuf.message import DecodeError

from crossmodel.events.v1 import usage_event_pb2 as events_pb2
from crossmodel_common.kafka import Handler, IdempotentConsumer, PoisonMessage
from crossmodel_common.logging import get_logger
from crossmodel_usage.adapters.repository import UsageRepository
from crossmodel_usage.domain.records import InvalidRecord, normalize
from crossmodel_usage.wire import record_from_event

log = get_logger(__name__)

GROUP = "usage"


def make_handler(repository: UsageRepository) -> Handler:
    async def handle(message: ConsumerRecord[bytes, bytes]) -> None:
        try:
            event = events_pb2.UsageEvent.FromString(message.value or b"")
        except DecodeError as exc:
            raise PoisonMessage(f"undecodable UsageEvent: {exc}") from exc
        try:
            record = normalize(record_from_event(event), fallback_time_ms=max(message.timestamp, 0))
            # Made durable once per batch, before the offsets are committed (see make_consumer).
            if not await repository.record(record, durable=False):
                log.debug("duplicate usage event skipped", request_id=record.request_id)
        except InvalidRecord as exc:
            raise PoisonMessage(f"invalid UsageEvent: {exc}") from exc

    return handle


def make_consumer(
    bootstrap: str, topic: str, dlq_topic: str, repository: UsageRepository, *, group: str = GROUP
) -> IdempotentConsumer:
    return IdempotentConsumer(
        bootstrap,
        topic,
        group,
        make_handler(repository),
        dlq_topic=dlq_topic,
        # One disk flush per batch instead of one per event (~100x the throughput where a flush
        # costs milliseconds); if it fails, the batch is delivered again and skipped as duplicates
        # where it was stored.
        before_commit=repository.make_durable,
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
