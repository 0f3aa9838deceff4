"""Bounded waits: a build queue nobody serves fails the request naming the queue, step
timeouts follow the repository's own limits, and an outage during an approved merge is
ridden out (time-skipping server, stand-in activities as in test_workflow)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker
from test_workflow import World, make_request, run, wait_stage  # noqa: F401 (the `run` fixture)

from honk.workflows.change_request import ChangeRequestWorkflow
from honk.workflows.contract import (
    ACTIVITY_BUILD,
    ACTIVITY_CHECKS,
    ACTIVITY_MERGE,
    ACTIVITY_PREPARE,
    BuildOutcome,
    BuildTargetRef,
    BuildTask,
    ChecksOutcome,
    ChecksTask,
    MergeOutcome,
    MergeTask,
    PreparedWorkspace,
    Stage,
    WorkspaceRef,
)


@pytest.fixture
async def run_live(dev_env, task_queue):
    """Like `run`, on the real dev server: the time-skipping server does not skip time while
    a step waits for a worker or for its next retry, so these tests wait for real (briefly)."""
    workers = []

    async def start(world: World, request):
        worker = Worker(
            dev_env.client, task_queue=task_queue, workflows=[ChangeRequestWorkflow], activities=world.activities()
        )
        workers.append((worker, asyncio.create_task(worker.run())))
        return await dev_env.client.start_workflow(
            ChangeRequestWorkflow.run, request, id=f"honk-app-{task_queue}", task_queue=task_queue
        )

    yield start
    for worker, _task in workers:
        await worker.shutdown()


class ConfiguredWorld(World):
    """A repository whose `.honk.toml` gives long check and build timeouts, optionally an iOS
    target on a dedicated queue, and a git host refusing merges for a while."""

    def __init__(self, ios_queue: str | None = None, outage: timedelta = timedelta(0)) -> None:
        super().__init__()
        self.ios_queue = ios_queue
        self.outage = outage
        self.limits: dict[str, tuple[timedelta | None, timedelta | None]] = {}
        self.merge_attempts = 0

    def saw(self, step: str) -> None:
        info = activity.info()
        self.limits[step] = (info.start_to_close_timeout, info.schedule_to_close_timeout)

    @activity.defn(name=ACTIVITY_PREPARE)
    async def prepare(self, ref: WorkspaceRef) -> PreparedWorkspace:
        targets = [BuildTargetRef(name="android", timeout_s=12 * 3600)]
        if self.ios_queue:
            targets.append(BuildTargetRef(name="ios", task_queue=self.ios_queue))
        return PreparedWorkspace(
            base_sha="b", head_sha="b", targets=targets, checks=["unit", "e2e"], checks_timeout_s=6 * 3600
        )

    @activity.defn(name=ACTIVITY_CHECKS)
    async def run_checks(self, task: ChecksTask) -> ChecksOutcome:
        self.saw("checks")
        return await super().run_checks(task)

    @activity.defn(name=ACTIVITY_BUILD)
    async def build(self, task: BuildTask) -> BuildOutcome:
        self.saw("build")
        return await super().build(task)

    @activity.defn(name=ACTIVITY_MERGE)
    async def merge(self, task: MergeTask) -> MergeOutcome:
        self.saw("merge")
        self.merge_attempts += 1
        info = activity.info()
        if info.current_attempt_scheduled_time - info.scheduled_time < self.outage:
            raise ApplicationError("git push: could not connect to the git host")  # retryable
        return await super().merge(task)


async def test_build_on_a_queue_nobody_serves_fails_naming_the_queue(run_live):
    world = ConfiguredWorld(ios_queue="honk-macos-typo")
    handle = await run_live(world, make_request(queue_wait=timedelta(seconds=3)))
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.stage == Stage.FAILED
    assert "no worker is serving queue 'honk-macos-typo'" in result.last_error
    building = next(e.at for e in result.timeline if e.stage == Stage.BUILDING and e.kind == "stage")
    assert result.timeline[-1].at - building < timedelta(seconds=30), "failed soon after the limit"
    failed = next(n for n in world.notices if n.event == "failed")
    assert "honk-macos-typo" in failed.text, "the thread is told which queue has no worker"
    assert len(world.agent_tasks) == 1, "no agent round is spent on a missing worker"


async def test_step_timeouts_follow_the_repository_limits(run):  # noqa: F811 (the imported fixture)
    world = ConfiguredWorld()
    handle = await run(world)
    await wait_stage(handle, Stage.AWAITING_APPROVAL)
    await handle.signal("approve", {"by": "alice"})
    assert (await handle.result()).stage == Stage.MERGED
    margin, tolerance = timedelta(minutes=15), timedelta(minutes=30)
    assert world.limits["checks"] == (timedelta(hours=6) + margin, timedelta(hours=6) + margin + tolerance)
    assert world.limits["build"] == (timedelta(hours=12) + margin, timedelta(hours=12) + margin + tolerance)
    # The merge re-runs every check when the base moved: it gets the checks' time.
    assert world.limits["merge"][0] == timedelta(hours=6) + margin


async def test_an_approved_merge_rides_out_a_git_host_outage(run_live):
    # Longer than the old policy's five attempts (2+4+8+16 s of backoff) could ride out.
    world = ConfiguredWorld(outage=timedelta(seconds=31))
    handle = await run_live(world, make_request())
    await wait_stage(handle, Stage.AWAITING_APPROVAL)
    await handle.signal("approve", {"by": "alice"})
    result = await asyncio.wait_for(handle.result(), 150)
    assert result.stage == Stage.MERGED and result.links.merged_commit == "merged0123456789"
    assert world.merge_attempts > 5, "more attempts than the old five-attempt cap allowed"
    assert world.cleanups and world.cleanups[-1].delete_remote_branch
