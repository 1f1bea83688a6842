"""UsageEvent (the Kafka payload and the API's request shape) ⇄ UsageRecord."""

from __future__ import annotations

import dataclasses

from crossmodel.events.v1 import usage_event_pb2 as events_pb2
from crossmodel_usage.domain.records import Status, UsageRecord

_STATUS_FROM_WIRE = {
    events_pb2.REQUEST_STATUS_SUCCEEDED: Status.SUCCEEDED,
    events_pb2.REQUEST_STATUS_FAILED: Status.FAILED,
    events_pb2.REQUEST_STATUS_CANCELLED: Status.CANCELLED,
}
_STATUS_TO_WIRE = {v: k for k, v in _STATUS_FROM_WIRE.items()}
# Fields named the same on both sides; the rest are mapped by hand below.
_SAME = tuple(
    f.name
    for f in dataclasses.fields(UsageRecord)
    if f.name not in ("status", "started_at_ms", "finished_at_ms")
)


def record_from_event(event: events_pb2.UsageEvent) -> UsageRecord:
    return UsageRecord(
        **{name: getattr(event, name) for name in _SAME},
        status=_STATUS_FROM_WIRE.get(event.status, Status.UNSPECIFIED),
        started_at_ms=event.started_at_unix_ms,
        finished_at_ms=event.finished_at_unix_ms,
    )


def event_from_record(record: UsageRecord) -> events_pb2.UsageEvent:
    return events_pb2.UsageEvent(
        **{name: getattr(record, name) for name in _SAME},
        status=_STATUS_TO_WIRE.get(record.status, events_pb2.REQUEST_STATUS_UNSPECIFIED),
        started_at_unix_ms=record.started_at_ms,
        finished_at_unix_ms=record.finished_at_ms,
    )
