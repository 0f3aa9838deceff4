"""Calling a step from the workflow: timeouts and retries, a cancel decision stopping the
step, and a step's final failure becoming the request's failure (with its error kind)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError, TimeoutType, is_cancelled_exception
from temporalio.workflow import ActivityCancellationType

from honk.workflows import wording
from honk.workflows.limits import Limit
from honk.workflows.steps import Step

In = TypeVar("In")
Out = TypeVar("Out")


NO_WORKER = "NoWorker"  # the error kind of a step nobody picked up within its queue wait


class RequestFailed(Exception):
    """The request cannot continue; the message is what the requester is told."""

    def __init__(self, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind  # the failing activity's error type, e.g. "MergeConflict"


class RequestCancelled(Exception):
    pass


class StepCalls:
    """The steps one workflow run has in flight; `cancelling()` says a cancel was decided."""

    def __init__(self, cancelling: Callable[[], bool]) -> None:
        self.cancelling = cancelling
        self.running: set[workflow.ActivityHandle] = set()

    def cancel_running(self) -> None:
        for handle in self.running:
            handle.cancel()

    async def act(
        self,
        step: Step[In, Out],
        arg: In,
        *,
        summary: str,
        limit: Limit,
        heartbeat: timedelta | None = None,
        task_queue: str | None = None,
        cancellable: bool = True,
    ) -> Out:
        """Run one activity; a cancel decision stops it, a final failure fails the request."""
        if cancellable and self.cancelling():
            raise RequestCancelled()
        handle = workflow.start_activity(
            step.name,
            arg,
            result_type=step.output,
            summary=summary,
            start_to_close_timeout=limit.timeout,
            schedule_to_close_timeout=limit.schedule_to_close,
            schedule_to_start_timeout=limit.schedule_to_start,
            heartbeat_timeout=heartbeat,
            retry_policy=limit.retry,
            task_queue=task_queue or workflow.info().task_queue,
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        if cancellable:
            self.running.add(handle)
        try:
            result: Out = await handle
            return result
        except ActivityError as err:
            if (cancellable and self.cancelling()) or is_cancelled_exception(err):
                raise RequestCancelled() from err
            cause = err.cause
            if isinstance(cause, TimeoutError) and cause.type == TimeoutType.SCHEDULE_TO_START:
                queue = task_queue or workflow.info().task_queue
                raise RequestFailed(
                    f"{summary}: {wording.no_worker(queue, limit.schedule_to_start)}", NO_WORKER
                ) from err
            kind = cause.type if isinstance(cause, ApplicationError) else None
            raise RequestFailed(f"{summary}: {explain(err)}", kind) from err
        finally:
            self.running.discard(handle)


def build_failure(results: Sequence[object]) -> str | None:
    """What failed in a parallel build (for the agent's next attempt), or None when every
    target built. A cancel propagates; a target nobody serves fails the request, as no agent
    round can start a worker."""
    failed = [r for r in results if isinstance(r, BaseException)]
    if not failed:
        return None
    for r in failed:
        if isinstance(r, (RequestCancelled, asyncio.CancelledError)):
            raise r
    unserved = [str(r) for r in failed if isinstance(r, RequestFailed) and r.kind == NO_WORKER]
    if unserved:
        raise RequestFailed(wording.build_blocked(unserved), NO_WORKER)
    return "The build failed:\n" + "\n".join(explain(r) for r in failed)


def explain(err: BaseException) -> str:
    """A failure in words: the innermost cause, with its error kind when it has one."""
    cause = err
    while isinstance(cause, ActivityError) and cause.cause is not None:
        cause = cause.cause
    if isinstance(cause, ApplicationError) and cause.type:
        return f"{cause.message} [{cause.type}]"
    if is_cancelled_exception(cause):
        return "cancelled"
    return str(cause) or type(cause).__name__
