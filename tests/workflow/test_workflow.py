"""ChangeRequestWorkflow on the time-skipping test server, with stand-in activities
registered under the real activity names."""

from __future__ import annotations

import asyncio
import contextlib
import os
from datetime import timedelta

import pytest
import temporalio.api.sdk.v1
from conftest import eventually, record_history
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from honk.workflows.change_request import ChangeRequestWorkflow
from honk.workflows.contract import (
    ACTIVITY_AGENT,
    ACTIVITY_BUILD,
    ACTIVITY_CHECKS,
    ACTIVITY_CLEANUP,
    ACTIVITY_MERGE,
    ACTIVITY_NOTIFY,
    ACTIVITY_PREPARE,
    ACTIVITY_PUBLISH,
    QUERY_STATUS,
    SA_STAGE,
    UPDATE_DECIDE,
    AgentOutcome,
    AgentTask,
    ArtifactInfo,
    BuildOutcome,
    BuildTargetRef,
    BuildTask,
    ChangeRequest,
    CheckRun,
    ChecksOutcome,
    ChecksTask,
    CleanupTask,
    DecisionOutcome,
    DecisionUpdate,
    MergeOutcome,
    MergeTask,
    Notice,
    PreparedWorkspace,
    Published,
    PublishTask,
    RequestOptions,
    RequestStatus,
    Stage,
    Usage,
    WorkspaceRef,
)


class World:
    """Stand-in activities; `gates` hold an activity until the test releases it."""

    def __init__(
        self, checks: list[bool] | None = None, build_fails: int = 0, merge_failures: list[str] | None = None
    ) -> None:
        self.checks = checks or [True]
        self.build_fails = build_fails
        self.merge_failures = list(merge_failures or [])
        self.gates: dict[str, asyncio.Event] = {}
        self.entered: dict[str, asyncio.Event] = {}
        self.cancelled: list[str] = []
        self.agent_tasks: list[AgentTask] = []
        self.notices: list[Notice] = []
        self.merges: list[MergeTask] = []
        self.cleanups: list[CleanupTask] = []
        self.protected: list[str] = []  # protected paths the checks report as changed
        self.published: list[PublishTask] = []
        self.agent_checked = False  # the agent's own check run passed on the tree it pushed
        self.check_tasks: list[ChecksTask] = []
        self.build_tasks: list[BuildTask] = []

    def hold(self, name: str) -> None:
        self.gates[name] = asyncio.Event()
        self.entered[name] = asyncio.Event()

    async def gate(self, name: str) -> None:
        if name not in self.gates:
            return
        self.entered[name].set()
        try:
            while not self.gates[name].is_set():
                activity.heartbeat()
                await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            self.cancelled.append(name)
            raise

    @activity.defn(name=ACTIVITY_PREPARE)
    async def prepare(self, ref: WorkspaceRef) -> PreparedWorkspace:
        return PreparedWorkspace(
            base_sha="base0", head_sha="base0", targets=[BuildTargetRef(name="android")], checks=["unit"]
        )

    @activity.defn(name=ACTIVITY_AGENT)
    async def agent(self, task: AgentTask) -> AgentOutcome:
        self.agent_tasks.append(task)
        await self.gate("agent")
        return AgentOutcome(
            summary=f"edit {task.invocation}",
            changed_files=["app.txt"],
            head_sha=f"sha{task.invocation}",
            backend="fake",
            usage=Usage(input_tokens=1000, output_tokens=100, cost_usd=0.01),
            checks=self.agent_checks(task) if self.agent_checked else None,
        )

    def agent_checks(self, task: AgentTask) -> ChecksOutcome:
        run = CheckRun(name="unit", command=["pytest"], exit_code=0, duration_s=0.1)
        sha = f"sha{task.invocation}"
        return ChecksOutcome(passed=True, head_sha=sha, runs=[run], protected_changes=list(self.protected), reused=True)

    @activity.defn(name=ACTIVITY_CHECKS)
    async def run_checks(self, task: ChecksTask) -> ChecksOutcome:
        self.check_tasks.append(task)
        await self.gate("checks")
        passed = self.checks.pop(0) if len(self.checks) > 1 else self.checks[0]
        run = CheckRun(
            name="unit",
            command=["pytest"],
            exit_code=0 if passed else 1,
            duration_s=0.1,
            output="" if passed else "FAILED test_queue.py::test_empty - AssertionError: boom",
        )
        return ChecksOutcome(
            passed=passed, head_sha=f"sha{task.attempt}", runs=[run], protected_changes=list(self.protected)
        )

    @activity.defn(name=ACTIVITY_BUILD)
    async def build(self, task: BuildTask) -> BuildOutcome:
        self.build_tasks.append(task)
        await self.gate("build")
        if self.build_fails:
            self.build_fails -= 1
            raise ApplicationError("aapt: error: resource missing", type="BuildFailed", non_retryable=True)
        art = ArtifactInfo(target=task.target, name="app.apk", path="/tmp/app.apk", sha256="0" * 64, size=10)
        return BuildOutcome(target=task.target, head_sha="x", artifacts=[art])

    @activity.defn(name=ACTIVITY_PUBLISH)
    async def publish(self, task: PublishTask) -> Published:
        self.published.append(task)
        arts = [a.model_copy(update={"url": f"http://store/{a.name}"}) for a in task.artifacts]
        return Published(install_page_url=f"http://store/{task.build_number}/index.html", artifacts=arts)

    @activity.defn(name=ACTIVITY_NOTIFY)
    async def notify(self, notice: Notice) -> None:
        if notice.event == "merged":
            await self.gate("merged notice")
        self.notices.append(notice)

    @activity.defn(name=ACTIVITY_MERGE)
    async def merge(self, task: MergeTask) -> MergeOutcome:
        self.merges.append(task)
        if self.merge_failures:
            kind = self.merge_failures.pop(0)
            raise ApplicationError(f"merging conflicts in: app.txt ({kind})", type=kind, non_retryable=True)
        return MergeOutcome(commit_sha="merged0123456789")

    @activity.defn(name=ACTIVITY_CLEANUP)
    async def cleanup(self, task: CleanupTask) -> None:
        self.cleanups.append(task)
        await self.gate("cleanup")

    def activities(self) -> list:
        return [
            self.prepare,
            self.agent,
            self.run_checks,
            self.build,
            self.publish,
            self.notify,
            self.merge,
            self.cleanup,
        ]

    def events(self) -> list[str]:
        return [n.event for n in self.notices if n.event != "status"]


