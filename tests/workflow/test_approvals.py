"""Approvals bind to what the approver saw (issue 12): a repaired change is approved again,
stale or out-of-order approvals are refused, a decision counts once, a cancel never tears a
merge, and the repository's approval policy holds. Time-skipping server, stand-in activities."""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta

import pytest
from conftest import eventually, record_history
from temporalio import activity
from temporalio.service import RPCError
from temporalio.worker import Worker
from test_workflow import World, make_request

from honk.workflows.change_request import ChangeRequestWorkflow
from honk.workflows.contract import (
    ACTIVITY_MERGE,
    QUERY_STATUS,
    UPDATE_DECIDE,
    ApprovalPolicy,
    ChangeRequest,
    DecisionOutcome,
    DecisionUpdate,
    MergeOutcome,
    MergeTask,
    RequestStatus,
    Stage,
)


class MovedBaseWorld(World):
    """The base moved since the checks; the merge re-checked the combined tree and pushed."""

    @activity.defn(name=ACTIVITY_MERGE)
    async def merge(self, task: MergeTask) -> MergeOutcome:
        self.merges.append(task)
        return MergeOutcome(commit_sha="merged0123456789", base_moved=True, rechecked=True)


class SlowMergeWorld(World):
    """The merge holds (pushing) until the test lets it finish."""

    @activity.defn(name=ACTIVITY_MERGE)
    async def merge(self, task: MergeTask) -> MergeOutcome:
        self.merges.append(task)
        await self.gate("merge")
        return MergeOutcome(commit_sha="merged0123456789")


class Stand:
    """Workers for one workflow that the test can stop and start again."""

    def __init__(self, env, task_queue: str) -> None:
        self.env, self.task_queue = env, task_queue
        self.workers: list[tuple[Worker, asyncio.Task]] = []
        self.handles: list = []

    def worker(self, world: World) -> None:
        worker = Worker(
            self.env.client,
            task_queue=self.task_queue,
            workflows=[ChangeRequestWorkflow],
            activities=world.activities(),
            # No sticky queue: a stopped worker's queue would hold the next task until a
            # timeout the time-skipping server never reaches.
            max_cached_workflows=0,
            max_heartbeat_throttle_interval=timedelta(milliseconds=200),
            default_heartbeat_throttle_interval=timedelta(milliseconds=200),
        )
        self.workers.append((worker, asyncio.create_task(worker.run())))

    async def stop(self) -> None:
        while self.workers:
            worker, _ = self.workers.pop()
            await worker.shutdown()

    async def start(self, world: World, request: ChangeRequest | None = None):
        self.worker(world)
        handle = await self.env.client.start_workflow(
            ChangeRequestWorkflow.run,
            request or make_request(),
            id=f"honk-app-{self.task_queue}",
            task_queue=self.task_queue,
        )
        self.handles.append(handle)
        return handle


@pytest.fixture
async def stand(time_env, task_queue, request):
    stand = Stand(time_env, task_queue)
    yield stand
    if os.environ.get("HONK_RECORD_HISTORIES") == "1":
        for number, handle in enumerate(stand.handles):
            await record_history(handle, f"{request.node.name}-{number}")
    for handle in stand.handles:
        try:
            await handle.terminate("test finished")
        except Exception:
            pass
    await stand.stop()


async def status_when(handle, check, what: str) -> RequestStatus:
    async def probe():
        try:
            status = await handle.query(QUERY_STATUS, result_type=RequestStatus)
        except RPCError:  # a restarted worker has not picked the request up yet
            return None
        return status if check(status) else None

    return await eventually(probe, what=what, timeout=60)


def awaiting(status: RequestStatus) -> bool:
    return status.stage == Stage.AWAITING_APPROVAL


async def _true(value: bool) -> bool:
    return value


def refusals(status: RequestStatus) -> list[str]:
    return [e.message for e in status.timeline if e.kind == "refused"]


async def test_repaired_conflict_needs_a_second_approval(stand):
    world = World(merge_failures=["MergeConflict"])
    handle = await stand.start(world)
    first = await status_when(handle, awaiting, "first build awaiting approval")
    await handle.signal("approve", {"by": "alice", "commit": first.tested_sha, "build": first.build_number})

    second = await status_when(
        handle, lambda s: awaiting(s) and s.tested_sha != first.tested_sha, "repaired build awaiting approval"
    )
    assert len(world.merges) == 1, "nothing merged under the first approval"
    repair = world.agent_tasks[-1]
    assert repair.update_base and "conflicts in: app.txt" in repair.feedback[0]
    assert second.approved_by is None  # (build numbers are seconds: instant stand-ins may share one)
    await eventually(lambda: _true(world.events().count("needs_approval") == 2), what="a second approval request")
    assert any("needs a new approval" in e.message for e in second.timeline)

    # The approver of the first build cannot approve the repaired one by naming the old commit.
    await handle.signal("approve", {"by": "alice", "commit": first.tested_sha})
    refused = await status_when(handle, lambda s: refusals(s), "stale approval refused")
    assert f"names commit {first.tested_sha}" in refusals(refused)[0]
    assert f"awaits approval is commit {second.tested_sha}" in refusals(refused)[0]
    await eventually(lambda: _true(world.events().count("refused") == 1), what="the refusal told in the thread")

    await handle.signal("approve", {"by": "alice"})
    result = await handle.result()
    assert result.stage == Stage.MERGED and len(world.merges) == 2
    assert world.merges[1].tested_sha == second.tested_sha
    assert result.approved_sha == second.tested_sha
    assert any(f"Approved by alice (commit {second.tested_sha}" in e.message for e in result.timeline)


