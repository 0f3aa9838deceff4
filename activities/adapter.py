"""What every activity adapter shares: the domain's heartbeats reach Temporal, and the
domain's failures (``HonkError``) become ``ApplicationError``s the workflow can branch on."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from honk import liveness
from honk.errors import HonkError


class ActivityPulse:
    """Forwards the domain's heartbeats and cancellation checks to the running activity."""

    def beat(self, *details: Any) -> None:
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
def adapting() -> Iterator[None]:
    """Run domain work inside an activity: heartbeats forwarded, failures translated.

    Called outside an activity (tests call adapters directly) there is nothing to beat to."""
    pulse: contextlib.AbstractContextManager[None] = (
        liveness.using(ActivityPulse()) if activity.in_activity() else contextlib.nullcontext()
    )
    with pulse:
        try:
            yield
        except HonkError as err:
            raise application_error(err) from err
