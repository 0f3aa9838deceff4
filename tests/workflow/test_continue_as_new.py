"""Every path still works after continue-as-new: the prepared targets, the tested commit and
the deadline are carried, so a merge repair builds again and decisions still land."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from temporalio import activity
from test_workflow import World, continued_status, make_request, run_alone, status_now, wait_stage  # noqa: F401 (the fixture)

from honk.workflows.contract import (
    ACTIVITY_BUILD,
    BuildOutcome,
    BuildTask,
    RequestState,
    RequestStatus,
    Stage,
)


class CountingWorld(World):
    def __init__(self, **kw) -> None:
        super().__init__(checks=[False, True], **kw)  # a repair round makes the history long
        self.builds: list[BuildTask] = []

    @activity.defn(name=ACTIVITY_BUILD)
    async def build(self, task: BuildTask) -> BuildOutcome:
        self.builds.append(task)
        return await super().build(task)


async def continued(handle) -> RequestStatus:
    async def probe():
        return await continued_status(handle)

    from conftest import eventually

    return await eventually(probe, timeout=60, what="continued as new while awaiting approval")


async def approve_again_after_repair(handle, world, builds: int) -> None:
    """The merge met a conflict, the agent repaired it and the new build awaits approval."""
    from conftest import eventually

    async def back_for_approval():
        status = await status_now(handle)
        return status is not None and status.stage == Stage.AWAITING_APPROVAL and len(world.builds) == builds

    await eventually(back_for_approval, timeout=60, what="the repaired change back for approval")
    await handle.signal("approve", {"by": "alice"})


@pytest.mark.parametrize("path", ["merge_repair", "request_changes", "cancel", "expiry"])
async def test_each_path_after_continue_as_new(run_alone, path):  # noqa: F811 (the imported fixture)
    world = CountingWorld(merge_failures=["MergeConflict"] if path == "merge_repair" else None)
    handle = await run_alone(world, make_request(history_limit=50))
    await continued(handle)
    if path == "merge_repair":
        await handle.signal("approve", {"by": "alice"})
        await approve_again_after_repair(handle, world, builds=2)  # a repaired change is approved anew
        result = await handle.result()
        assert result.stage == Stage.MERGED and result.continued >= 1
        assert len(world.builds) == 2, "the repaired change was built again, not merged unbuilt"
        assert world.merges[-1].tested_sha == "sha3"
    elif path == "request_changes":
        await handle.signal("request_changes", {"by": "alice", "text": "make it blue"})
        await wait_stage(handle, Stage.EDITING)
        await handle.signal("approve", {"by": "alice"})  # refused until the new round is ready
        status = await wait_stage(handle, Stage.AWAITING_APPROVAL)
        assert status.round == 2 and len(world.builds) == 2
        await handle.signal("approve", {"by": "alice"})
        assert (await handle.result()).stage == Stage.MERGED
    elif path == "cancel":
        await handle.signal("cancel", {"by": "bob", "text": "no longer needed"})
        result = await handle.result()
        assert result.stage == Stage.CANCELLED and world.cleanups
    else:
        result = await handle.result()
        assert result.stage == Stage.EXPIRED and world.events()[-2:] == ["reminder", "expired"]


async def test_a_run_continued_before_targets_were_carried_builds_its_merge_repair(run_alone):  # noqa: F811
    """A run continued by older code carries no prepared workspace: the merge repair prepares
    again (patch `carry-prepared`) rather than merging the repaired change unbuilt."""
    world = CountingWorld(merge_failures=["MergeConflict"])
    deadline = datetime.now(UTC) + timedelta(days=6)
    carried = RequestState(
        request_id="honk-app-old",
        repo="app",
        instruction="fix the crash when the queue is empty",
        requester="bob",
        stage=Stage.AWAITING_APPROVAL,
        round=1,
        attempt=1,
        tested_sha="sha1",
        approval_deadline=deadline,
        continued=1,
    )
    handle = await run_alone(world, make_request().model_copy(update={"carried": carried}))
    await handle.signal("approve", {"by": "alice"})
    await approve_again_after_repair(handle, world, builds=1)
    result = await handle.result()
    assert result.stage == Stage.MERGED
    assert len(world.builds) == 1, "the repaired change was built before merging"
    assert world.merges[-1].tested_sha == result.tested_sha != "sha1"