async def test_clean_recheck_on_a_moved_base_merges_without_a_second_approval(stand):
    world = MovedBaseWorld()
    handle = await stand.start(world)
    await status_when(handle, awaiting, "awaiting approval")
    await handle.signal("approve", {"by": "alice"})
    result = await handle.result()
    assert result.stage == Stage.MERGED and len(world.merges) == 1
    assert world.events().count("needs_approval") == 1
    assert any("had moved; checks passed again" in e.message for e in result.timeline)


async def test_an_approval_naming_another_build_is_refused(stand):
    world = World()
    handle = await stand.start(world)
    waiting = await status_when(handle, awaiting, "awaiting approval")
    # Refused on the merits: answered (accepted=False) and recorded, like a signal's refusal.
    refused = await handle.execute_update(
        UPDATE_DECIDE,
        DecisionUpdate(action="approve", by="alice", build=(waiting.build_number or 0) - 60),
        result_type=DecisionOutcome,
    )
    assert not refused.accepted and "names build #" in refused.message
    assert (await handle.query(QUERY_STATUS, result_type=RequestStatus)).approved_by is None


async def test_changes_then_approve_while_no_worker_runs(stand):
    world = World()
    handle = await stand.start(world)
    await status_when(handle, awaiting, "awaiting approval")
    await stand.stop()
    await handle.signal("request_changes", {"by": "alice", "text": "make the button blue"})
    await handle.signal("approve", {"by": "alice"})
    stand.worker(world)

    second = await status_when(handle, lambda s: awaiting(s) and s.round == 2, "round 2 awaiting approval")
    assert not world.merges, "the approval after the request for changes merged nothing"
    assert world.agent_tasks[-1].feedback == ["alice: make the button blue"]
    assert "changes were requested at" in refusals(second)[0]
    assert "approve the next build" in refusals(second)[0]

    await handle.signal("approve", {"by": "alice"})
    result = await handle.result()
    assert result.stage == Stage.MERGED and result.round == 2 and len(world.merges) == 1


async def test_a_decision_sent_by_update_and_signal_counts_once(stand):
    world = World()
    handle = await stand.start(world)
    await status_when(handle, awaiting, "awaiting approval")
    decision = {"by": "alice", "text": "make the button blue", "id": "d-123"}
    outcome = await handle.execute_update(
        UPDATE_DECIDE, DecisionUpdate(action="request_changes", **decision), result_type=DecisionOutcome
    )
    assert outcome.accepted
    await handle.signal("request_changes", decision)  # the CLI's fallback delivers it again

    status = await status_when(
        handle,
        lambda s: awaiting(s) and s.round == 2 and any("Ignored a repeat" in e.message for e in s.timeline),
        "round 2, the repeat ignored",
    )
    assert world.agent_tasks[-1].feedback == ["alice: make the button blue"]
    assert status.round == 2 and not status.pending_feedback, "no third round from the repeat"


async def test_cancel_from_temporal_while_merging_reports_the_merge(stand, time_env):
    world = SlowMergeWorld()
    world.hold("merge")
    handle = await stand.start(world)
    with time_env.auto_time_skipping_disabled():
        await status_when(handle, awaiting, "awaiting approval")
        await handle.signal("approve", {"by": "alice"})
        await asyncio.wait_for(world.entered["merge"].wait(), 20)
        await handle.cancel()
        await status_when(
            handle, lambda s: any("Cancel requested while merging" in e.message for e in s.timeline), "cancel seen"
        )
        world.gates["merge"].set()
        result = await asyncio.wait_for(handle.result(), 30)
    assert result.stage == Stage.MERGED and result.links.merged_commit == "merged0123456789"
    assert world.cancelled == [], "the merge itself was not cancelled"
    merged = [n for n in world.notices if n.event == "merged"]
    assert merged and "the cancel came too late" in merged[-1].text
    assert world.cleanups[-1].expect_sha == world.merges[0].tested_sha, "the branch is deleted only at our tip"


async def test_self_approval_is_refused_when_the_repository_forbids_it(stand):
    request = make_request().model_copy(
        update={"approvers": ["alice", "bob"], "policy": ApprovalPolicy(allow_self_approval=False)}
    )
    world = World()
    handle = await stand.start(world, request)
    await status_when(handle, awaiting, "awaiting approval")
    refused = await handle.execute_update(
        UPDATE_DECIDE, DecisionUpdate(action="approve", by="bob"), result_type=DecisionOutcome
    )
    assert not refused.accepted
    assert "bob requested this change and app does not allow approving your own change" in refused.message
    await handle.signal("approve", {"by": "alice"})
    assert (await handle.result()).stage == Stage.MERGED


async def test_distinct_approvers_are_counted(stand):
    request = make_request().model_copy(
        update={"approvers": ["alice", "carol"], "policy": ApprovalPolicy(min_approvers=2)}
    )
    world = World()
    handle = await stand.start(world, request)
    await status_when(handle, awaiting, "awaiting approval")
    await handle.signal("approve", {"by": "alice"})
    await handle.signal("approve", {"by": "alice"})
    status = await status_when(handle, lambda s: refusals(s), "second approval by alice refused")
    assert "alice already approved this commit" in refusals(status)[0]
    assert not world.merges
    await handle.signal("approve", {"by": "carol"})
    result = await handle.result()
    assert result.stage == Stage.MERGED and world.merges[0].approved_by == "alice, carol"
