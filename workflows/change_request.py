"""ChangeRequestWorkflow: one chat request from instruction to merged commit.

The run method reads like the business process; every side effect is a declared step (see
``steps``). Decisions arrive as signals (durable, fire-and-forget) or through the ``decide``
update (validated, immediate answer); both go through one rule book (``decisions``).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

# Pure modules of this package, passed through so every request shares one copy of each (by
# full name: `from honk.workflows import x` would load x afresh into each request's sandbox).
with workflow.unsafe.imports_passed_through():
    import honk.workflows.approvals as approvals
    import honk.workflows.metrics as metrics
    import honk.workflows.patches as patches
    import honk.workflows.steps as steps
    import honk.workflows.wording as wording
    from honk.workflows.contract import (
        QUERY_STATUS,
        SIGNAL_APPROVE,
        SIGNAL_CANCEL,
        SIGNAL_REQUEST_CHANGES,
        UPDATE_DECIDE,
        WORKFLOW_TYPE,
        AgentOutcome,
        AgentTask,
        BuildOutcome,
        BuildTask,
        ChangeRequest,
        ChecksOutcome,
        ChecksTask,
        CleanupTask,
        Decision,
        DecisionOutcome,
        DecisionUpdate,
        NoticeEvent,
        PreparedWorkspace,
        PublishTask,
        RequestState,
        RequestStatus,
        Stage,
        WorkspaceRef,
    )
    from honk.workflows.decisions import Decisions, RequestExpired
    from honk.workflows.limits import BUILD_EPOCH, Limits
    from honk.workflows.merging import REPAIRABLE_MERGE_FAILURES, ApprovedMerge
    from honk.workflows.record import Record
    from honk.workflows.step_calls import RequestCancelled, RequestFailed, StepCalls, build_failure, explain


@workflow.defn(name=WORKFLOW_TYPE)
class ChangeRequestWorkflow(ApprovedMerge):
    @workflow.init
    def __init__(self, request: ChangeRequest) -> None:
        self.request = request
        info = workflow.info()
        self.state = request.carried or RequestState(
            request_id=info.workflow_id,
            repo=request.repo,
            instruction=request.instruction,
            requester=request.requester,
        )
        self.workspace = WorkspaceRef(
            request_id=info.workflow_id,
            repo=request.repo,
            remote=request.remote,
            base_branch=request.base_branch,
            work_branch="honk/" + info.workflow_id.removeprefix("honk-"),
        )
        self.prepared: PreparedWorkspace | None = self.state.prepared  # carried over continue-as-new
        self.record = Record(request, self.state)
        self.limits = Limits(request.options, self.state)
        self.steps = StepCalls(cancelling=lambda: self.decisions.cancellation is not None)
        self.decisions = Decisions(request, self.record, self.steps)
        self.keep_branch = False
        # Approvals bind to a commit, merges are untorn (see merging); older requests replay as before.
        self.decisions.binding = workflow.patched(patches.APPROVAL_BINDS_COMMIT)
        self.pushed_sha = self.state.tested_sha  # the work branch tip Honk last pushed
        self.cancelled_while_merging = False

    # ------------------------------------------------------------------ the process

    @workflow.run
    async def run(self, request: ChangeRequest) -> RequestStatus:
        try:
            if request.carried is not None:  # continued as new: the UI's card lost nothing
                workflow.set_current_details(wording.card(request, self.state))
            else:
                await self.record.enter(Stage.RECEIVED, f"Request from {request.requester}: {request.instruction}")
                await self.record.tell("received", f"On it: {request.instruction}")
                await self.prepare()
            while True:
                if self.state.stage != Stage.AWAITING_APPROVAL or self.state.pending_feedback:
                    if self.prepared is None:  # first round after continue-as-new
                        await self.prepare()
                    await self.produce_round()
                    if self.state.pending_feedback:
                        continue  # changes requested while the round ran: go again at once
                if await self.await_decision() == "approve" and await self.merge():
                    break
        except RequestCancelled:
            await self.finish(Stage.CANCELLED, "cancelled", wording.cancelled(self.decisions.cancellation))
        except RequestExpired:
            await self.finish(Stage.EXPIRED, "expired", wording.EXPIRED)
        except RequestFailed as failure:
            self.state.last_error = str(failure)
            await self.finish(Stage.FAILED, "failed", f"Failed: {failure}")
        except asyncio.CancelledError:
            # Cancelled from Temporal itself (UI or `temporal workflow cancel`): clean up, then
            # let the run end as cancelled.
            decisions = self.decisions
            decisions.cancellation = decisions.cancellation or Decision(by="temporal", text="workflow cancelled")
            await self.finish(Stage.CANCELLED, "cancelled", wording.cancelled(decisions.cancellation))
            raise
        try:
            await self.record.flush_notices()
            await workflow.wait_condition(workflow.all_handlers_finished)
        except asyncio.CancelledError:
            if self.state.stage != Stage.MERGED or not workflow.patched(patches.MERGED_STAYS_MERGED):
                raise
            self.record.note(wording.CANCEL_AFTER_MERGE, kind="warning")  # the base has the change
            await self.record.flush_notices()
            await workflow.wait_condition(workflow.all_handlers_finished)
        return self.state.view()

    async def prepare(self) -> None:
        await self.record.enter(Stage.PREPARING, f"Preparing a workspace of {self.request.repo}")
        self.prepared = await self.steps.act(
            steps.PREPARE,
            self.workspace,
            summary=f"Prepare {self.request.repo} ({self.workspace.work_branch})",
            limit=self.limits.prepare(),
            heartbeat=self.request.options.heartbeat_timeout,
        )
        self.state.prepared = self.prepared
        self.state.links.work_branch = self.workspace.work_branch
        self.state.links.compare = wording.compare_page(self.request, self.workspace.work_branch)

    def at_tip(self) -> WorkspaceRef:
        """The workspace as Honk last pushed it: a host that still holds it skips the fetch."""
        tip = self.pushed_sha or (self.prepared.head_sha if self.prepared else None)
        return self.workspace.model_copy(update={"head_sha": tip})

    def commit_title(self) -> str:
        if workflow.patched(patches.MERGE_MESSAGE):  # older histories merged with the old wording
            return wording.commit_subject(self.request.instruction, self.state.last_summary)
        return wording.commit_title(self.request.instruction)

    def commit_body(self) -> str:
        if workflow.patched(patches.MERGE_MESSAGE):
            return wording.merge_body(self.request.requester, self.state.round_summaries, self.state.reviews)
        return wording.commit_body(self.request.requester, self.state.last_summary)

    async def produce_round(self, repair: list[str] | None = None, update_base: bool = False) -> None:
        """One round: agent edits until the checks pass, then build and publish."""
        if self.prepared is None and workflow.patched(patches.CARRY_PREPARED):
            await self.prepare()  # a run continued before targets were carried (a merge repair)
        self.state.round += 1
        self.state.attempt = 0
        repair = list(repair or [])
        while True:
            self.state.attempt += 1
            reviews = [f"{f.by}: {f.text}" for f in self.state.pending_feedback]
            self.state.reviews += reviews  # for the merge commit's body
            feedback = repair + reviews
            self.state.pending_feedback = []
            edited = await self.edit(feedback, update_base=update_base and self.state.attempt == 1)
            checks = await self.check(edited)
            if checks.diff_empty:
                raise RequestFailed(wording.no_change(edited))
            if checks.passed:
                failure = await self.build_and_publish(edited, checks)
                if failure is None:
                    return
            else:
                failure = checks.failure_report()
            if self.state.attempt >= self.request.options.max_check_attempts:
                raise RequestFailed(wording.checks_still_failing(self.state.attempt, self.state.round, failure))
            self.record.note(wording.attempt_failed(self.state.attempt), kind="warning")
            self.state.last_error = failure
            repair = [failure]

    async def edit(self, feedback: list[str], update_base: bool = False) -> AgentOutcome:
        await self.record.enter(Stage.EDITING, wording.editing(self.state.round, self.state.attempt))
        self.state.agent_runs += 1
        outcome = await self.steps.act(
            steps.AGENT,
            AgentTask(
                workspace=self.workspace if update_base else self.at_tip(),
                instruction=self.request.instruction,
                feedback=feedback,
                round=self.state.round,
                attempt=self.state.attempt,
                invocation=self.state.agent_runs,
                update_base=update_base,
                allow_protected_changes=self.request.options.allow_protected_changes,
                rebase=update_base and self.request.options.merge_strategy == "rebase",
            ),
            summary=f"Agent round {self.state.round} attempt {self.state.attempt}",
            limit=self.limits.agent(),
            heartbeat=self.request.options.heartbeat_timeout,
        )
        self.record.count_usage(outcome)
        self.pushed_sha = outcome.head_sha
        self.state.changed_files = sorted({*self.state.changed_files, *outcome.changed_files})
        metrics.agent_run(self.request.repo, outcome)
        self.state.last_summary = outcome.summary
        self.state.round_summaries[self.state.round] = outcome.summary
        self.record.note(wording.agent_finished(outcome))
        if outcome.status in ("budget_exhausted", "vetoed"):
            # Keep the work branch: the partial work is what the requester needs to see.
            self.keep_branch = True
            raise RequestFailed(
                f"{outcome.summary} The partial work is on branch {self.workspace.work_branch}.",
                "BudgetExhausted" if outcome.status == "budget_exhausted" else "Vetoed",
            )
        return outcome

    async def check(self, edited: AgentOutcome) -> ChecksOutcome:
        await self.record.enter(Stage.CHECKING, f"Running checks (attempt {self.state.attempt})")
        outcome = edited.checks  # the agent's own run, when it passed on this very tree
        if outcome is None or not workflow.patched(patches.CHECKED_BY_AGENT):
            outcome = await self.steps.act(
                steps.CHECKS,
                ChecksTask(workspace=self.at_tip(), attempt=self.state.agent_runs),
                summary=f"Checks, attempt {self.state.attempt}",
                limit=self.limits.checks(),
                heartbeat=self.request.options.heartbeat_timeout,
            )
        metrics.check_attempt(self.request.repo, outcome.passed)
        self.state.protected_changes = outcome.protected_changes
        self.state.diff_stat = outcome.diff_stat or self.state.diff_stat
        self.record.note(wording.checks_finished(outcome), kind="info" if outcome.passed else "warning")
        return outcome

    async def build_and_publish(self, edited: AgentOutcome, checks: ChecksOutcome) -> str | None:
        """Build every target in parallel, then publish; returns a failure report or None."""
        targets = self.prepared.targets if self.prepared else []
        self.state.tested_sha = checks.head_sha
        if not targets:
            self.record.note("No build targets configured; skipping build and publish")
            if workflow.patched(patches.REVIEW_SUMMARY):  # older requests went to approval with nothing to open
                await self.publish_summary(edited, checks)
            return None
        await self.record.enter(Stage.BUILDING, wording.building(targets))
        self.state.builds += 1
        number = int((workflow.now() - BUILD_EPOCH).total_seconds())
        if workflow.patched(patches.UNIQUE_BUILDS):  # two builds in one second shared a number and its pages
            number = max(number, (self.state.build_number or 0) + 1)
        self.state.build_number = number
        build_started = workflow.now()
        in_place = lambda t: len(targets) == 1 and not t.task_queue  # noqa: E731 - a lone local target: no extra checkout
        results = await asyncio.gather(
            *(
                self.steps.act(
                    steps.BUILD,
                    BuildTask(workspace=self.at_tip(), target=t.name, build_number=number, in_place=in_place(t)),
                    summary=f"Build {t.name} #{number}",
                    limit=self.limits.build(t),
                    heartbeat=self.request.options.heartbeat_timeout,
                    task_queue=t.task_queue,
                )
                for t in targets
            ),
            return_exceptions=True,
        )
        metrics.builds_finished(self.request.repo, targets, results, (workflow.now() - build_started).total_seconds())
        failure = build_failure(results)
        if failure is not None:
            return failure
        built = [r for r in results if isinstance(r, BuildOutcome)]
        artifacts = [a for r in built for a in r.artifacts]
        for r in built:
            self.record.note(wording.built(r))

        await self.record.enter(Stage.PUBLISHING, "Publishing the build")
        published = await self.steps.act(
            steps.PUBLISH,
            PublishTask(
                request_id=self.state.request_id,
                repo=self.request.repo,
                build_number=number,
                commit=checks.head_sha,
                instruction=self.request.instruction,
                summary=edited.summary,
                artifacts=artifacts,
                protected_changes=self.state.protected_changes,
                review=wording.reviewed(self.request, self.state, wording.checks_finished(checks)),
            ),
            summary=f"Publish build #{number}",
            limit=self.limits.publish(),
            heartbeat=self.request.options.heartbeat_timeout,
        )
        self.state.artifacts = published.artifacts
        self.state.links.install_page = published.install_page_url
        self.state.links.build = next((a.url for a in published.artifacts if a.url), None)
        self.state.links.install_qr = published.qr_png_url
        await self.record.tell("build_ready", f"Build #{number} is ready: {published.install_page_url}")
        return None

    async def publish_summary(self, edited: AgentOutcome, checks: ChecksOutcome) -> None:
        """Nothing to build: a page with what changed, for the approver (best effort)."""
        await self.record.enter(Stage.PUBLISHING, "Publishing a summary of the change")
        task = wording.summary_task(self.request, self.state, edited, checks, workflow.now() - BUILD_EPOCH)
        try:
            published = await self.steps.act(
                steps.PUBLISH, task, summary="Publish the change summary", limit=self.limits.publish()
            )
        except RequestFailed as failure:
            self.record.note(f"Could not publish the summary page: {failure}", kind="warning")
            return
        self.state.links.summary_page = published.install_page_url

    async def await_decision(self) -> str:
        """Wait for approve / request changes / cancel, with a reminder, then expiry."""
        options, decisions = self.request.options, self.decisions
        if self.state.stage != Stage.AWAITING_APPROVAL:
            await self.record.enter(Stage.AWAITING_APPROVAL, "Waiting for approval")
            if decisions.binding:
                approvals.reset(self.state)
            self.state.approval_deadline = workflow.now() + options.approval_timeout
            self.state.reminded = False
            await self.record.tell("needs_approval", wording.READY_FOR_REVIEW)
        deadline = self.state.approval_deadline or workflow.now() + options.approval_timeout
        while True:
            if decisions.cancellation:
                raise RequestCancelled()
            if decisions.approval:
                return "approve"
            if self.state.pending_feedback:
                self.record.note("Changes requested; starting round " + str(self.state.round + 1))
                return "request_changes"
            now = workflow.now()
            if now >= deadline:
                raise RequestExpired()
            remind_at = deadline - options.reminder_before
            if not self.state.reminded and now >= remind_at:
                self.state.reminded = True
                await self.record.tell("reminder", wording.reminder(deadline))
                continue
            if self.record.history_is_long():
                await self.continue_as_new()
            wake = deadline if self.state.reminded else remind_at
            try:
                await workflow.wait_condition(
                    lambda: bool(decisions.approval or decisions.cancellation or self.state.pending_feedback),
                    timeout=max(wake - now, timedelta(seconds=1)),
                    timeout_summary="approval deadline" if self.state.reminded else "approval reminder",
                )
            except TimeoutError:
                pass

    async def merge(self) -> bool:
        """Merge the approved change; a conflict or a failing combined tree goes back to the
        agent (bounded) and the merge is tried again. False when new changes were requested
        during such a repair: the request then goes back for another look."""
        approval = self.decisions.approval
        base, repairs = self.request.base_branch, 0
        while True:
            assert approval is not None
            await self.record.enter(Stage.MERGING, f"Approved by {approval.by}; merging into {base}")
            try:
                outcome = await self.merge_step(self.merge_task(approval.by))
                break
            except RequestFailed as failure:
                if failure.kind not in REPAIRABLE_MERGE_FAILURES:
                    raise
                if repairs >= self.request.options.max_merge_repairs:
                    raise RequestFailed(wording.merge_gave_up(failure, repairs)) from failure
                repairs += 1
                self.state.last_error = str(failure)
                self.record.note(f"Merge blocked; back to the agent with the latest {base}: {failure}", kind="warning")
                await self.record.tell("status", f"Could not merge yet: {failure}. The agent is updating the change.")
                await self.produce_round(repair=[str(failure)], update_base=True)
                if self.decisions.binding:
                    if not await self.approve_again():
                        return False
                    approval = self.decisions.approval
                    continue
                if self.state.pending_feedback:
                    self.decisions.approval = None
                    self.state.approved_by = None
                    self.record.note("Feedback arrived during the repair; the change needs another look")
                    return False
        await self.conclude(outcome)
        return True

    async def finish(self, stage: Stage, event: NoticeEvent, message: str) -> None:
        await self.cleanup()
        await self.record.enter(stage, message)
        await self.record.tell(event, message)
        await self.record.flush_notices()  # before the run ends: a closed workflow sends nothing

    async def cleanup(self) -> None:
        try:
            await self.steps.act(
                steps.CLEANUP,
                CleanupTask(
                    workspace=self.workspace,
                    delete_remote_branch=not self.keep_branch,
                    expect_sha=self.pushed_sha if self.decisions.binding else None,
                ),
                summary="Remove workspace and work branch",
                limit=self.limits.cleanup(),
                cancellable=False,
            )
        except (ActivityError, RequestFailed) as err:
            self.record.note(f"Cleanup failed (the janitor will retry): {explain(err)}", kind="warning")

    async def continue_as_new(self) -> None:
        await self.record.flush_notices()
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self.decisions.approval or self.decisions.cancellation:
            return  # a decision landed meanwhile; it is not part of the carried state
        self.state.continued += 1
        self.record.note(f"Continuing as new (history length {workflow.info().get_current_history_length()})")
        workflow.continue_as_new(self.request.model_copy(update={"carried": self.state}))

    # ------------------------------------------------------------------ decisions

    @workflow.signal(name=SIGNAL_APPROVE)
    async def approve(self, decision: Decision) -> None:
        await self.decisions.answer("approve", decision)

    @workflow.signal(name=SIGNAL_REQUEST_CHANGES)
    async def request_changes(self, decision: Decision) -> None:
        await self.decisions.answer("request_changes", decision)

    @workflow.signal(name=SIGNAL_CANCEL)
    async def cancel(self, decision: Decision) -> None:
        await self.decisions.answer("cancel", decision)

    @workflow.update(name=UPDATE_DECIDE)
    async def decide(self, update: DecisionUpdate) -> DecisionOutcome:
        return await self.decisions.decide(update)

    @decide.validator
    def validate_decision(self, update: DecisionUpdate) -> None:
        self.decisions.validate_form(update)

    @workflow.query(name=QUERY_STATUS)
    def status(self) -> RequestStatus:
        return self.state.view()
