"""The request's visible record, kept by the workflow: the timeline, the stage with its search
attributes and details card, the per-stage metrics, and notices to the requester."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

from honk.workflows import metrics, patches, steps, wording
from honk.workflows.contract import (
    BESIDE_STATUS,
    SA_REPO,
    SA_REQUESTER,
    SA_STAGE,
    AgentOutcome,
    ChangeRequest,
    NoteKind,
    Notice,
    NoticeEvent,
    RequestState,
    Stage,
    TimelineEntry,
    Usage,
)
from honk.workflows.limits import Limits
from honk.workflows.step_calls import explain

# A status notice waits until its stage has lasted this long: a stage that ends sooner is
# overtaken by the next notice (no chat edit and no step for a line nobody could read).
STATUS_SETTLE = timedelta(seconds=1)
REVIEW_EVENTS = ("needs_approval", "reminder")  # notices that show the change itself


class Record:
    def __init__(self, request: ChangeRequest, state: RequestState) -> None:
        self.request = request
        self.state = state
        self.outbox: list[Notice] = []
        self.courier: asyncio.Task[None] | None = None

    def note(self, message: str, kind: NoteKind = "info") -> None:
        self.state.timeline.append(TimelineEntry(at=workflow.now(), stage=self.state.stage, message=message, kind=kind))
        if kind == "error":
            self.state.last_error = message

    async def enter(self, stage: Stage, message: str) -> None:
        """Move to `stage`: timeline, search attributes (the UI's columns), details card, and
        a status notice for the working stages."""
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
        workflow.set_current_details(wording.card(self.request, self.state))
        if not stage.terminal and stage not in (Stage.RECEIVED, Stage.AWAITING_APPROVAL):
            await self.tell("status", message)

    async def tell(self, event: NoticeEvent, text: str) -> None:
        """Tell the requester (chat thread or log), in order, without holding up the request.
        Never fails the request."""
        notice = Notice(
            request_id=self.state.request_id,
            repo=self.request.repo,
            event=event,
            stage=self.state.stage,
            text=text,
            origin=self.request.origin,
            links=self.state.links.model_copy(),
            protected_changes=list(self.state.protected_changes),
            review=wording.reviewed(self.request, self.state) if event in REVIEW_EVENTS else None,
        )
        if workflow.patched(patches.QUEUED_NOTICES):
            self.outbox.append(notice)
            if self.courier is None:
                self.courier = asyncio.create_task(self.deliver())
            return
        await self.send(notice)

    async def deliver(self) -> None:
        """Send queued notices one at a time, in order (the chat message is updated in place)."""
        try:
            while self.outbox:
                if self.outbox[0].event == "status":
                    await self.settle(self.outbox[0])
                if not self.superseded(self.outbox[0]):
                    await self.send(self.outbox[0])
                self.outbox.pop(0)
        finally:
            self.courier = None

    async def settle(self, notice: Notice) -> None:
        """Hold a status line until its stage has lasted STATUS_SETTLE, or until another notice
        is queued behind it (the next stage's line then overtakes it, see `superseded`)."""
        entered = next((e.at for e in reversed(self.state.timeline) if e.kind == "stage"), None)
        if notice.stage != self.state.stage or entered is None or len(self.outbox) > 1:
            return
        left = STATUS_SETTLE - (workflow.now() - entered)
        if left <= timedelta(0) or not workflow.patched(patches.SETTLED_STATUS):
            return
        try:
            await workflow.wait_condition(lambda: len(self.outbox) > 1, timeout=left)
        except (TimeoutError, asyncio.CancelledError):
            pass  # the stage lasted (or a cancel interrupted the wait): its line goes out

    def superseded(self, notice: Notice) -> bool:
        """A status line that a notice queued after it rewrites anyway: when the stages move
        faster than notices go out (a loaded worker, a slow chat), only the newest is sent."""
        if notice.event != "status" or not any(n.event not in BESIDE_STATUS for n in self.outbox[1:]):
            return False
        return workflow.patched(patches.COALESCE_STATUS)

    async def flush_notices(self) -> None:
        """Wait until every queued notice went out: a closed or continued run sends nothing."""
        if self.courier is not None:
            await workflow.wait_condition(lambda: self.courier is None)

    async def send(self, notice: Notice) -> None:
        event = notice.event
        limit = Limits(self.request.options, None).notify()
        try:
            await workflow.execute_activity(
                steps.NOTIFY.name,
                notice,
                result_type=steps.NOTIFY.output,
                summary=f"Notify: {event}",
                start_to_close_timeout=limit.timeout,
                schedule_to_close_timeout=limit.schedule_to_close,
                retry_policy=limit.retry,
            )
        except ActivityError as err:
            self.note(f"Could not notify ({event}): {explain(err)}", kind="warning")

    def count_usage(self, outcome: AgentOutcome) -> None:
        """Add an agent run's tokens and dollars, in total and per model."""
        state = self.state
        state.usage = state.usage.plus(outcome.usage)
        for model, usage in outcome.usage_by_model.items():
            state.usage_by_model[model] = state.usage_by_model.get(model, Usage()).plus(usage)

    def measure_stage(self, stage: Stage) -> None:
        """Metrics only (nothing recorded on replay): the time spent in the stage being left
        and, on reaching an end, the request's outcome and total time."""
        now, state, repo = workflow.now(), self.state, self.request.repo
        entered = next((e.at for e in reversed(state.timeline) if e.kind == "stage"), None)
        if entered is not None:
            metrics.stage_left(repo, state.stage.value, (now - entered).total_seconds())
        if stage.terminal:
            began = state.timeline[0].at if state.timeline else workflow.info().start_time
            metrics.request_finished(repo, stage.value.lower(), (now - began).total_seconds())

    def history_is_long(self) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or (
            info.get_current_history_length() >= self.request.options.history_limit
        )
