"""OpenTelemetry, off unless TRACING_ENABLED: one tracer provider per process, OTLP/HTTP export."""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from kit.settings import Settings


def tracer_provider(
    settings: Settings, service: str, processor: SpanProcessor | None = None
) -> TracerProvider | None:
    """The process's tracer provider, or None when tracing is off.

    `processor` replaces the OTLP exporter (tests pass an in-memory one).
    """
    if not settings.tracing.enabled:
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": f"checkout-{service}"}))
    provider.add_span_processor(
        processor or BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.tracing.otlp_endpoint))
    )
    return provider
