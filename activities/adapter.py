"""What every activity adapter shares: the domain's heartbeats reach Temporal, the domain's
failures (``HonkError``) become ``ApplicationError``s the workflow can branch on, and log
lines name the request (the workflow id) they were written for."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from honk import liveness, logs
from honk.errors import HonkError

# Beats closer together than this are dropped: from a step's thread each one waits for the
# worker's event loop, and the server hears at most one per throttle interval anyway.
BEAT_GAP_S = 1.0


class ActivityPulse:
    """Forwards the domain's heartbeats and cancellation checks to the running activity."""

    def __init__(self) -> None:
        self._last = float("-inf")

    def beat(self, *details: Any) -> None:
        now = time.monotonic()
        if now - self._last < BEAT_GAP_S:
            return
        self._last = now
        activity.heartbeat(*details)

    def cancelled(self) -> bool:
        return activity.is_cancelled()

    def shielded(self) -> contextlib.AbstractContextManager[None]:
        # A sync activity's cancellation is raised into its thread at any bytecode.
        return activity.shield_thread_cancel_exception()


def application_error(err: HonkError) -> ApplicationError:
    return ApplicationError(
        err.message, type=err.kind, non_retryable=not err.retryable, next_retry_delay=err.retry_after
    )


@contextlib.contextmanager
def adapting(request_id: str | None = None) -> Iterator[None]:
    """Run domain work inside an activity: heartbeats forwarded, failures translated, log
    lines stamped with `request_id` (by default the running activity's workflow id).
    Called directly (tests, benchmarks) outside an activity, there is no one to beat to."""
    inside = activity.in_activity()
    if request_id is None and inside:
        request_id = activity.info().workflow_id or None
    stamped = logs.request_context(request_id) if request_id else contextlib.nullcontext()
    pulse = liveness.using(ActivityPulse()) if inside else contextlib.nullcontext()
    with pulse, stamped:
        try:
            yield
        except HonkError as err:
            raise application_error(err) from err