def make_request(**options) -> ChangeRequest:
    return ChangeRequest(
        repo="app",
        remote="file:///nowhere.git",
        instruction="fix the crash when the queue is empty",
        requester="bob",
        approvers=["alice"],
        options=RequestOptions(**options),
    )


@contextlib.asynccontextmanager
async def workflow_runner(env, task_queue: str, test_name: str):
    """Start a worker with the given world and a request; yields `start(world) -> handle`.

    With HONK_RECORD_HISTORIES=1 every workflow a test ran is saved as a replay fixture
    (tests/workflow/histories/, see tests/workflow/test_replay.py)."""
    workers = []
    handles = []

    async def start(world: World, request: ChangeRequest | None = None, wf_id: str | None = None):
        worker = Worker(
            env.client,
            task_queue=task_queue,
            workflows=[ChangeRequestWorkflow],
            activities=world.activities(),
            max_heartbeat_throttle_interval=timedelta(milliseconds=200),
            default_heartbeat_throttle_interval=timedelta(milliseconds=200),
        )
        task = asyncio.create_task(worker.run())
        workers.append((worker, task))
        handle = await env.client.start_workflow(
            ChangeRequestWorkflow.run,
            request or make_request(),
            id=wf_id or f"honk-app-{task_queue}",
            task_queue=task_queue,
        )
        handles.append(handle)
        return handle

    yield start
    if os.environ.get("HONK_RECORD_HISTORIES", "0") != "0":
        for number, handle in enumerate(handles):
            await record_history(handle, f"{test_name}-{number}")
            latest = env.client.get_workflow_handle(handle.id)
            if (await latest.describe()).run_id != handle.first_execution_run_id:
                await record_history(latest, f"{test_name}-{number}-continued")
    # A workflow left open without its worker would stop the test server from skipping time.
    for handle in handles:
        try:
            await handle.terminate("test finished")
        except Exception:
            pass
    for worker, _task in workers:
        await worker.shutdown()


