"""The rule book for the user's actions (approve, request_changes, cancel) and the decisions a
run has accepted. Signals and the `decide` update go through the same rules; an accepted
decision is applied at once, in arrival order."""

from __future__ import annotations

from temporalio import workflow

from honk.workflows import approvals, metrics, patches, wording
from honk.workflows.contract import (
    Action,
    ChangeRequest,
    Decision,
    DecisionOutcome,
    DecisionUpdate,
    Feedback,
    Stage,
)
from honk.workflows.record import Record
from honk.workflows.step_calls import StepCalls

MAX_FEEDBACK = 4000  # characters of a comment or change request
MAX_WHO = 200


class RequestExpired(Exception):
    """No decision came before the approval deadline."""


class Decisions:
    def __init__(self, request: ChangeRequest, record: Record, steps: StepCalls) -> None:
        self.request = request
        self.state = record.state
        self.record = record
        self.steps = steps
        self.approval: Decision | None = None
        self.cancellation: Decision | None = None
        # Approvals bind to the commit awaiting approval, decisions count once (issue 12);
        # set by the workflow for requests started on this code.
        self.binding = False

    async def answer(self, action: Action, decision: Decision) -> None:
        """A signalled decision: applied, or refused with the reason recorded and told."""
        if self.binding:
            if approvals.seen(self.state, decision):
                self.record.note(f"Ignored a repeat of {action} from {decision.by.strip()} ({decision.id})")
                return
            # A signal without an id still gets one, deterministic on replay.
            decision = decision.model_copy(update={"id": decision.id or workflow.uuid4().hex})
        refusal = self.refusal(action, decision)
        if refusal is None:
            self.apply(action, decision)
            return
        await self.refuse(action, decision, refusal)

    async def decide(self, update: DecisionUpdate) -> DecisionOutcome:
        """The `decide` update: applied, or refused on the merits, answered (accepted=False)
        and recorded like a signal's. Histories from before patch `decide-records-refusals`
        had such refusals rejected by the validator, so their accepted updates all apply."""
        if self.binding and approvals.seen(self.state, update):
            return DecisionOutcome(accepted=True, message=f"Already applied ({update.id})", stage=self.state.stage)
        if workflow.patched(patches.DECIDE_RECORDS_REFUSALS):
            refusal = self.refusal(update.action, update)
            if refusal:
                await self.refuse(update.action, update, refusal)
                return DecisionOutcome(accepted=False, message=refusal, stage=self.state.stage)
        message = self.apply(update.action, update)
        return DecisionOutcome(accepted=True, message=message, stage=self.state.stage)

    async def refuse(self, action: Action, decision: Decision, refusal: str) -> None:
        """Record a refusal in the timeline and tell the requester."""
        if self.binding:
            approvals.remember(self.state, decision)
        metrics.decision(action, accepted=False)
        entry, notice = wording.refused(action, decision.by, refusal)
        self.record.note(entry, kind="refused")
        await self.record.tell("refused", notice)

    def validate_form(self, decision: Decision) -> None:
        """The `decide` update's validator: rejects only malformed input (nothing to record);
        a refusal on the merits is recorded by the handler, like a signal's. Validators do not
        run on replay, so this change needs no patch."""
        if self.binding and approvals.seen(self.state, decision):
            return  # a repeat: the handler answers "already applied"
        refusal = self.malformed(decision)
        if refusal:
            raise ValueError(refusal)

    @staticmethod
    def malformed(decision: Decision) -> str | None:
        who, words = decision.by.strip(), decision.text.strip()
        if not who:
            return "the decision does not say who made it (set 'by')"
        if len(who) > MAX_WHO:
            return f"'by' is {len(who)} characters; the limit is {MAX_WHO}"
        if len(words) > MAX_FEEDBACK:
            return f"the text is {len(words)} characters; the limit is {MAX_FEEDBACK}"
        return None

    def may_approve(self, who: str) -> bool:
        return "*" in self.request.approvers or who in self.request.approvers

    def approvers_named(self) -> str:
        """Who may decide, so a refused user knows whom to ask."""
        if not self.request.approvers:
            return "no approvers are configured"
        return "approvers: " + ", ".join(self.request.approvers)

    def refusal(self, action: Action, decision: Decision) -> str | None:
        """Why a decision may not be applied now, or None when it may."""
        who, stage, words = decision.by.strip(), self.state.stage, decision.text.strip()
        malformed = self.malformed(decision)
        if malformed:
            return malformed
        if stage.terminal:
            return f"the request is already {stage.value}"
        if action == "approve":
            if not self.may_approve(who):
                return f"{who} is not an approver for {self.request.repo}; {self.approvers_named()}"
            if stage != Stage.AWAITING_APPROVAL:
                return f"nothing to approve yet: the request is {stage.value}"
            return self.binding_refusal(action, decision)
        if who != self.request.requester and not self.may_approve(who):
            return (
                f"{who} is neither the requester nor an approver for {self.request.repo}; "
                f"requester: {self.request.requester}; {self.approvers_named()}"
            )
        if stage == Stage.MERGING:
            return "the change is already being merged"
        if self.cancellation:
            return "the request is being cancelled"
        if action == "request_changes":
            if not words:
                return "say what should change ('text')"
            rounds_used = self.state.round + (1 if self.state.pending_feedback else 0)
            if rounds_used >= self.request.options.max_rounds:
                return f"all {self.request.options.max_rounds} rounds are used; approve, cancel, or start a new request"
        return self.binding_refusal(action, decision)

    def binding_refusal(self, action: Action, decision: Decision) -> str | None:
        if not self.binding:
            return None
        return approvals.refusal(self.request, self.state, action, decision, self.approval is not None)

    def apply(self, action: Action, decision: Decision) -> str:
        who = decision.by.strip()
        if self.binding:
            if approvals.seen(self.state, decision):
                return f"Already applied ({decision.id})"
            approvals.remember(self.state, decision)
        metrics.decision(action, accepted=True)
        if action == "approve" and self.binding:
            complete, message = approvals.approve(self.request, self.state, who)
            if complete:
                self.approval = decision.model_copy(update={"by": self.state.approved_by or who})
        elif action == "approve":
            self.approval = decision
            self.state.approved_by = who
            message = f"Approved by {who}"
        elif action == "cancel":
            self.cancellation = decision
            self.steps.cancel_running()
            message = f"Cancel requested by {who}"
        else:
            self.state.pending_feedback.append(Feedback(by=who, text=decision.text.strip(), at=workflow.now()))
            message = (
                f"Changes requested by {who}"
                if self.state.stage == Stage.AWAITING_APPROVAL
                else f"Feedback from {who} queued for the next round"
            )
        self.record.note(message, kind="decision")
        return message
