from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from crossmodel_common.context import REQUEST_ID_ATTRIBUTE, bind_request_id, reset_request_id
from crossmodel_common.telemetry import setup_telemetry


def test_spans_are_recorded_with_the_request_id_when_an_exporter_is_configured() -> None:
    exporter = InMemorySpanExporter()
    provider = setup_telemetry("unit", exporter=exporter, set_global=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    token = bind_request_id("req_telemetry")
    try:
        with provider.get_tracer("t").start_as_current_span("work") as span:
            assert span.is_recording()
    finally:
        reset_request_id(token)
    provider.force_flush()
    names = {(s.name, (s.attributes or {}).get(REQUEST_ID_ATTRIBUTE)) for s in exporter.get_finished_spans()}
    assert ("work", "req_telemetry") in names


def test_without_an_exporter_spans_keep_their_ids_but_record_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_SAMPLER"):
        monkeypatch.delenv(name, raising=False)
    provider = setup_telemetry("unit", set_global=False)
    with provider.get_tracer("t").start_as_current_span("work") as span:
        assert not span.is_recording()
        assert span.get_span_context().is_valid


def test_an_explicit_sampler_wins_even_without_an_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    provider = setup_telemetry("unit", set_global=False)
    with provider.get_tracer("t").start_as_current_span("work") as span:
        assert span.is_recording()