@pytest.fixture
async def run(time_env, task_queue, request):
    async with workflow_runner(time_env, task_queue, request.node.name) as start:
        yield start


@pytest.fixture
async def run_alone(own_time_env, task_queue, request):
    """For tests that let the server skip days: on their own server, no other test's open
    workflow or activity can hold the clock."""
    async with workflow_runner(own_time_env, task_queue, request.node.name) as start:
        yield start


async def continued_status(handle) -> RequestStatus | None:
    """The status of the run that continued as new, once there is one. Only the new run is
    asked: a query racing the old run's close can leave the test server without the new
    run's first task (it then waits forever)."""
    if (await handle.describe()).run_id == handle.first_execution_run_id:
        return None
    s = await status_now(handle)
    return s if s is not None and s.continued >= 1 and s.stage == Stage.AWAITING_APPROVAL else None


async def status_now(handle) -> RequestStatus | None:
    """The status, or None when the query timed out: the test server now and then leaves a
    query to a run that is just continuing as new unanswered; asking again gets an answer."""
    try:
        return await handle.query(QUERY_STATUS, result_type=RequestStatus, rpc_timeout=timedelta(seconds=5))
    except RPCError as err:
        if err.status != RPCStatusCode.DEADLINE_EXCEEDED and "deadline" not in str(err):
            raise
        return None


async def stage_of(handle) -> Stage:
    return (await handle.query(QUERY_STATUS, result_type=RequestStatus)).stage


async def wait_stage(handle, stage: Stage, **kw) -> RequestStatus:
    async def probe():
        status = await handle.query(QUERY_STATUS, result_type=RequestStatus)
        if status.stage.terminal and status.stage != stage:
            raise AssertionError(f"ended as {status.stage}: {status.last_error}")
        return status if status.stage == stage else None

    return await eventually(probe, what=f"stage {stage.value}", **kw)


async def test_happy_path_merges_with_approver_and_tested_commit(run, time_env):
    world = World()
    handle = await run(world)
    waiting = await wait_stage(handle, Stage.AWAITING_APPROVAL)
    assert waiting.links.install_page and waiting.usage.input_tokens == 1000
    assert (await handle.describe()).typed_search_attributes.get(SA_STAGE) == "AWAITING_APPROVAL"

    await handle.signal("approve", {"by": "alice", "comment": "ship it"})
    result = await handle.result()

    assert result.stage == Stage.MERGED
    assert result.links.merged_commit == "merged0123456789"
    assert world.merges[0].approved_by == "alice" and world.merges[0].tested_sha == "sha1"
    assert world.merges[0].requested_by == "bob"
    assert world.events() == ["received", "build_ready", "needs_approval", "merged"]
    assert [e.stage for e in result.timeline if e.kind == "stage"] == [
        Stage.RECEIVED,
        Stage.PREPARING,
        Stage.EDITING,
        Stage.CHECKING,
        Stage.BUILDING,
        Stage.PUBLISHING,
        Stage.AWAITING_APPROVAL,
        Stage.MERGING,
        Stage.MERGED,
    ]
    assert world.cleanups, "workspace and work branch are removed after merging"
    assert (await handle.describe()).typed_search_attributes.get(SA_STAGE) == "MERGED"


async def test_a_tree_the_agent_checked_is_not_checked_again(run):
    world = World()
    world.agent_checked = True
    world.protected = [".honk.toml"]
    handle = await run(world)
    waiting = await wait_stage(handle, Stage.AWAITING_APPROVAL)

    assert world.check_tasks == [], "the agent's passing run of this tree stands for the CHECKING stage"
    stages = [e.stage for e in waiting.timeline if e.kind == "stage"]
    assert Stage.CHECKING in stages and Stage.BUILDING in stages
    assert any("not run again" in e.message for e in waiting.timeline)
    assert waiting.protected_changes == [".honk.toml"]
    # Later steps name the tip Honk pushed, so a host still holding the workspace skips the fetch.
    assert [b.workspace.head_sha for b in world.build_tasks] == ["sha1"] and world.build_tasks[0].in_place
    await handle.signal("approve", {"by": "alice"})
    result = await handle.result()
    assert result.stage == Stage.MERGED and world.merges[0].tested_sha == "sha1"
    assert world.merges[0].workspace.head_sha is None, "the merge fetches the newest base"


