"""The merge step under the approval rules of issue 12 (part of ChangeRequestWorkflow): the
merge, once started, runs to its end whatever cancels meanwhile, and a repaired change goes
back to the approvers before it may merge."""

from __future__ import annotations

import asyncio

from temporalio import workflow

from honk.workflows import approvals, patches, steps, wording
from honk.workflows.contract import (
    ChangeRequest,
    Decision,
    MergeOutcome,
    MergeTask,
    RequestState,
    Stage,
    WorkspaceRef,
)
from honk.workflows.decisions import Decisions
from honk.workflows.limits import Limits
from honk.workflows.record import Record
from honk.workflows.step_calls import RequestCancelled, RequestFailed, StepCalls

# Merge failures the agent can repair: it gets the latest base merged in and the reason.
REPAIRABLE_MERGE_FAILURES = ("MergeConflict", "CombinedChecksFailed")


class ApprovedMerge:
    """Mixed into the workflow; uses its request, state, record, steps and decisions."""

    request: ChangeRequest
    state: RequestState
    record: Record
    steps: StepCalls
    decisions: Decisions
    workspace: WorkspaceRef
    cancelled_while_merging: bool
    limits: Limits

    async def await_decision(self) -> str:
        raise NotImplementedError

    def commit_title(self) -> str:
        raise NotImplementedError

    def commit_body(self) -> str:
        raise NotImplementedError

    async def cleanup(self) -> None:
        raise NotImplementedError

    def merge_task(self, approved_by: str) -> MergeTask:
        return MergeTask(
            workspace=self.workspace,
            strategy=self.request.options.merge_strategy,
            title=self.commit_title(),
            body=self.commit_body(),
            requested_by=self.request.requester,
            approved_by=approved_by,
            tested_sha=self.state.tested_sha or "",
        )

    def merged_text(self, base: str, sha: str) -> str:
        if self.cancelled_while_merging:
            return wording.merged_despite_cancel(base, sha)
        return f"Merged into {base} as {sha}"

    async def merge_step(self, task: MergeTask) -> MergeOutcome:
        """The merge activity. Once started it runs to its end: a cancel from Temporal waits
        for it, so the request reports what really happened to the base."""
        call = self.steps.act(
            steps.MERGE,
            task,
            summary=f"Merge into {task.workspace.base_branch}",
            limit=self.limits.merge(),
            heartbeat=self.request.options.heartbeat_timeout,
            cancellable=False,
        )
        if not self.decisions.binding:
            return await call
        running = asyncio.ensure_future(call)
        try:
            return await asyncio.shield(running)
        except asyncio.CancelledError:
            self.cancelled_while_merging = True
            self.record.note("Cancel requested while merging; waiting for the merge to finish", kind="warning")
        try:
            return await running
        except RequestFailed as failure:
            self.decisions.cancellation = Decision(by="temporal", text=wording.cancel_after_merge_failed(str(failure)))
            raise asyncio.CancelledError() from failure

    async def conclude(self, outcome: MergeOutcome) -> None:
        """The change is on the base: clean up and say so. A cancel that arrives now cannot
        undo the merge, so the request stays MERGED and says the cancel came too late."""
        base = self.request.base_branch
        if outcome.already_merged:
            self.record.note("The change was already on the base (a retried merge found its own commit)")
        if outcome.rechecked:
            self.record.note(f"{base} had moved; checks passed again on the combined tree")
        self.state.links.merged_commit = outcome.commit_sha
        try:
            await self.cleanup()
        except (asyncio.CancelledError, RequestCancelled):
            if not workflow.patched(patches.MERGED_STAYS_MERGED):
                raise
            self.cancelled_while_merging = True
            self.record.note(wording.CANCEL_AFTER_MERGE, kind="warning")
            await self.cleanup()  # the cancel stopped the first one; this one runs to its end
        await self.record.enter(Stage.MERGED, f"Merged as {outcome.commit_sha[:12]}")
        await self.record.tell("merged", self.merged_text(base, outcome.commit_sha))

    async def approve_again(self) -> bool:
        """A repaired change is a new commit nobody approved: back to the approvers. True
        when they approve it, False when they request changes instead."""
        self.decisions.approval = None
        approvals.reset(self.state)
        self.record.note(wording.needs_new_approval(self.state.tested_sha), kind="warning")
        if self.state.pending_feedback:
            return False
        return await self.await_decision() == "approve"
