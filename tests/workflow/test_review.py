"""A change with nothing to build is reviewable (issue 14, item 7): the workflow publishes a
summary page instead of a build, and the approval request and status carry the diff stat,
the changed files and the compare view. Time-skipping server, stand-in activities."""

from __future__ import annotations

from conftest import eventually
from temporalio import activity
from test_workflow import World, make_request, run, wait_stage  # noqa: F401 (the fixture)

from honk.workflows.contract import (
    ACTIVITY_CHECKS,
    ACTIVITY_PREPARE,
    ChecksOutcome,
    ChecksTask,
    PreparedWorkspace,
    Stage,
    WorkspaceRef,
)

STAT = " app.txt | 2 +-\n 1 file changed, 1 insertion(+), 1 deletion(-)"


class NoTargetsWorld(World):
    """A repository with checks and no build targets; the checks report the diff stat."""

    @activity.defn(name=ACTIVITY_PREPARE)
    async def prepare(self, ref: WorkspaceRef) -> PreparedWorkspace:
        return PreparedWorkspace(base_sha="base0", head_sha="base0", targets=[], checks=["unit"])

    @activity.defn(name=ACTIVITY_CHECKS)
    async def run_checks(self, task: ChecksTask) -> ChecksOutcome:
        outcome = await World.run_checks(self, task)
        return outcome.model_copy(update={"diff_stat": STAT})


async def test_nothing_to_build_publishes_a_summary_for_review(run):  # noqa: F811 (the imported fixture)
    world = NoTargetsWorld()
    request = make_request().model_copy(update={"remote": "git@github.com:acme/app.git"})
    handle = await run(world, request)
    waiting = await wait_stage(handle, Stage.AWAITING_APPROVAL)

    assert waiting.builds == 0 and waiting.links.install_page is None
    assert waiting.links.summary_page and waiting.links.summary_page.endswith("/index.html")
    assert waiting.diff_stat == STAT and waiting.changed_files == ["app.txt"]
    assert waiting.links.compare == f"https://github.com/acme/app/compare/main...{waiting.links.work_branch}"

    summary = world.published[0]
    assert summary.artifacts == [] and summary.review is not None
    assert summary.review.diff_stat == STAT and summary.review.changed_files == ["app.txt"]
    assert summary.review.compare == waiting.links.compare and "Checks passed" in summary.review.checks

    async def approval():  # notices go out from an ordered queue, just after the stage
        return next((n for n in world.notices if n.event == "needs_approval"), None)

    notice = await eventually(approval, what="the approval request")
    assert notice.review is not None and notice.review.diff_stat == STAT
    assert notice.review.changed_files == ["app.txt"] and notice.links.summary_page == waiting.links.summary_page
    assert [e.stage for e in waiting.timeline if e.kind == "stage"][-2:] == [Stage.PUBLISHING, Stage.AWAITING_APPROVAL]

    await handle.signal("approve", {"by": "alice"})
    assert (await handle.result()).stage == Stage.MERGED
