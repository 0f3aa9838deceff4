"""Traces and metrics, the same way in every Honk process (worker, chat service, CLI, dev stack).

Traces (OpenTelemetry): one `TracerProvider` per process, set up by the client factory
(`honk.temporal.connect`) or by an entry point that wants its own service name. Spans are
exported over OTLP/HTTP only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or the traces-only
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; otherwise nothing leaves the process, but the
ids still exist, so every log line carries its trace id. Temporal's `TracingInterceptor` (on
every client and worker, through the factory) carries the context from the client call that
starts a request through the workflow into each activity, so one trace runs from the chat
message to the merge. Code adds its own spans with `span(...)` or `@traced(...)`.

Metrics (Prometheus): the Temporal runtime of the process serves SDK metrics and Honk's own
(the workflow's `workflow.metric_meter()`, activities' `activity.metric_meter()`, and
`meter(client)` elsewhere) on one endpoint, `http://HONK_METRICS_HOST:HONK_METRICS_PORT/metrics`,
when `HONK_METRICS_PORT` is set. One runtime per address per process.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from temporalio.common import MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

log = logging.getLogger(__name__)

TRACER_NAME = "honk"
OTLP_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

# Honk's durations are minutes rather than milliseconds; the SDK's default buckets stop at 10.
_SECONDS_BUCKETS = [0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 21600, 86400, 604800]
HISTOGRAM_BUCKETS: dict[str, list[float]] = {
    "honk_stage_duration_seconds": _SECONDS_BUCKETS,
    "honk_request_duration_seconds": _SECONDS_BUCKETS,
    "honk_build_duration_seconds": _SECONDS_BUCKETS,
    "honk_check_duration_seconds": _SECONDS_BUCKETS,
    "honk_agent_cost_dollars": [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 25],
    "honk_agent_turns": [1, 2, 3, 5, 8, 13, 21, 34, 55, 100],
}

_lock = threading.Lock()
_provider: TracerProvider | None = None
_runtimes: dict[str, Runtime] = {}

F = TypeVar("F", bound=Callable[..., Any])


class MetricsUnavailable(Exception):
    """The Prometheus endpoint could not be opened; the message names the variable."""


# --------------------------------------------------------------------------- tracing


def setup_tracing(service_name: str = "honk") -> TracerProvider:
    """The process's tracer provider, created on the first call (later calls return it).

    A provider set up before by the host (a test's, an application embedding Honk) is kept.
    `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` override the service name as usual.
    """
    global _provider
    with _lock:
        if _provider is not None:
            return _provider
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            _provider = current
            return current
        provider = make_tracer_provider(service_name)
        trace.set_tracer_provider(provider)
        _provider = provider
        return provider


def make_tracer_provider(service_name: str = "honk") -> TracerProvider:
    """A tracer provider that exports over OTLP/HTTP when the standard OTEL_EXPORTER_OTLP_*
    variables name an endpoint (headers, timeout and protocol details from the same
    variables), and exports nothing otherwise."""
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    endpoint = next((os.environ[n] for n in OTLP_ENDPOINT_VARIABLES if os.environ.get(n)), None)
    if endpoint:
        # Imported here: without an endpoint the exporter's dependencies never load.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        log.info("exporting traces over OTLP", extra={"endpoint": endpoint})
    return provider


def tracing_interceptor():
    """Temporal's tracing interceptor, for the client factory (it applies to the client's
    workers too). Spans in workflows are created when the start carried a span context."""
    from temporalio.contrib.opentelemetry import TracingInterceptor

    setup_tracing()
    return TracingInterceptor(trace.get_tracer("temporalio"))


def _attribute(value: Any) -> Any:
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, bool, int, float)) for v in value):
        return list(value)
    return str(value)


def _attributes(attrs: Mapping[str, Any]) -> dict[str, Any]:
    return {f"honk.{k}" if "." not in k else k: _attribute(v) for k, v in attrs.items() if v is not None}


@contextlib.contextmanager
def span(name: str, *, kind: SpanKind = SpanKind.INTERNAL, **attrs: Any) -> Iterator[Span]:
    """A span around a block, child of the current one; an exception marks it failed.

    Attributes are prefixed `honk.` unless they already name a namespace (`git.command`).
    """
    tracer = trace.get_tracer(TRACER_NAME)
    with tracer.start_as_current_span(
        name,
        kind=kind,
        attributes=_attributes(attrs),
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as exc:
            # Cancellation and generator exits are not failures of the traced work.
            if isinstance(exc, Exception):
                current.record_exception(exc)
                current.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:500]))
            raise


def start_span(name: str, **attrs: Any) -> contextlib.AbstractContextManager[Span]:
    """A root-level span for an entry point, e.g. the chat service's handling of a message:

        with telemetry.start_span("chat.app_mention", channel=channel, user=user):
            await changes.start_request(...)   # the workflow joins this trace

    It becomes the current span; a request started inside it carries its trace id through
    the workflow and every activity to the merge."""
    setup_tracing()
    return span(name, kind=SpanKind.SERVER, **attrs)


def annotate(**attrs: Any) -> None:
    """Add attributes to the current span (no-op without one)."""
    current = trace.get_current_span()
    if current.is_recording():
        current.set_attributes(_attributes(attrs))


def traced(
    name: str | Callable[..., str],
    attrs: Callable[..., Mapping[str, Any]] | None = None,
    result: Callable[[Any], Mapping[str, Any]] | None = None,
) -> Callable[[F], F]:
    """Decorate a function so each call runs in a span. `attrs` gets the call's arguments,
    `result` the return value; both return span attributes (failures in them are ignored,
    tracing never breaks the traced code)."""

    def describe(fn_args: tuple, fn_kwargs: dict) -> tuple[str, dict[str, Any]]:
        span_name = name
        extra: Mapping[str, Any] = {}
        try:
            if callable(name):
                span_name = name(*fn_args, **fn_kwargs)
            if attrs:
                extra = attrs(*fn_args, **fn_kwargs)
        except Exception:  # noqa: BLE001
            span_name = span_name if isinstance(span_name, str) else "honk"
        return str(span_name), dict(extra)

    def after(current: Span, value: Any) -> None:
        if result is None:
            return
        try:
            current.set_attributes(_attributes(result(value)))
        except Exception:  # noqa: BLE001
            pass

    def decorate(fn: F) -> F:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                span_name, extra = describe(args, kwargs)
                with span(span_name, **extra) as current:
                    value = await fn(*args, **kwargs)
                    after(current, value)
                    return value

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            span_name, extra = describe(args, kwargs)
            with span(span_name, **extra) as current:
                value = fn(*args, **kwargs)
                after(current, value)
                return value

        return wrapper  # type: ignore[return-value]

    return decorate


def current_trace_id() -> str | None:
    """The current trace id as 32 hex digits (what tracing backends show), or None."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def current_span_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return format(context.span_id, "016x") if context.is_valid else None


