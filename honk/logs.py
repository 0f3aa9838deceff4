"""Structured logs: one JSON object per line, with whatever `extra=` the caller attached,
plus the request id and the trace id of the context the line was written in (the workflow,
a `request_context` block — activity adapters open one for their workflow id —, the current
span)."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

from temporalio import workflow

from honk.redact import RedactingFilter
from honk.telemetry import current_span_id, current_trace_id

# Attributes every LogRecord has; anything else came from `extra=` and belongs in the line.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("honk_request_id", default=None)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


@contextlib.contextmanager
def request_context(request_id: str | None) -> Iterator[None]:
    """Lines logged in this block carry `request_id`: an activity's work (activities/adapter.py
    opens one), the chat service handling a thread."""
    token = _request_id.set(request_id)
    try:
        yield
    finally:
        _request_id.reset(token)


def current_request_id() -> str | None:
    """The request (workflow id) of the running workflow, or of the enclosing
    `request_context` block."""
    try:
        if workflow.in_workflow():
            return workflow.info().workflow_id
    except Exception:  # noqa: BLE001 - logging must never fail
        pass
    return _request_id.get()


class ContextFilter(logging.Filter):
    """Adds `request_id`, `trace_id` and `span_id` to every record that does not carry them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            request_id = current_request_id()
            if request_id:
                record.request_id = request_id
        if getattr(record, "trace_id", None) is None:
            try:
                trace_id = current_trace_id()
                if trace_id:
                    record.trace_id = trace_id
                    record.span_id = current_span_id()
            except Exception:  # noqa: BLE001
                pass
        return True


def configure_logging(level: str = "INFO", stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter())  # secrets never reach a log line
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
