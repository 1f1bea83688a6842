"""The test receiver decodes what the real OTLP/HTTP exporter sends."""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

from crossmodel_devstack.otlp import SpanReceiver


def test_spans_exported_over_otlp_http_come_back_with_their_tree() -> None:
    with SpanReceiver() as receiver:
        provider = TracerProvider(resource=Resource.create({"service.name": "crossmodel-probe"}))
        provider.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{receiver.endpoint}/v1/traces"))
        )
        tracer = provider.get_tracer("t")
        with (
            tracer.start_as_current_span(
                "outer", kind=SpanKind.SERVER, attributes={"crossmodel.request_id": "r1"}
            ),
            tracer.start_as_current_span("inner", attributes={"n": 3, "tags": ["a", "b"]}),
        ):
            pass
        provider.shutdown()
        spans = {s.name: s for s in receiver.spans()}
    assert set(spans) == {"outer", "inner"}
    outer, inner = spans["outer"], spans["inner"]
    assert (outer.service, outer.kind, outer.parent_span_id) == ("crossmodel-probe", "SERVER", "")
    assert outer.attributes == {"crossmodel.request_id": "r1"}
    assert inner.trace_id == outer.trace_id
    assert inner.parent_span_id == outer.span_id
    assert inner.attributes == {"n": 3, "tags": ["a", "b"]}
    assert receiver.errors == []