async def test_a_status_line_goes_out_only_for_a_stage_that_lasts(run):
    world = World()
    world.hold("agent")
    handle = await run(world)
    await asyncio.wait_for(world.entered["agent"].wait(), 30)

    async def editing_told():
        return any(n.event == "status" and n.stage == Stage.EDITING for n in world.notices)

    await eventually(editing_told, timeout=30, what="the EDITING line, once the stage lasted a second")
    world.gates["agent"].set()
    await wait_stage(handle, Stage.AWAITING_APPROVAL)

    async def approval_told():
        return any(n.event == "needs_approval" for n in world.notices)

    await eventually(approval_told, what="the approval request")
    # Preparing, checking, building and publishing took no time: the next notice overtook them.
    assert [n.stage for n in world.notices if n.event == "status"] == [Stage.EDITING]
    assert world.events() == ["received", "build_ready", "needs_approval"]


async def test_protected_changes_are_called_out_to_the_approver(run):
    world = World()
    world.protected = [".honk.toml", "checks/unit.sh"]
    handle = await run(world, make_request(allow_protected_changes=True))
    waiting = await wait_stage(handle, Stage.AWAITING_APPROVAL)

    assert world.agent_tasks[0].allow_protected_changes is True
    assert waiting.protected_changes == [".honk.toml", "checks/unit.sh"]

    async def approval_notice():  # notices go out from an ordered queue, just after the stage
        return next((n for n in world.notices if n.event == "needs_approval"), None)

    approval = await eventually(approval_notice, what="the approval request")
    assert approval.protected_changes == [".honk.toml", "checks/unit.sh"]
    assert world.published[0].protected_changes == [".honk.toml", "checks/unit.sh"]
    # The Temporal UI's card (current details, served by the built-in metadata query).
    metadata = await handle.query("__temporal_workflow_metadata", result_type=temporalio.api.sdk.v1.WorkflowMetadata)
    assert "This change modifies protected files: .honk.toml, checks/unit.sh." in metadata.current_details
    await handle.signal("cancel", {"by": "bob"})


async def test_checks_fail_then_pass_feeds_failure_back_to_agent(run):
    world = World(checks=[False, True])
    handle = await run(world)
    status = await wait_stage(handle, Stage.AWAITING_APPROVAL)
    assert status.attempt == 2 and status.round == 1
    assert len(world.agent_tasks) == 2
    assert "AssertionError: boom" in world.agent_tasks[1].feedback[0]
    assert world.agent_tasks[1].attempt == 2
    await handle.signal("approve", {"by": "alice"})
    assert (await handle.result()).stage == Stage.MERGED


async def test_checks_never_pass_fails_with_reason(run):
    world = World(checks=[False])
    handle = await run(world, make_request(max_check_attempts=3))
    result = await handle.result()
    assert result.stage == Stage.FAILED
    assert "checks still failing after 3 attempts" in result.last_error
    assert "AssertionError: boom" in result.last_error
    assert len(world.agent_tasks) == 3
    assert world.events()[-1] == "failed" and world.cleanups and not world.merges


async def test_failed_build_goes_back_to_agent(run):
    world = World(build_fails=1)
    handle = await run(world)
    await wait_stage(handle, Stage.AWAITING_APPROVAL)
    assert "aapt: error: resource missing" in world.agent_tasks[1].feedback[0]


async def test_every_build_of_a_request_has_its_own_number(run):
    """Builds are numbered by the second they start; two in one second (a failed build sent
    straight back to a quick agent) would share a number, and the store prefix with it."""
    world = World(build_fails=1)
    handle = await run(world)
    waiting = await wait_stage(handle, Stage.AWAITING_APPROVAL)
    numbers = [b.build_number for b in world.build_tasks]
    assert len(numbers) == 2 and numbers[1] > numbers[0], numbers
    assert waiting.build_number == numbers[1] and world.published[-1].build_number == numbers[1]


