"""The Kafka loop: each UsageEvent becomes at most one charge (unique request id) and releases
the request's reservation.

Records of one polled batch are decoded and validated one by one (a poison record goes to the
dead-letter topic on its own), collected, and charged in one database transaction just before
the consumer commits their offsets; then the new balances are published and the reservations
released. If that fails, the consumer delivers the batch again, and the duplicates change
nothing."""

from __future__ import annotations

from aiokafka import ConsumerRecord
from google.protobuf.message import DecodeError

from crossmodel.events.v1 import usage_event_pb2
from crossmodel_billing.domain.billing import Billing
from crossmodel_billing.domain.ledger import Charge, InvalidEvent, validate_charge
from crossmodel_common.kafka import IdempotentConsumer, PoisonMessage
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


class ChargeBatch:
    def __init__(self, billing: Billing) -> None:
        self._billing = billing
        self._pending: list[Charge] = []
        self.settled = 0  # events made durable and published (tests and operators read it)
        self.charged = 0  # of which new charges

    async def handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            event = usage_event_pb2.UsageEvent.FromString(record.value or b"")
        except DecodeError as exc:
            raise PoisonMessage(f"undecodable UsageEvent: {exc}") from exc
        charge = charge_from_event(event)
        try:
            validate_charge(charge)
        except InvalidEvent as exc:
            raise PoisonMessage(f"invalid UsageEvent: {exc}") from exc
        self._pending.append(charge)

    async def flush(self) -> None:
        # Taken before the await: if the flush fails, the consumer redelivers the batch and the
        # handler collects it again.
        pending, self._pending = self._pending, []
        if not pending:
            return
        outcomes = await self._billing.settle(pending)
        self.settled += len(pending)
        self.charged += sum(o.applied for o in outcomes)


def make_consumer(
    bootstrap: str, topic: str, dlq_topic: str, batch: ChargeBatch, *, group: str = "billing"
) -> IdempotentConsumer:
    return IdempotentConsumer(
        bootstrap, topic, group, batch.handle, dlq_topic=dlq_topic, before_commit=batch.flush
    )
