"""`honk worker`: hosts ChangeRequestWorkflow and the activities on named task queues.

Blocking activities (git, subprocesses) run on a bounded thread pool, so the event loop that
polls Temporal never blocks. SIGTERM/SIGINT drain in-flight activities before exiting.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from honk.activities.agent import AGENT_MODULE, AgentActivities
from honk.activities.build import BuildActivities
from honk.activities.checks import CheckActivities
from honk.activities.merge import MergeActivities
from honk.activities.notify import NotifyActivities
from honk.activities.publish import PublishActivities
from honk.activities.workspace import WorkspaceActivities
from honk.config.settings import Settings
from honk.redact import remember_secrets, secret_values
from honk.workflows.change_request import ChangeRequestWorkflow

log = logging.getLogger(__name__)


def honk_activities(settings: Settings) -> list[Callable]:
    workspace = WorkspaceActivities(settings)
    return [
        workspace.prepare,
        workspace.cleanup,
        AgentActivities(settings).run_agent,
        CheckActivities(settings).run_checks,
        BuildActivities(settings).build,
        PublishActivities(settings).publish,
        NotifyActivities(settings).notify,
        MergeActivities(settings).merge,
    ]


def activity_slots(threads: int, queues: Sequence[str]) -> dict[str, int]:
    """Split `threads` among `queues` so the slots add up to at most the threads.

    Each queue's Worker admits only its slots, so no accepted activity ever waits for a thread
    (and times out, then runs twice) behind activities of another queue.
    """
    if threads < len(queues):
        raise ValueError(
            f"{threads} activity threads cannot serve {len(queues)} task queues; "
            f"give the executor at least one thread per queue or run fewer queues per process"
        )
    base, extra = divmod(threads, len(queues))
    return {queue: base + (1 if i < extra else 0) for i, queue in enumerate(queues)}


def build_workers(
    client: Client,
    settings: Settings,
    queues: Sequence[str] = (),
    executor: ThreadPoolExecutor | None = None,
    activities: Sequence[Callable] | None = None,
) -> list[Worker]:
    """One worker per queue; the main queue also hosts the workflow. Each inherits the
    client's HonkPlugin (converter, codec, tracing, sandbox passthrough).

    All queues share one executor sized so it cannot be overcommitted: by default each queue
    gets `max_concurrent_activities` slots and the executor one thread per slot; a given
    executor's threads are split among the queues instead.
    """
    remember_secrets(secret_values(settings))  # so logs, check output and tool results mask them
    names = list(dict.fromkeys(queues or [settings.task_queue]))
    if executor is None:
        executor = ThreadPoolExecutor(
            max_workers=settings.max_concurrent_activities * len(names), thread_name_prefix="honk-activity"
        )
    slots = activity_slots(executor._max_workers, names)
    activities = list(activities) if activities is not None else honk_activities(settings)
    workers = []
    for queue in names:
        workers.append(
            Worker(
                client,
                task_queue=queue,
                workflows=[ChangeRequestWorkflow] if queue == settings.task_queue else [],
                activities=activities,
                activity_executor=executor,
                max_concurrent_activities=slots[queue],
                # A cached request costs memory for as long as it waits; a replay costs
                # milliseconds when a decision or query finally arrives.
                max_cached_workflows=settings.max_cached_workflows,
                graceful_shutdown_timeout=timedelta(seconds=30),
                # Cancellation reaches an activity only through a heartbeat response.
                max_heartbeat_throttle_interval=timedelta(seconds=5),
            )
        )
    return workers


async def run_workers(workers: Sequence[Worker], stop: asyncio.Event | None = None) -> None:
    """Run until SIGINT/SIGTERM (or `stop`), then shut down gracefully."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    runs = [asyncio.create_task(w.run()) for w in workers]
    log.info("worker started", extra={"task_queues": [w.task_queue for w in workers]})
    # Polling already: the model client library loads meanwhile, not before the first poll.
    threading.Thread(target=importlib.import_module, args=(AGENT_MODULE,), name="honk-warm-up", daemon=True).start()
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([stopper, *runs], return_when=asyncio.FIRST_COMPLETED)
    log.info("worker stopping")
    await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
    stopper.cancel()
    for task in done:
        failure = task.exception() if task is not stopper else None
        if failure is not None:
            raise failure