async def test_request_changes_then_approve(run):
    world = World()
    handle = await run(world)
    await wait_stage(handle, Stage.AWAITING_APPROVAL)
    await handle.signal("request_changes", {"by": "alice", "text": "make the button blue"})

    async def second_round_waiting():
        s = await handle.query(QUERY_STATUS, result_type=RequestStatus)
        return s if s.round == 2 and s.stage == Stage.AWAITING_APPROVAL else None

    status = await eventually(second_round_waiting, what="round 2 awaiting approval")
    assert world.agent_tasks[-1].feedback == ["alice: make the button blue"]
    assert world.agent_tasks[-1].round == 2
    assert status.usage.input_tokens == 2000
    await handle.signal("approve", {"by": "alice"})
    result = await handle.result()
    assert result.stage == Stage.MERGED and result.round == 2
    assert world.events().count("needs_approval") == 2


async def test_merge_message_has_each_round_and_the_feedback(run):
    world = World()
    handle = await run(world)
    await wait_stage(handle, Stage.AWAITING_APPROVAL)
    await handle.signal("request_changes", {"by": "alice", "text": "make the button blue"})

    async def second_round_waiting():
        s = await handle.query(QUERY_STATUS, result_type=RequestStatus)
        return s if s.round == 2 and s.stage == Stage.AWAITING_APPROVAL else None

    await eventually(second_round_waiting, what="round 2 awaiting approval")
    await handle.signal("approve", {"by": "alice"})
    assert (await handle.result()).stage == Stage.MERGED
    task = world.merges[-1]
    assert len(task.title) <= 72 and not task.title.endswith(".")
    assert "Round 1: edit 1" in task.body and "Round 2: edit 2" in task.body
    assert "- alice: make the button blue" in task.body


async def test_feedback_mid_round_is_queued_for_next_round(run, time_env):
    world = World()
    world.hold("agent")
    handle = await run(world)
    with time_env.auto_time_skipping_disabled():
        await asyncio.wait_for(world.entered["agent"].wait(), 10)
        await handle.signal("request_changes", {"by": "bob", "text": "also handle a full queue"})
        status = await eventually(lambda: _with_feedback(handle), what="feedback visible as queued in status")
        assert status.stage == Stage.EDITING
        assert any("queued for the next round" in e.message for e in status.timeline)
        world.gates["agent"].set()

        async def round_two():
            s = await handle.query(QUERY_STATUS, result_type=RequestStatus)
            return s if s.round == 2 and s.stage == Stage.AWAITING_APPROVAL else None

        await eventually(round_two, what="round 2 awaiting approval")
    assert world.agent_tasks[0].feedback == []
    assert world.agent_tasks[1].feedback == ["bob: also handle a full queue"]

    # The first round's build was not offered for approval: the feedback superseded it.
    # (Notices go out from an ordered queue, just after the stage is entered.)
    async def asked_once() -> bool:
        return "needs_approval" in world.events()

    await eventually(asked_once, what="the approval request")
    assert world.events().count("needs_approval") == 1


async def _with_feedback(handle):
    s = await handle.query(QUERY_STATUS, result_type=RequestStatus)
    return s if s.pending_feedback else None


@pytest.mark.parametrize(
    "stage,held",
    [
        (Stage.EDITING, "agent"),
        (Stage.CHECKING, "checks"),
        (Stage.BUILDING, "build"),
        (Stage.AWAITING_APPROVAL, None),
    ],
)
async def test_cancel_in_each_waiting_stage(run, time_env, stage, held):
    world = World()
    if held:
        world.hold(held)
    handle = await run(world)
    with time_env.auto_time_skipping_disabled():
        await wait_stage(handle, stage)
        if held:
            await asyncio.wait_for(world.entered[held].wait(), 10)
        await handle.signal("cancel", {"by": "bob", "text": "not needed any more"})
        result = await asyncio.wait_for(handle.result(), 30)
    assert result.stage == Stage.CANCELLED
    assert world.cleanups and not world.merges
    assert world.events()[-1] == "cancelled"
    assert "Cancelled by bob: not needed any more" in result.timeline[-1].message
    if held:
        assert world.cancelled == [held], "the running activity was cancelled, not abandoned"