# --------------------------------------------------------------------------- metrics


def metrics_address(settings: Any) -> str | None:
    port = getattr(settings, "metrics_port", None)
    if not port:
        return None
    return f"{settings.metrics_host}:{port}"


def runtime(settings: Any, service: str = "honk") -> Runtime | None:
    """The Temporal runtime that serves this process's Prometheus endpoint, or None (the
    SDK's default runtime, no endpoint) when `HONK_METRICS_PORT` is not set."""
    address = metrics_address(settings)
    if address is None:
        return None
    with _lock:
        existing = _runtimes.get(address)
        if existing is not None:
            return existing
        try:
            created = Runtime(
                telemetry=TelemetryConfig(
                    metrics=PrometheusConfig(
                        bind_address=address,
                        counters_total_suffix=True,
                        durations_as_seconds=True,
                        histogram_bucket_overrides=HISTOGRAM_BUCKETS,
                    ),
                    global_tags={"service": service},
                )
            )
        except Exception as exc:  # the core reports a busy port as a RuntimeError
            raise MetricsUnavailable(f"HONK_METRICS_PORT: cannot serve metrics on {address}: {exc}") from None
        _runtimes[address] = created
        log.info("serving metrics", extra={"url": f"http://{address}/metrics"})
        return created


def meter(client: Any = None) -> MetricMeter:
    """A metric meter for code outside workflows and activities (the chat service, the
    client-side API): the one of `client`'s runtime, so its metrics land on the same
    endpoint as the SDK's. Inside a workflow use `workflow.metric_meter()`, inside an
    activity `activity.metric_meter()`."""
    configured = None
    if client is not None:
        configured = client.service_client.config.runtime
    return (configured or Runtime.default()).metric_meter


def count(client: Any, name: str, description: str, amount: int = 1, **labels: Any) -> None:
    """Add to a Honk counter from client-side code; metrics never break the caller."""
    try:
        meter(client).create_counter(name, description).add(
            amount, {k: str(v) for k, v in labels.items() if v is not None}
        )
    except Exception:  # noqa: BLE001
        log.debug("could not record metric", extra={"metric": name}, exc_info=True)
