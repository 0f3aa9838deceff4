"""`prepare_workspace` and `cleanup_workspace`: sync, run on the worker's thread pool."""

from __future__ import annotations

from temporalio import activity

from honk.activities.adapter import adapting
from honk.config.settings import Settings
from honk.workflows.contract import ACTIVITY_CLEANUP, ACTIVITY_PREPARE, CleanupTask, PreparedWorkspace, WorkspaceRef
from honk.workspace import Workspaces


class WorkspaceActivities:
    def __init__(self, settings: Settings) -> None:
        self.workspaces = Workspaces(settings)

    @activity.defn(name=ACTIVITY_PREPARE)
    def prepare(self, ref: WorkspaceRef) -> PreparedWorkspace:
        with adapting():
            return self.workspaces.prepare(ref)

    @activity.defn(name=ACTIVITY_CLEANUP)
    def cleanup(self, task: CleanupTask) -> None:
        with adapting():
            self.workspaces.remove(
                task.workspace, delete_remote_branch=task.delete_remote_branch, expect_sha=task.expect_sha
            )