async def test_approval_timeout_reminds_then_expires(run_alone):
    world = World()
    handle = await run_alone(world)
    await wait_stage(handle, Stage.AWAITING_APPROVAL)
    result = await handle.result()  # the test server skips the 7 days
    assert result.stage == Stage.EXPIRED
    events = world.events()
    assert events[-2:] == ["reminder", "expired"]
    entered = next(e.at for e in result.timeline if e.stage == Stage.AWAITING_APPROVAL and e.kind == "stage")
    expired = result.timeline[-1].at
    assert timedelta(days=7) <= expired - entered < timedelta(days=7, minutes=5)
    reminder = next(n for n in world.notices if n.event == "reminder")
    assert "expires" in reminder.text
    assert world.cleanups and not world.merges


async def test_refused_decisions_never_advance(run, time_env):
    world = World()
    world.hold("agent")
    handle = await run(world)
    with time_env.auto_time_skipping_disabled():
        await asyncio.wait_for(world.entered["agent"].wait(), 10)
        # Approving while the agent works is out of stage, even for an approver.
        await handle.signal("approve", {"by": "alice"})
        world.gates["agent"].set()
        await wait_stage(handle, Stage.AWAITING_APPROVAL)
        await handle.signal("approve", {"by": "mallory"})  # not an approver
        await handle.signal("approve", {})  # nobody
        await handle.signal("request_changes", {"by": "alice", "text": "  "})  # says nothing
        await handle.signal("cancel", {"by": "mallory"})  # neither requester nor approver
        # Through the update: refused on the merits, answered at once, and recorded too.
        refused_update = await handle.execute_update(
            UPDATE_DECIDE, DecisionUpdate(action="approve", by="mallory"), result_type=DecisionOutcome
        )
        assert not refused_update.accepted
        assert refused_update.message == "mallory is not an approver for app; approvers: alice"
        # Malformed input is rejected by the validator and leaves no trace.
        with pytest.raises(WorkflowUpdateFailedError) as malformed:
            await handle.execute_update(
                UPDATE_DECIDE, DecisionUpdate(action="approve", by=""), result_type=DecisionOutcome
            )
        assert "does not say who made it" in str(malformed.value.cause)

        async def six_refusals():
            s = await handle.query(QUERY_STATUS, result_type=RequestStatus)
            return s if sum(e.kind == "refused" for e in s.timeline) == 6 else None

        status = await eventually(six_refusals, what="six refusals recorded")
        assert status.stage == Stage.AWAITING_APPROVAL and status.approved_by is None
        reasons = [e.message for e in status.timeline if e.kind == "refused"]
        assert "nothing to approve yet: the request is EDITING" in reasons[0]
        assert "mallory is not an approver" in reasons[1]
        assert "does not say who made it" in reasons[2]
        assert "say what should change" in reasons[3]
        assert "neither the requester nor an approver" in reasons[4]
        assert "Refused approve from mallory: mallory is not an approver for app; approvers: alice" == reasons[5]

        # Notices go out from a queue, shortly after the timeline records the refusal.
        async def six_answered():
            return world.events().count("refused") == 6

        await eventually(six_answered, what="six refusals answered in the thread")

        outcome = await handle.execute_update(
            UPDATE_DECIDE, DecisionUpdate(action="approve", by="alice"), result_type=DecisionOutcome
        )
        assert outcome.accepted and "Approved by alice" in outcome.message
        result = await asyncio.wait_for(handle.result(), 30)
    assert result.stage == Stage.MERGED and len(world.merges) == 1


async def test_rounds_are_bounded(run):
    world = World()
    handle = await run(world, make_request(max_rounds=1))
    await wait_stage(handle, Stage.AWAITING_APPROVAL)
    refused = await handle.execute_update(
        UPDATE_DECIDE,
        DecisionUpdate(action="request_changes", by="alice", text="more"),
        result_type=DecisionOutcome,
    )
    assert not refused.accepted and "all 1 rounds are used" in refused.message


