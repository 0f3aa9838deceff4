"""ChangeRequestWorkflow: one chat request from instruction to merged commit.

The run method reads like the business process; every side effect is an activity called by
name (see ``contract``). Decisions arrive as signals (durable, fire-and-forget) or through the
``decide`` update (validated, immediate answer); both go through one rule book.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from honk.workflows import metrics
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
        SA_REPO,
        SA_REQUESTER,
        SA_STAGE,
        SIGNAL_APPROVE,
        SIGNAL_CANCEL,
        SIGNAL_REQUEST_CHANGES,
        UPDATE_DECIDE,
        WORKFLOW_TYPE,
        AgentOutcome,
        AgentTask,
        ArtifactInfo,
        BuildOutcome,
        BuildTask,
        ChangeRequest,
        ChecksOutcome,
        ChecksTask,
        CleanupTask,
        Decision,
        DecisionOutcome,
        DecisionUpdate,
        Feedback,
        MergeOutcome,
        MergeTask,
        Notice,
        PreparedWorkspace,
        Published,
        PublishTask,
        RequestStatus,
        Stage,
        TimelineEntry,
        Usage,
        WorkspaceRef,
    )

# Build numbers grow across requests (a phone only installs a higher version code).
BUILD_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)

MAX_FEEDBACK = 4000  # characters of a comment or change request
MAX_WHO = 200

RETRY_WORLD = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    maximum_attempts=5,
)
RETRY_NOTIFY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5)
# Notices go out in order from a queue instead of holding up the pipeline at every stage.
PATCH_QUEUED_NOTICES = "queued-notices"


class RequestFailed(Exception):
    """The request cannot continue; the message is what the requester is told."""

    def __init__(self, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind  # the failing activity's error type, e.g. "MergeConflict"


# Merge failures the agent can repair: it gets the latest base merged in and the reason.
REPAIRABLE_MERGE_FAILURES = ("MergeConflict", "CombinedChecksFailed")


class RequestCancelled(Exception):
    pass


class RequestExpired(Exception):
    pass


@workflow.defn(name=WORKFLOW_TYPE)
class ChangeRequestWorkflow:
    @workflow.init
    def __init__(self, request: ChangeRequest) -> None:
        self.request = request
        info = workflow.info()
        self.state = request.carried or RequestStatus(
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
        self.prepared: PreparedWorkspace | None = None
        self.approval: Decision | None = None
        self.cancellation: Decision | None = None
        self.running: set[workflow.ActivityHandle] = set()
        self.keep_branch = False
        self.outbox: list[Notice] = []
        self.courier: asyncio.Task | None = None

    # ------------------------------------------------------------------ the process

    @workflow.run
    async def run(self, request: ChangeRequest) -> RequestStatus:
        try:
            if request.carried is None:
                await self.enter(Stage.RECEIVED, f"Request from {request.requester}: {request.instruction}")
                await self.tell("received", f"On it: {request.instruction}")
                await self.prepare()
            while True:
                if self.state.stage != Stage.AWAITING_APPROVAL or self.state.pending_feedback:
                    if self.prepared is None:  # first round after continue-as-new
                        await self.prepare()
                    await self.produce_round()
                    if self.state.pending_feedback:
                        continue  # feedback arrived while the round ran: go again at once
                if await self.await_decision() == "approve" and await self.merge():
                    break
        except RequestCancelled:
            await self.finish(Stage.CANCELLED, "cancelled", self.cancel_message())
        except RequestExpired:
            await self.finish(
                Stage.EXPIRED, "expired", "No decision before the approval deadline; the work branch was removed."
            )
        except RequestFailed as failure:
            self.state.last_error = str(failure)
            await self.finish(Stage.FAILED, "failed", f"Failed: {failure}")
        except asyncio.CancelledError:
            # Cancelled from Temporal itself (UI or `temporal workflow cancel`): clean up, then
            # let the run end as cancelled.
            self.cancellation = self.cancellation or Decision(by="temporal", text="workflow cancelled")
            await self.finish(Stage.CANCELLED, "cancelled", self.cancel_message())
            raise
        await self.flush_notices()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.state

    async def prepare(self) -> None:
        await self.enter(Stage.PREPARING, f"Preparing a workspace of {self.request.repo}")
        self.prepared = await self.act(
            ACTIVITY_PREPARE,
            self.workspace,
            PreparedWorkspace,
            summary=f"Prepare {self.request.repo} ({self.workspace.work_branch})",
            timeout=timedelta(minutes=20),
            heartbeat=self.request.options.heartbeat_timeout,
        )
        self.state.links.work_branch = self.workspace.work_branch

    async def produce_round(self, repair: list[str] | None = None, update_base: bool = False) -> None:
        """One round: agent edits until the checks pass, then build and publish."""
        self.state.round += 1
        self.state.attempt = 0
        repair = list(repair or [])
        while True:
            self.state.attempt += 1
            feedback = repair + [f"{f.by}: {f.text}" for f in self.state.pending_feedback]
            self.state.pending_feedback = []
            edited = await self.edit(feedback, update_base=update_base and self.state.attempt == 1)
            checks = await self.check()
            if checks.diff_empty:
                raise RequestFailed(
                    "the agent made no change to the repository"
                    + (f" (it said: {edited.summary})" if edited.summary else "")
                )
            if checks.passed:
                failure = await self.build_and_publish(edited, checks)
                if failure is None:
                    return
            else:
                failure = checks.failure_report()
            if self.state.attempt >= self.request.options.max_check_attempts:
                raise RequestFailed(
                    f"checks still failing after {self.state.attempt} attempts in round {self.state.round}:\n{failure}"
                )
            self.note(f"Attempt {self.state.attempt} failed; sending the failure back to the agent", kind="warning")
            self.state.last_error = failure
            repair = [failure]

    async def edit(self, feedback: list[str], update_base: bool = False) -> AgentOutcome:
        await self.enter(Stage.EDITING, f"Agent editing (round {self.state.round}, attempt {self.state.attempt})")
        self.state.agent_runs += 1
        outcome = await self.act(
            ACTIVITY_AGENT,
            AgentTask(
                workspace=self.workspace,
                instruction=self.request.instruction,
                feedback=feedback,
                round=self.state.round,
                attempt=self.state.attempt,
                invocation=self.state.agent_runs,
                update_base=update_base,
            ),
            AgentOutcome,
            summary=f"Agent round {self.state.round} attempt {self.state.attempt}",
            timeout=timedelta(hours=1),
            heartbeat=self.request.options.heartbeat_timeout,
            retry=RetryPolicy(initial_interval=timedelta(seconds=5), maximum_attempts=3),
        )
        self.state.usage = self.state.usage.plus(outcome.usage)
        metrics.agent_run(
            self.request.repo,
            outcome.status,
            outcome.model,
            outcome.turns,
            outcome.usage_by_model or ({outcome.model: outcome.usage} if outcome.model else {}),
        )
        for model, usage in outcome.usage_by_model.items():
            self.state.usage_by_model[model] = self.state.usage_by_model.get(model, Usage()).plus(usage)
        self.state.last_summary = outcome.summary
        changed = ", ".join(outcome.changed_files[:5]) or "no files"
        self.note(
            f"Agent ({outcome.backend}, {outcome.model}, {outcome.turns} turns) {outcome.status}: "
            f"{outcome.summary} [{changed}]"
        )
        if outcome.status in ("budget_exhausted", "vetoed"):
            # Keep the work branch: the partial work is what the requester needs to see.
            self.keep_branch = True
            raise RequestFailed(
                f"{outcome.summary} The partial work is on branch {self.workspace.work_branch}.",
                "BudgetExhausted" if outcome.status == "budget_exhausted" else "Vetoed",
            )
        return outcome

    async def check(self) -> ChecksOutcome:
        await self.enter(Stage.CHECKING, f"Running checks (attempt {self.state.attempt})")
        outcome = await self.act(
            ACTIVITY_CHECKS,
            ChecksTask(workspace=self.workspace, attempt=self.state.agent_runs),
            ChecksOutcome,
            summary=f"Checks, attempt {self.state.attempt}",
            timeout=timedelta(hours=1),
            heartbeat=self.request.options.heartbeat_timeout,
        )
        metrics.check_attempt(self.request.repo, outcome.passed)
        verdicts = ", ".join(f"{r.name} {'ok' if r.passed else 'FAILED'}" for r in outcome.runs)
        self.note(
            f"Checks {'passed' if outcome.passed else 'failed'}: {verdicts or 'none configured'}",
            kind="info" if outcome.passed else "warning",
        )
        return outcome

    async def build_and_publish(self, edited: AgentOutcome, checks: ChecksOutcome) -> str | None:
        """Build every target in parallel, then publish; returns a failure report or None."""
        targets = self.prepared.targets if self.prepared else []
        self.state.tested_sha = checks.head_sha
        if not targets:
            self.note("No build targets configured; skipping build and publish")
            return None
        await self.enter(
            Stage.BUILDING,
            "Building " + ", ".join(t.name + (f" (on {t.task_queue})" if t.task_queue else "") for t in targets),
        )
        self.state.builds += 1
        number = int((workflow.now() - BUILD_EPOCH).total_seconds())
        build_started = workflow.now()
        results = await asyncio.gather(
            *(
                self.act(
                    ACTIVITY_BUILD,
                    BuildTask(workspace=self.workspace, target=t.name, build_number=number),
                    BuildOutcome,
                    summary=f"Build {t.name} #{number}",
                    timeout=timedelta(hours=1),
                    heartbeat=self.request.options.heartbeat_timeout,
                    task_queue=t.task_queue,
                )
                for t in targets
            ),
            return_exceptions=True,
        )
        for t, r in zip(targets, results, strict=True):
            metrics.build_finished(
                self.request.repo,
                t.name,
                r.duration_s if isinstance(r, BuildOutcome) else (workflow.now() - build_started).total_seconds(),
                ok=isinstance(r, BuildOutcome),
            )
        failures = [self.explain(r) for r in results if isinstance(r, BaseException)]
        if failures:
            for r in results:
                if isinstance(r, (RequestCancelled, asyncio.CancelledError)):
                    raise r
            return "The build failed:\n" + "\n".join(failures)
        artifacts: list[ArtifactInfo] = [a for r in results for a in r.artifacts]  # type: ignore[union-attr]

        def described(a: ArtifactInfo) -> str:
            # What the file says about itself: the id and version a phone will install.
            app = a.package or a.bundle_id
            version = (
                a.version_name + (f" ({a.version_code})" if a.version_code else "")
                if a.version_name
                else a.version_code
            )
            about = " ".join(x for x in (app, version) if x)
            return f"{a.name} ({a.size} bytes{', ' + about if about else ''})"

        for r in results:
            self.note(f"Built {r.target} in {r.duration_s:.0f}s: " + ", ".join(described(a) for a in r.artifacts))  # type: ignore[union-attr]

        await self.enter(Stage.PUBLISHING, "Publishing the build")
        published = await self.act(
            ACTIVITY_PUBLISH,
            PublishTask(
                request_id=self.state.request_id,
                repo=self.request.repo,
                build_number=number,
                commit=checks.head_sha,
                instruction=self.request.instruction,
                summary=edited.summary,
                artifacts=artifacts,
            ),
            Published,
            summary=f"Publish build #{number}",
            timeout=timedelta(minutes=30),
            heartbeat=self.request.options.heartbeat_timeout,
        )
        self.state.artifacts = published.artifacts
        self.state.links.install_page = published.install_page_url
        self.state.links.build = next((a.url for a in published.artifacts if a.url), None)
        self.state.links.install_qr = published.qr_png_url
        await self.tell("build_ready", f"Build #{number} is ready: {published.install_page_url}")
        return None

    async def await_decision(self) -> str:
        """Wait for approve / request changes / cancel, with a reminder, then expiry."""
        options = self.request.options
        if self.state.stage != Stage.AWAITING_APPROVAL:
            await self.enter(Stage.AWAITING_APPROVAL, "Waiting for approval")
            self.state.approval_deadline = workflow.now() + options.approval_timeout
            self.state.reminded = False
            await self.tell("needs_approval", "Ready for review: approve & merge, request changes, or cancel.")
        deadline = self.state.approval_deadline or workflow.now() + options.approval_timeout
        while True:
            if self.cancellation:
                raise RequestCancelled()
            if self.approval:
                return "approve"
            if self.state.pending_feedback:
                self.note("Changes requested; starting round " + str(self.state.round + 1))
                return "request_changes"
            now = workflow.now()
            if now >= deadline:
                raise RequestExpired()
            remind_at = deadline - options.reminder_before
            if not self.state.reminded and now >= remind_at:
                self.state.reminded = True
                await self.tell(
                    "reminder", f"Reminder: this request expires at {deadline:%Y-%m-%d %H:%M} UTC unless approved."
                )
                continue
            if self.history_is_long():
                await self.continue_as_new()
            wake = deadline if self.state.reminded else remind_at
            try:
                await workflow.wait_condition(
                    lambda: bool(self.approval or self.cancellation or self.state.pending_feedback),
                    timeout=max(wake - now, timedelta(seconds=1)),
                    timeout_summary="approval deadline" if self.state.reminded else "approval reminder",
                )
            except TimeoutError:
                pass

    async def merge(self) -> bool:
        """Merge the approved change; a conflict or a failing combined tree goes back to the
        agent (bounded) and the merge is tried again. False when new feedback arrived during
        such a repair: the request then goes back for another look."""
        assert self.approval is not None
        repairs = 0
        while True:
            await self.enter(Stage.MERGING, f"Approved by {self.approval.by}; merging into {self.request.base_branch}")
            try:
                outcome = await self.act(
                    ACTIVITY_MERGE,
                    MergeTask(
                        workspace=self.workspace,
                        strategy=self.request.options.merge_strategy,
                        title=self.commit_title(),
                        body=self.commit_body(),
                        requested_by=self.request.requester,
                        approved_by=self.approval.by,
                        tested_sha=self.state.tested_sha or "",
                    ),
                    MergeOutcome,
                    summary=f"Merge into {self.request.base_branch}",
                    timeout=timedelta(minutes=30),
                    heartbeat=self.request.options.heartbeat_timeout,
                    cancellable=False,
                )
                break
            except RequestFailed as failure:
                if failure.kind not in REPAIRABLE_MERGE_FAILURES:
                    raise
                if repairs >= self.request.options.max_merge_repairs:
                    raise RequestFailed(
                        f"{failure} (gave up after {repairs} repair rounds; resolve it by hand or start a new request)"
                    ) from failure
                repairs += 1
                self.state.last_error = str(failure)
                self.note(
                    f"Merge blocked; back to the agent with the latest {self.request.base_branch}: {failure}",
                    kind="warning",
                )
                await self.tell("status", f"Could not merge yet: {failure}. The agent is updating the change.")
                await self.produce_round(repair=[str(failure)], update_base=True)
                if self.state.pending_feedback:
                    self.approval = None
                    self.state.approved_by = None
                    self.note("Feedback arrived during the repair; the change needs another look")
                    return False
        if outcome.already_merged:
            self.note("The change was already on the base (a retried merge found its own commit)")
        if outcome.rechecked:
            self.note(f"{self.request.base_branch} had moved; checks passed again on the combined tree")
        self.state.links.merged_commit = outcome.commit_sha
        await self.cleanup()
        await self.enter(Stage.MERGED, f"Merged as {outcome.commit_sha[:12]}")
        await self.tell("merged", f"Merged into {self.request.base_branch} as {outcome.commit_sha}")
        return True

    async def finish(self, stage: Stage, event: str, message: str) -> None:
        await self.cleanup()
        await self.enter(stage, message)
        await self.tell(event, message)  # type: ignore[arg-type]
        await self.flush_notices()  # before the run ends: a closed workflow sends nothing

    async def cleanup(self) -> None:
        try:
            await self.act(
                ACTIVITY_CLEANUP,
                CleanupTask(workspace=self.workspace, delete_remote_branch=not self.keep_branch),
                type(None),
                summary="Remove workspace and work branch",
                timeout=timedelta(minutes=10),
                cancellable=False,
            )
        except (ActivityError, RequestFailed) as err:
            self.note(f"Cleanup failed (the janitor will retry): {self.explain(err)}", kind="warning")

    async def continue_as_new(self) -> None:
        await self.flush_notices()
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self.approval or self.cancellation:
            return  # a decision landed meanwhile; it is not part of the carried state
        self.state.continued += 1
        self.note(f"Continuing as new (history length {workflow.info().get_current_history_length()})")
        workflow.continue_as_new(self.request.model_copy(update={"carried": self.state}))

    # ------------------------------------------------------------------ decisions

    @workflow.signal(name=SIGNAL_APPROVE)
    async def approve(self, decision: Decision) -> None:
        await self.decide_and_answer("approve", decision)

    @workflow.signal(name=SIGNAL_REQUEST_CHANGES)
    async def request_changes(self, decision: Decision) -> None:
        await self.decide_and_answer("request_changes", decision)

    @workflow.signal(name=SIGNAL_CANCEL)
    async def cancel(self, decision: Decision) -> None:
        await self.decide_and_answer("cancel", decision)

    @workflow.update(name=UPDATE_DECIDE)
    async def decide(self, update: DecisionUpdate) -> DecisionOutcome:
        return DecisionOutcome(accepted=True, message=self.apply(update.action, update), stage=self.state.stage)

    @decide.validator
    def validate_decision(self, update: DecisionUpdate) -> None:
        refusal = self.refusal(update.action, update)
        if refusal:
            metrics.decision(update.action, accepted=False)
            raise ValueError(refusal)

    @workflow.query(name=QUERY_STATUS)
    def status(self) -> RequestStatus:
        return self.state

    async def decide_and_answer(self, action: str, decision: Decision) -> None:
        refusal = self.refusal(action, decision)
        if refusal is None:
            self.apply(action, decision)
            return
        metrics.decision(action, accepted=False)
        self.note(f"Refused {action} from {decision.by or 'unknown'}: {refusal}", kind="refused")
        await self.tell("refused", f"{decision.by or 'Someone'} tried to {action.replace('_', ' ')}: {refusal}")

    def refusal(self, action: str, decision: Decision) -> str | None:
        """Why a decision may not be applied now, or None when it may."""
        who, stage = decision.by.strip(), self.state.stage
        if not who:
            return "the decision does not say who made it (set 'by')"
        if len(who) > MAX_WHO:
            return f"'by' is {len(who)} characters; the limit is {MAX_WHO}"
        if len(decision.words) > MAX_FEEDBACK:
            return f"the text is {len(decision.words)} characters; the limit is {MAX_FEEDBACK}"
        if stage.terminal:
            return f"the request is already {stage.value}"
        if action == "approve":
            if not self.may_approve(who):
                return f"{who} is not an approver for {self.request.repo}"
            if stage != Stage.AWAITING_APPROVAL:
                return f"nothing to approve yet: the request is {stage.value}"
            return None
        if who != self.request.requester and not self.may_approve(who):
            return f"{who} is neither the requester nor an approver for {self.request.repo}"
        if stage == Stage.MERGING:
            return "the change is already being merged"
        if self.cancellation:
            return "the request is being cancelled"
        if action == "request_changes":
            if not decision.words:
                return "say what should change ('text')"
            rounds_used = self.state.round + (1 if self.state.pending_feedback else 0)
            if rounds_used >= self.request.options.max_rounds:
                return f"all {self.request.options.max_rounds} rounds are used; approve, cancel, or start a new request"
        return None

    def apply(self, action: str, decision: Decision) -> str:
        who = decision.by.strip()
        metrics.decision(action, accepted=True)
        if action == "approve":
            self.approval = decision
            self.state.approved_by = who
            message = f"Approved by {who}"
        elif action == "cancel":
            self.cancellation = decision
            for handle in self.running:
                handle.cancel()
            message = f"Cancel requested by {who}"
        else:
            self.state.pending_feedback.append(Feedback(by=who, text=decision.words, at=workflow.now()))
            message = (
                f"Changes requested by {who}"
                if self.state.stage == Stage.AWAITING_APPROVAL
                else f"Feedback from {who} queued for the next round"
            )
        self.note(message, kind="decision")
        return message

    def may_approve(self, who: str) -> bool:
        return "*" in self.request.approvers or who in self.request.approvers

    def cancel_message(self) -> str:
        c = self.cancellation
        if c is None:
            return "Cancelled"
        return f"Cancelled by {c.by}" + (f": {c.words}" if c.words else "")

    # ------------------------------------------------------------------ plumbing

    async def act(
        self,
        name: str,
        arg: object,
        result_type: type,
        *,
        summary: str,
        timeout: timedelta,
        heartbeat: timedelta | None = None,
        retry: RetryPolicy = RETRY_WORLD,
        task_queue: str | None = None,
        cancellable: bool = True,
    ):
        """Run one activity; a cancel decision stops it, a final failure fails the request."""
        if cancellable and self.cancellation:
            raise RequestCancelled()
        handle = workflow.start_activity(
            name,
            arg,
            result_type=result_type,
            summary=summary,
            start_to_close_timeout=timeout,
            heartbeat_timeout=heartbeat,
            retry_policy=retry,
            task_queue=task_queue or workflow.info().task_queue,
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        if cancellable:
            self.running.add(handle)
        try:
            return await handle
        except ActivityError as err:
            if (cancellable and self.cancellation) or is_cancelled_exception(err):
                raise RequestCancelled() from err
            cause = err.cause
            kind = cause.type if isinstance(cause, ApplicationError) else None
            raise RequestFailed(f"{summary}: {self.explain(err)}", kind) from err
        finally:
            self.running.discard(handle)

    @staticmethod
    def explain(err: BaseException) -> str:
        cause = err
        while isinstance(cause, ActivityError) and cause.cause is not None:
            cause = cause.cause
        if isinstance(cause, ApplicationError) and cause.type:
            return f"{cause.message} [{cause.type}]"
        if is_cancelled_exception(cause):
            return "cancelled"
        return str(cause) or type(cause).__name__

    async def tell(self, event: str, text: str) -> None:
        """Tell the requester (chat thread or log). Never fails the request."""
        notice = Notice(
            request_id=self.state.request_id,
            repo=self.request.repo,
            event=event,  # type: ignore[arg-type]
            stage=self.state.stage,
            text=text,
            origin=self.request.origin,
            links=self.state.links.model_copy(),
        )
        if workflow.patched(PATCH_QUEUED_NOTICES):
            self.outbox.append(notice)
            if self.courier is None:
                self.courier = asyncio.create_task(self.deliver())
            return
        await self.send(notice)

    async def deliver(self) -> None:
        """Send queued notices one at a time, in order (the chat message is updated in place)."""
        try:
            while self.outbox:
                await self.send(self.outbox[0])
                self.outbox.pop(0)
        finally:
            self.courier = None

    async def flush_notices(self) -> None:
        if self.courier is not None:
            await workflow.wait_condition(lambda: self.courier is None)

    async def send(self, notice: Notice) -> None:
        event = notice.event
        try:
            await workflow.execute_activity(
                ACTIVITY_NOTIFY,
                notice,
                summary=f"Notify: {event}",
                start_to_close_timeout=timedelta(minutes=1),
                retry_policy=RETRY_NOTIFY,
            )
        except ActivityError as err:
            self.note(f"Could not notify ({event}): {self.explain(err)}", kind="warning")

    async def enter(self, stage: Stage, message: str) -> None:
        self.measure_stage(stage)
        self.state.stage = stage
        self.note(message, kind="stage")
        workflow.upsert_search_attributes(
            [
                SA_STAGE.value_set(stage.value),
                SA_REPO.value_set(self.request.repo),
                SA_REQUESTER.value_set(self.request.requester),
            ]
        )
        workflow.set_current_details(self.card())
        if not stage.terminal and stage not in (Stage.RECEIVED, Stage.AWAITING_APPROVAL):
            await self.tell("status", message)

    def measure_stage(self, stage: Stage) -> None:
        """Metrics only (nothing recorded on replay): the time spent in the stage being left
        and, on reaching an end, the request's outcome and total time."""
        now = workflow.now()
        entered = next((e.at for e in reversed(self.state.timeline) if e.kind == "stage"), None)
        if entered is not None:
            metrics.stage_left(self.request.repo, self.state.stage.value, (now - entered).total_seconds())
        if stage.terminal:
            began = self.state.timeline[0].at if self.state.timeline else workflow.info().start_time
            metrics.request_finished(self.request.repo, stage.value.lower(), (now - began).total_seconds())

    def note(self, message: str, kind: str = "info") -> None:
        self.state.timeline.append(
            TimelineEntry(at=workflow.now(), stage=self.state.stage, message=message, kind=kind)  # type: ignore[arg-type]
        )
        if kind == "error":
            self.state.last_error = message

    def card(self) -> str:
        s, links = self.state, self.state.links
        lines = [
            f"### {s.stage.value}",
            f"**{self.request.repo}** · requested by {s.requester} · round {s.round}, attempt {s.attempt}",
            "",
            f"> {s.instruction}",
        ]
        for label, value in (
            ("Work branch", links.work_branch),
            ("Install page", links.install_page),
            ("Merged commit", links.merged_commit),
        ):
            if value:
                lines.append(f"- {label}: `{value}`")
        if s.usage.input_tokens or s.usage.output_tokens:
            lines.append(
                f"- Tokens: {s.usage.input_tokens} in / {s.usage.output_tokens} out / "
                f"{s.usage.cache_read_tokens} cache read · ${s.usage.cost_usd:.4f}"
            )
        if s.last_error and s.stage == Stage.FAILED:
            lines.append(f"\n**Error:** {s.last_error[:500]}")
        return "\n".join(lines)

    def history_is_long(self) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or (
            info.get_current_history_length() >= self.request.options.history_limit
        )

    def commit_title(self) -> str:
        first = self.request.instruction.strip().splitlines()[0] if self.request.instruction.strip() else "change"
        return first if len(first) <= 72 else first[:69] + "..."

    def commit_body(self) -> str:
        parts = [f"Requested through Honk by {self.request.requester}."]
        if self.state.last_summary:
            parts.append(self.state.last_summary)
        return "\n\n".join(parts)
