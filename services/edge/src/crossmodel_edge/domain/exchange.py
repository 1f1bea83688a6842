"""One admitted request as the edge saw it, and the usage event it becomes."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from crossmodel.events.v1 import usage_event_pb2 as ev
from crossmodel.router.v1 import router_pb2
from crossmodel_common.money import cost_micros
from crossmodel_edge.domain.admission import Admission
from crossmodel_edge.domain.catalog import ModelInfo
from crossmodel_protocols.canonical import Protocol
from crossmodel_protocols.errors import ApiError
from crossmodel_protocols.estimate import tokens_for_chars


class Outcome(enum.IntEnum):
    SUCCEEDED = ev.REQUEST_STATUS_SUCCEEDED
    FAILED = ev.REQUEST_STATUS_FAILED
    CANCELLED = ev.REQUEST_STATUS_CANCELLED


@dataclass(slots=True)
class Exchange:
    """Filled in as the request runs; times are milliseconds (wall clock for the start,
    monotonic for durations)."""

    request_id: str
    protocol: Protocol
    model: ModelInfo
    stream: bool
    body_size: int
    admission: Admission
    account_id: str
    key_id: str
    key_name: str
    reserved_micros: int
    reserved_tokens: int
    started_unix_ms: int
    started_mono_ms: float
    http_status: int = 0
    error: ApiError | None = None
    usage: router_pb2.Usage | None = None
    chunks: int = 0
    first_byte_mono_ms: float = 0.0
    client_gone: bool = False
    finished: bool = field(default=False)
    # With an Idempotency-Key: the key, and the non-streamed response to store for replays.
    idempotency_key: str = ""
    stored_result: tuple[int, str, bytes] | None = None

    @property
    def outcome(self) -> Outcome:
        if self.client_gone:
            return Outcome.CANCELLED
        return Outcome.FAILED if self.error is not None else Outcome.SUCCEEDED

    def actual_tokens(self) -> int:
        u = self.usage
        return u.input_tokens + u.output_tokens if u is not None else 0


def usage_event(x: Exchange, finished_unix_ms: int, finished_mono_ms: float) -> ev.UsageEvent:
    """The event billing charges and the request log records.

    When the router sent no usage (the client went away and the call was cancelled before its
    usage frame), the tokens are estimated — only if the client received any of the answer:
    the prompt by the 4-characters rule over the body, the output as one token per chunk
    relayed — priced at the catalog's prices, and flagged `usage_estimated`.
    """
    e = ev.UsageEvent(
        request_id=x.request_id,
        account_id=x.account_id,
        key_id=x.key_id,
        key_name=x.key_name,
        model=x.model.id,
        protocol=x.protocol.value,
        stream=x.stream,
        status=x.outcome.value,
        http_status=x.http_status,
        reserved_micros=x.reserved_micros,
        reserved_tokens=x.reserved_tokens,
        started_at_unix_ms=x.started_unix_ms,
        finished_at_unix_ms=finished_unix_ms,
        latency_ms=round(finished_mono_ms - x.started_mono_ms),
    )
    if x.first_byte_mono_ms:
        e.ttft_ms = round(x.first_byte_mono_ms - x.started_mono_ms)
    if x.error is not None:
        e.error_type = x.error.type.value
        e.error_message = x.error.message
    u = x.usage
    if u is not None:
        e.provider = u.provider
        e.deployment = u.deployment
        e.upstream_model = u.upstream_model
        e.input_tokens = u.input_tokens
        e.output_tokens = u.output_tokens
        e.cached_input_tokens = u.cached_input_tokens
        e.cache_write_tokens = u.cache_write_tokens
        e.reasoning_tokens = u.reasoning_tokens
        e.input_price_per_mtok_micros = u.price.input_per_mtok_micros
        e.output_price_per_mtok_micros = u.price.output_per_mtok_micros
        e.cached_input_price_per_mtok_micros = u.price.cached_input_per_mtok_micros
        e.cache_write_price_per_mtok_micros = u.price.cache_write_per_mtok_micros
        e.cost_micros = u.cost_micros
        e.upstream_latency_ms = u.upstream_latency_ms
        e.finish_reason = u.finish_reason
        e.end_user = u.end_user
        e.usage_estimated = u.usage_estimated
        if u.model:
            e.model = u.model
        return e
    p = x.model.prices
    e.input_price_per_mtok_micros = p.input_per_mtok_micros
    e.output_price_per_mtok_micros = p.output_per_mtok_micros
    e.cached_input_price_per_mtok_micros = p.cached_input_per_mtok_micros
    e.cache_write_price_per_mtok_micros = p.cache_write_per_mtok_micros
    if x.chunks > 0:
        e.input_tokens = min(tokens_for_chars(x.body_size), x.admission.estimated_input_tokens)
        e.output_tokens = x.chunks
        e.cost_micros = cost_micros(p, input_tokens=e.input_tokens, output_tokens=e.output_tokens)
        e.usage_estimated = True
    return e