async def test_continue_as_new_preserves_state(run):
    world = World(checks=[False, True])
    handle = await run(world, make_request(history_limit=50))

    status = await eventually(lambda: continued_status(handle), timeout=60, what="continue-as-new, awaiting approval")
    assert status.attempt == 2 and status.usage.input_tokens == 2000
    assert any("Checks failed" in e.message for e in status.timeline), "timeline carried over"
    await handle.signal("approve", {"by": "alice"})
    result = await handle.result()
    assert result.stage == Stage.MERGED and result.continued >= 1
    assert world.merges[0].tested_sha == "sha2", "the tested commit survived continue-as-new"
    assert world.events().count("needs_approval") == 1, "no second approval message after continuing"


async def test_workflow_cancel_from_temporal_cleans_up(run, time_env):
    world = World()
    handle = await run(world)
    await wait_stage(handle, Stage.AWAITING_APPROVAL)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    assert world.cleanups and world.events()[-1] == "cancelled"


async def merged_then_cancelled(run, gate: str):
    """A request approved and merged, held at `gate` after the merge and cancelled from Temporal there."""
    world = World()
    world.hold(gate)
    handle = await run(world)
    await wait_stage(handle, Stage.AWAITING_APPROVAL)
    await handle.signal("approve", {"by": "alice"})
    await asyncio.wait_for(world.entered[gate].wait(), 30)
    await handle.cancel()
    return world, handle


async def test_a_cancel_during_the_cleanup_after_the_merge_leaves_the_request_merged(run):
    world, handle = await merged_then_cancelled(run, "cleanup")

    async def cleanup_cancelled():
        return "cleanup" in world.cancelled

    await eventually(cleanup_cancelled, what="the cancel to reach the cleanup step")
    world.gates["cleanup"].set()
    result = await handle.result()
    assert result.stage == Stage.MERGED and result.links.merged_commit == "merged0123456789"
    assert world.events()[-1] == "merged" and "too late" in world.notices[-1].text
    assert len(world.merges) == 1 and len(world.cleanups) == 2, "cleaned up after all"


async def test_a_cancel_while_the_merged_notice_goes_out_leaves_the_request_merged(run):
    world, handle = await merged_then_cancelled(run, "merged notice")

    async def cancel_handled():  # the run took a workflow task after the cancel request
        kinds = [e.event_type for e in (await handle.fetch_history()).events]
        requested = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED
        return requested in kinds and EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED in kinds[kinds.index(requested) :]

    await eventually(cancel_handled, what="the run to see the cancel")
    world.gates["merged notice"].set()
    result = await handle.result()
    assert result.stage == Stage.MERGED and world.events()[-1] == "merged"


async def test_merge_repairs_are_bounded_and_each_is_approved(run):
    world = World(merge_failures=["CombinedChecksFailed"] * 5)
    handle = await run(world, make_request(max_merge_repairs=1))
    await wait_stage(handle, Stage.AWAITING_APPROVAL)
    await handle.signal("approve", {"by": "alice"})

    async def repaired():
        s = await handle.query(QUERY_STATUS, result_type=RequestStatus)
        return s if s.stage == Stage.AWAITING_APPROVAL and s.tested_sha == "sha2" else None

    await eventually(repaired, what="the repaired change awaiting approval")
    await handle.signal("approve", {"by": "alice"})
    result = await handle.result()
    assert result.stage == Stage.FAILED and len(world.merges) == 2
    assert "gave up after 1 repair rounds" in result.last_error


async def test_unrepairable_merge_failure_fails_the_request(run):
    world = World(merge_failures=["PushRejected"])
    handle = await run(world)
    await wait_stage(handle, Stage.AWAITING_APPROVAL)
    await handle.signal("approve", {"by": "alice"})
    result = await handle.result()
    assert result.stage == Stage.FAILED and "PushRejected" in result.last_error
    assert len(world.agent_tasks) == 1
