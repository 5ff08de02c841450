"""An OpenTelemetry span per proxied request, exported over OTLP/HTTP when
GATEHOUSE_OTLP_ENDPOINT is set (e.g. http://otel-collector:4318). Spans carry metadata only:
never prompt or completion text, never a key. Export runs in the SDK's batch thread, off the
request path."""
import os
import time

from django.conf import settings

_tracer = None
_tracer_pid: int | None = None
_provider = None


def _tracer_get():
    global _tracer, _tracer_pid, _provider
    if not settings.GATEHOUSE_OTLP_ENDPOINT:
        return None
    if _tracer_pid != os.getpid():  # each forked worker exports on its own
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        _provider = TracerProvider(resource=Resource.create({"service.name": settings.GATEHOUSE_OTEL_SERVICE_NAME}))
        exporter = OTLPSpanExporter(endpoint=settings.GATEHOUSE_OTLP_ENDPOINT.rstrip("/") + "/v1/traces")
        _provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1000))
        _tracer = _provider.get_tracer("gatehouse.proxy")
        _tracer_pid = os.getpid()
    return _tracer


def request_span_record(row: dict, *, duration_seconds: float) -> None:
    tracer = _tracer_get()
    if tracer is None:
        return
    from opentelemetry.trace import SpanKind, Status, StatusCode

    ended = time.time_ns()
    span = tracer.start_span(
        f"gatehouse {row['endpoint']}", kind=SpanKind.SERVER, start_time=ended - int(duration_seconds * 1e9),
        attributes={
            "gatehouse.request_id": row["request_id"],
            "gatehouse.org_id": str(row["org_id"]),
            "gatehouse.team_id": str(row["team_id"] or ""),
            "gatehouse.key_id": str(row["key_id"] or ""),
            "gatehouse.deployment": row["deployment"],
            "gatehouse.attempts": row["attempts"],
            "gatehouse.error_code": row["error_code"],
            "gatehouse.cost_usd": float(row["cost_usd"]),
            "gen_ai.system": row["provider_kind"],
            "gen_ai.request.model": row["alias"],
            "gen_ai.response.model": row["upstream_model"],
            "gen_ai.usage.input_tokens": row["prompt_tokens"],
            "gen_ai.usage.output_tokens": row["completion_tokens"],
            "http.response.status_code": row["status"],
        },
    )
    if row["status"] >= 400:
        span.set_status(Status(StatusCode.ERROR, row["error_code"]))
    span.end(end_time=ended)


def tracing_flush() -> None:
    if _provider is not None and _tracer_pid == os.getpid():
        _provider.force_flush(timeout_millis=5000)
