"""One trace per request: the edge's SERVER span, its gRPC CLIENT spans and the Kafka PRODUCER
span whose context the usage event carries, all with the request id."""

from __future__ import annotations

import httpx
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from .conftest import GOOD_KEY, MINI, Stack, eventually


async def test_request_spans_share_one_trace_with_the_kafka_headers(
    stack: Stack, spans: InMemorySpanExporter
) -> None:
    async with httpx.AsyncClient(base_url=stack.edge.url, timeout=30) as http:
        resp = await http.post(
            "/v1/chat/completions",
            json={"model": MINI, "messages": [{"role": "user", "content": "hi"}]},
            headers={"authorization": f"Bearer {GOOD_KEY}"},
        )
    rid = resp.headers["x-request-id"]
    await eventually(lambda: len(stack.events.for_request(rid)) == 1)

    def mine() -> list:  # type: ignore[type-arg]
        return [
            s for s in spans.get_finished_spans() if (s.attributes or {}).get("crossmodel.request_id") == rid
        ]

    await eventually(lambda: any(s.kind is SpanKind.SERVER and s.name.startswith("POST") for s in mine()))
    found = mine()
    server = next(s for s in found if s.kind is SpanKind.SERVER and s.name == "POST /v1/chat/completions")
    attrs = dict(server.attributes or {})
    assert attrs["http.route"] == "/v1/chat/completions"
    assert attrs["http.response.status_code"] == 200
    assert attrs["gen_ai.request.model"] == MINI
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.usage.input_tokens"] == 12
    assert attrs["gen_ai.usage.output_tokens"] == 2
    trace_id = server.context.trace_id
    assert all(s.context.trace_id == trace_id for s in found)
    names = {(s.kind, s.name) for s in found}
    assert (SpanKind.CLIENT, "crossmodel.auth.v1.AuthService/Authorize") in names
    assert (SpanKind.CLIENT, "crossmodel.router.v1.RouterService/Route") in names
    # The fake servicers run in this process on the shared GrpcServer, which traces them.
    assert (SpanKind.SERVER, "crossmodel.router.v1.RouterService/Route") in names
    producer = next(s for s in found if s.kind is SpanKind.PRODUCER)
    _, headers, _ = stack.events.for_request(rid)[0]
    traceparent = headers["traceparent"].decode()
    assert traceparent.split("-")[1] == format(trace_id, "032x")
    assert traceparent.split("-")[2] == format(producer.context.span_id, "016x")


async def test_an_incoming_traceparent_is_continued(stack: Stack, spans: InMemorySpanExporter) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with httpx.AsyncClient(base_url=stack.edge.url) as http:
        resp = await http.get("/healthz", headers={"traceparent": parent})
    rid = resp.headers["x-request-id"]
    await eventually(
        lambda: any(
            (s.attributes or {}).get("crossmodel.request_id") == rid for s in spans.get_finished_spans()
        )
    )
    server = next(
        s for s in spans.get_finished_spans() if (s.attributes or {}).get("crossmodel.request_id") == rid
    )
    assert format(server.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
