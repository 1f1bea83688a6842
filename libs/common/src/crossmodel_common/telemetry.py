"""OpenTelemetry set-up from the standard OTEL_* variables.

Every span gets `crossmodel.request_id` from the bound request id, so any span of any service
finds the request. With no OTLP endpoint configured, spans are still created (trace ids reach
the logs) but not exported.
"""

from __future__ import annotations

import os

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

from crossmodel_common.context import REQUEST_ID_ATTRIBUTE, current_request_id


class RequestIdSpanProcessor(SpanProcessor):
    """Stamps the bound request id on every span as it starts."""

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        rid = current_request_id()
        if rid:
            span.set_attribute(REQUEST_ID_ATTRIBUTE, rid)

    def on_end(self, span: ReadableSpan) -> None:
        return None


def _otlp_exporter() -> SpanExporter | None:
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").lower() == "none":
        return None
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if not endpoint:
        return None
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    return HttpExporter()


def setup_telemetry(
    service: str, *, exporter: SpanExporter | None = None, set_global: bool = True
) -> TracerProvider:
    """Install the global tracer provider. `service.name` comes from OTEL_SERVICE_NAME when set;
    OTEL_RESOURCE_ATTRIBUTES is honoured by Resource.create."""
    attrs = {"service.name": os.environ.get("OTEL_SERVICE_NAME") or f"crossmodel-{service}"}
    chosen = exporter or _otlp_exporter()
    sampler = None
    if chosen is None and not os.environ.get("OTEL_TRACES_SAMPLER"):
        # Nothing would ever read the spans: keep trace and span ids (logs and propagation
        # still carry them) but record nothing, which saves their cost on the request path.
        sampler = ParentBased(ALWAYS_OFF)
    provider = TracerProvider(resource=Resource.create(attrs), sampler=sampler)
    provider.add_span_processor(RequestIdSpanProcessor())
    if chosen is not None:
        provider.add_span_processor(BatchSpanProcessor(chosen))
    if set_global:
        trace.set_tracer_provider(provider)
    return provider


def shutdown_telemetry() -> None:
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()
