"""One worker process serving several queues never admits more activities than it has
threads: every activity it accepts starts at once instead of waiting (and timing out)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from temporalio import activity, workflow
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from honk.config.settings import load_settings
from honk.workers.main import activity_slots, build_workers, run_workers

SLOTS = 2  # per queue
QUEUES = 2
started = threading.Barrier(SLOTS * QUEUES, timeout=60)


@activity.defn(name="hold_until_all_started")
def hold_until_all_started() -> str:
    # Passes only once every scheduled activity runs at the same time on its own thread.
    started.wait()
    return threading.current_thread().name


@workflow.defn(name="SpreadOverQueues", sandboxed=False)
class SpreadOverQueues:
    @workflow.run
    async def run(self, queues: list[str]) -> list[str]:
        calls = [
            workflow.execute_activity(
                "hold_until_all_started",
                task_queue=queue,
                # A thread-starved activity would sit past this and be retried (run twice).
                start_to_close_timeout=timedelta(seconds=90),
            )
            for queue in queues
            for _ in range(SLOTS)
        ]
        return list(await asyncio.gather(*calls))


def test_slots_never_exceed_threads():
    assert activity_slots(8, ["a", "b", "c"]) == {"a": 3, "b": 3, "c": 2}
    assert sum(activity_slots(5, ["a", "b"]).values()) == 5
    with pytest.raises(ValueError, match="at least one thread per queue"):
        activity_slots(1, ["a", "b"])


async def test_given_executor_is_split_among_queues(tmp_path, dev_env):
    settings = load_settings(data_dir=tmp_path, task_queue="main", max_concurrent_activities=4)
    with ThreadPoolExecutor(max_workers=3) as pool:
        workers = build_workers(
            dev_env.client, settings, ["main", "builds"], executor=pool, activities=[hold_until_all_started]
        )
        assert [w.config()["max_concurrent_activities"] for w in workers] == [2, 1]


async def test_concurrent_activities_on_two_queues_all_start(tmp_path, dev_env):
    settings = load_settings(
        data_dir=tmp_path, task_queue=f"main-{uuid.uuid4().hex[:6]}", max_concurrent_activities=SLOTS
    )
    queues = [settings.task_queue, f"builds-{uuid.uuid4().hex[:6]}"]
    workers = build_workers(dev_env.client, settings, queues, activities=[hold_until_all_started])
    assert sum(w.config()["max_concurrent_activities"] or 0 for w in workers) == SLOTS * QUEUES
    stop = asyncio.Event()
    running = asyncio.create_task(run_workers(workers, stop))
    flow_queue = f"flow-{uuid.uuid4().hex[:6]}"
    try:
        async with Worker(
            dev_env.client,
            task_queue=flow_queue,
            workflows=[SpreadOverQueues],
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            threads = await dev_env.client.execute_workflow(
                SpreadOverQueues.run,
                queues,
                id=f"slots-{uuid.uuid4().hex[:6]}",
                task_queue=flow_queue,
                execution_timeout=timedelta(seconds=120),
            )
        assert len(set(threads)) == SLOTS * QUEUES  # all ran at once, each on its own thread
    finally:
        stop.set()
        await running
