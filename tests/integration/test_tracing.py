"""One request is one trace across all five services, the Kafka consumers included, and every
span of it carries the request's x-request-id. Driven by the table of hops (harness.HOPS)."""

from __future__ import annotations

import openai
import pytest

from crossmodel_common.context import REQUEST_ID_ATTRIBUTE
from crossmodel_devstack.harness import HOPS, Harness, Hop, eventually
from crossmodel_devstack.otlp import ReceivedSpan
from crossmodel_devstack.stack import PRODUCT_SERVICES, SPECS

# The span kind that shows a service received a hop.
RECEIVING_KIND = {"http": "SERVER", "grpc": "SERVER", "kafka": "CONSUMER"}


def _receiving_span(hop: Hop, spans: list[ReceivedSpan], topic: str) -> ReceivedSpan | None:
    service = SPECS[hop.callee].service_name
    operation = hop.operation.format(topic=topic)
    for span in spans:
        if span.service == service and span.kind == RECEIVING_KIND[hop.via] and operation in span.name:
            return span
    return None


@pytest.fixture(scope="module")
async def traced_request(harness: Harness, model: str) -> tuple[str, list[ReceivedSpan]]:
    """One completion, and every span it produced once each traced hop has arrived."""
    account = await harness.new_account("it-tracing", credit_micros=1_000_000)
    async with openai.AsyncOpenAI(
        base_url=f"{harness.edge_url}/v1", api_key=account.api_key, max_retries=0
    ) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": "trace me"}]
        )
    rid = raw.headers["x-request-id"]
    topic = harness.stack.config.usage_topic

    def complete() -> list[ReceivedSpan] | None:
        tagged = harness.receiver.spans(lambda s: s.attributes.get(REQUEST_ID_ATTRIBUTE) == rid)
        if not all(_receiving_span(h, tagged, topic) for h in HOPS if h.traced):
            return None
        trace_ids = {s.trace_id for s in tagged}
        return [s for s in harness.receiver.spans() if s.trace_id in trace_ids]

    spans = await eventually(complete, what=f"spans of every traced hop for {rid}")
    return rid, spans


def test_one_request_is_one_trace(traced_request: tuple[str, list[ReceivedSpan]]) -> None:
    _, spans = traced_request
    assert len({s.trace_id for s in spans}) == 1


def test_every_service_took_part(traced_request: tuple[str, list[ReceivedSpan]]) -> None:
    _, spans = traced_request
    assert {SPECS[name].service_name for name in PRODUCT_SERVICES} <= {s.service for s in spans}


def test_every_span_carries_the_request_id(traced_request: tuple[str, list[ReceivedSpan]]) -> None:
    rid, spans = traced_request
    missing = [(s.service, s.name) for s in spans if s.attributes.get(REQUEST_ID_ATTRIBUTE) != rid]
    assert missing == []


@pytest.mark.parametrize("hop", [h for h in HOPS if h.traced], ids=lambda h: f"{h.caller}->{h.callee}")
def test_each_hop_continues_its_callers_span(
    harness: Harness, traced_request: tuple[str, list[ReceivedSpan]], hop: Hop
) -> None:
    _, spans = traced_request
    received = _receiving_span(hop, spans, harness.stack.config.usage_topic)
    assert received is not None
    by_id = {s.span_id: s for s in spans}
    if hop.caller == "client":
        assert received.parent_span_id == "", "the edge starts the trace"
        return
    parent = by_id.get(received.parent_span_id)
    assert parent is not None, f"{received.name} has no parent span in the trace"
    assert parent.service == SPECS[hop.caller].service_name
