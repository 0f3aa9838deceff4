"""How long each step may take, how long its retries ride out an outage, and how long work
on a dedicated queue may wait for a worker.

Timeouts come from the repository's own `.honk.toml` (a 6 h check suite gets 6 h, not a fixed
hour); retries back off to one a minute with no attempt cap, bounded by the request's
`outage_tolerance` (a git host, Slack, S3 or model outage of that length is ridden out);
only non-retryable errors (permanent conditions) fail a step at once.

Runs that started before these limits existed keep the old fixed ones: the choice is guarded
by the patch `bounded-waits`, so their recorded histories replay unchanged (README,
"Changing the workflow safely").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from honk.workflows import patches
from honk.workflows.contract import BuildTargetRef, RequestOptions, RequestState

# Build numbers grow across requests (a phone only installs a higher version code).
BUILD_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)

# Before bounded-waits: five attempts, about 30 s of backoff in all.
RETRY_WORLD = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    maximum_attempts=5,
)
RETRY_AGENT = RetryPolicy(initial_interval=timedelta(seconds=5), maximum_attempts=3)
RETRY_NOTIFY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5)

# Set-up the configured timeouts do not cover: environments, fetches, uploads, the push.
MARGIN = timedelta(minutes=15)
DEFAULT_CHECKS = timedelta(hours=1)  # no checks configured (detected ones use their defaults)
DEFAULT_BUILD = timedelta(minutes=30)


@dataclass(frozen=True)
class Limit:
    """One step's bounds: `timeout` per attempt; `schedule_to_close` over all attempts;
    `schedule_to_start` how long it may wait for a worker to pick it up."""

    timeout: timedelta
    retry: RetryPolicy
    schedule_to_close: timedelta | None = None
    schedule_to_start: timedelta | None = None


def bounded() -> bool:
    """True for runs started on code with bounded waits (memoised per run by the SDK)."""
    return workflow.patched(patches.BOUNDED_WAITS)


def outage_retry() -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(seconds=2),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(minutes=1),
        maximum_attempts=0,  # unlimited: schedule_to_close bounds the retries
    )


class Limits:
    """The bounds of every step of one request, from its options and prepared workspace."""

    def __init__(self, options: RequestOptions, state: RequestState | None) -> None:
        self.options = options
        self.state = state

    def _ride_out(self, timeout: timedelta, retry_before: RetryPolicy = RETRY_WORLD) -> Limit:
        if not bounded():
            return Limit(timeout, retry_before)
        return Limit(timeout, outage_retry(), schedule_to_close=timeout + self.options.outage_tolerance)

    def checks_time(self) -> timedelta:
        prepared = self.state.prepared if self.state else None
        seconds = prepared.checks_timeout_s if prepared else None
        return timedelta(seconds=seconds) if seconds else DEFAULT_CHECKS

    def prepare(self) -> Limit:
        return self._ride_out(timedelta(minutes=20))

    def agent(self) -> Limit:
        return self._ride_out(timedelta(hours=1), RETRY_AGENT)

    def checks(self) -> Limit:
        if not bounded():
            return Limit(timedelta(hours=1), RETRY_WORLD)
        return self._ride_out(self.checks_time() + MARGIN)

    def build(self, target: BuildTargetRef) -> Limit:
        if not bounded():
            return Limit(timedelta(hours=1), RETRY_WORLD)
        own = timedelta(seconds=target.timeout_s) if target.timeout_s else DEFAULT_BUILD
        limit = self._ride_out(own + MARGIN)
        if target.task_queue is None:
            return limit
        # A dedicated queue may have no worker at all (a typo, the macOS host down).
        return Limit(limit.timeout, limit.retry, limit.schedule_to_close, self.options.queue_wait)

    def publish(self) -> Limit:
        return self._ride_out(timedelta(minutes=30))

    def merge(self) -> Limit:
        """The merge re-runs every check when the base moved, then pushes."""
        if not bounded():
            return Limit(timedelta(minutes=30), RETRY_WORLD)
        return self._ride_out(self.checks_time() + MARGIN)

    def cleanup(self) -> Limit:
        return self._ride_out(timedelta(minutes=10))

    def notify(self) -> Limit:
        return self._ride_out(timedelta(minutes=1), RETRY_NOTIFY)
