"""The Kafka loop: each UsageEvent becomes at most one charge (unique request id) and releases
the request's reservation. The consumer helper commits offsets only after the handler returned,
i.e. after the database commit and the Redis publish; a redelivered event changes nothing."""

from __future__ import annotations

from aiokafka import ConsumerRecord
from google.protobuf.message import DecodeError

from crossmodel.events.v1 import usage_event_pb2
from crossmodel_billing.domain.billing import Billing
from crossmodel_billing.domain.ledger import Charge, InvalidEvent
from crossmodel_common.kafka import Handler, IdempotentConsumer, PoisonMessage
from crossmodel_common.logging import get_logger

log = get_logger(__name__)


def charge_from_event(event: usage_event_pb2.UsageEvent) -> Charge:
    # The router priced the usage (crossmodel_common.money) and the edge showed that cost to the
    # user; billing charges exactly it and never re-prices.
    return Charge(
        request_id=event.request_id,
        account_id=event.account_id,
        key_id=event.key_id,
        model=event.model,
        cost_micros=event.cost_micros,
        description=f"{event.model} {event.input_tokens} in / {event.output_tokens} out tokens",
    )


def make_handler(billing: Billing) -> Handler:
    async def handle(record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            event = usage_event_pb2.UsageEvent.FromString(record.value or b"")
        except DecodeError as exc:
            raise PoisonMessage(f"undecodable UsageEvent: {exc}") from exc
        try:
            outcome = await billing.settle(charge_from_event(event))
        except InvalidEvent as exc:
            raise PoisonMessage(f"invalid UsageEvent: {exc}") from exc
        if outcome is not None and not outcome.applied:
            log.debug("duplicate usage event skipped", account_id=event.account_id)

    return handle


def make_consumer(
    bootstrap: str, topic: str, dlq_topic: str, billing: Billing, *, group: str = "billing"
) -> IdempotentConsumer:
    return IdempotentConsumer(bootstrap, topic, group, make_handler(billing), dlq_topic=dlq_topic)
