"""Deliberately incompatible copies of ChangeRequestWorkflow, to prove the replay check
catches the changes that strand running requests. Kept apart from the test module: the
workflow sandbox imports this module, and it must import nothing but the workflow."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from honk.workflows.change_request import ChangeRequestWorkflow
from honk.workflows.contract import ACTIVITY_NOTIFY, WORKFLOW_TYPE, ChangeRequest, Notice, RequestStatus


@workflow.defn(name=WORKFLOW_TYPE)
class ExtraNotification(ChangeRequestWorkflow):
    """The change that stranded requests before: one more notification while preparing."""

    @workflow.run
    async def run(self, request: ChangeRequest) -> RequestStatus:
        return await super().run(request)

    async def prepare(self) -> None:
        notice = Notice(
            request_id=self.state.request_id,
            repo=self.request.repo,
            event="status",
            stage=self.state.stage,
            text="preparing",
        )
        await workflow.execute_activity(ACTIVITY_NOTIFY, notice, start_to_close_timeout=timedelta(minutes=1))
        await super().prepare()


@workflow.defn(name=WORKFLOW_TYPE)
class SwappedCalls(ChangeRequestWorkflow):
    """Two existing activity calls in the other order: prepare first, then say "On it"."""

    @workflow.init
    def __init__(self, request: ChangeRequest) -> None:
        super().__init__(request)
        self.deferred: tuple | None = None
        tell = self.record.tell

        async def later_if_received(event, text) -> None:
            if event == "received" and self.prepared is None:
                self.deferred = (event, text)
                return
            await tell(event, text)

        self.record.tell = later_if_received  # type: ignore[method-assign]

    @workflow.run
    async def run(self, request: ChangeRequest) -> RequestStatus:
        return await super().run(request)

    async def prepare(self) -> None:
        await super().prepare()
        if self.deferred:
            deferred, self.deferred = self.deferred, None
            await self.record.tell(*deferred)
