"""The usage event built from what the edge saw of a request."""

from __future__ import annotations

from crossmodel.events.v1 import usage_event_pb2 as ev
from crossmodel.router.v1 import router_pb2
from crossmodel_common.money import Prices, cost_micros
from crossmodel_edge.domain.admission import Admission
from crossmodel_edge.domain.catalog import ModelInfo
from crossmodel_edge.domain.exchange import Exchange, usage_event
from crossmodel_protocols.canonical import Protocol
from crossmodel_protocols.errors import ApiError, ErrorType

PRICES = Prices(150_000, 600_000, 75_000)
MODEL = ModelInfo("openai/gpt-4o-mini", "openai", "mini", 128_000, 16_384, (), PRICES, 0)


def exchange(**kw: object) -> Exchange:
    base: dict[str, object] = {
        "request_id": "req_1",
        "protocol": Protocol.OPENAI_CHAT,
        "model": MODEL,
        "stream": True,
        "body_size": 400,
        "admission": Admission(400, 1000, 660),
        "account_id": "acct_1",
        "key_id": "key_1",
        "key_name": "k",
        "reserved_micros": 660,
        "reserved_tokens": 1400,
        "started_unix_ms": 1_000,
        "started_mono_ms": 50.0,
        "http_status": 200,
    }
    base.update(kw)
    return Exchange(**base)  # type: ignore[arg-type]


def test_from_the_router_usage() -> None:
    usage = router_pb2.Usage(
        model="openai/gpt-4o-mini",
        provider="openai",
        input_tokens=100,
        output_tokens=20,
        cached_input_tokens=50,
        reasoning_tokens=5,
        price=router_pb2.Price(input_per_mtok_micros=150_000, output_per_mtok_micros=600_000),
        cost_micros=27,
        finish_reason="stop",
        end_user="u",
    )
    e = usage_event(exchange(usage=usage, first_byte_mono_ms=60.0), 1_100, 150.0)
    assert e.status == ev.REQUEST_STATUS_SUCCEEDED
    assert (e.input_tokens, e.output_tokens, e.cached_input_tokens, e.reasoning_tokens) == (100, 20, 50, 5)
    assert e.cost_micros == 27
    assert (e.latency_ms, e.ttft_ms) == (100, 10)
    assert (e.reserved_micros, e.reserved_tokens) == (660, 1400)
    assert not e.usage_estimated


def test_failed_without_usage_costs_nothing_when_nothing_was_relayed() -> None:
    e = usage_event(exchange(error=ApiError(ErrorType.UPSTREAM_ERROR, "x"), http_status=502), 1_100, 150.0)
    assert e.status == ev.REQUEST_STATUS_FAILED
    assert e.error_type == "upstream_error"
    assert (e.input_tokens, e.output_tokens, e.cost_micros) == (0, 0, 0)
    assert e.reserved_micros == 660


def test_cancelled_mid_stream_without_usage_is_estimated_and_priced() -> None:
    e = usage_event(exchange(client_gone=True, chunks=7, http_status=499), 1_100, 150.0)
    assert e.status == ev.REQUEST_STATUS_CANCELLED
    assert e.usage_estimated
    assert (e.input_tokens, e.output_tokens) == (100, 7)
    assert e.cost_micros == cost_micros(PRICES, input_tokens=100, output_tokens=7)
    assert e.input_price_per_mtok_micros == 150_000
