"""The `run_checks` activity: the repository's checks (honk/checks.py) inside Temporal."""

from __future__ import annotations

from temporalio import activity

from honk.activities.adapter import adapting
from honk.checks import Checks, WorkspaceProvider
from honk.config.settings import Settings
from honk.workflows.contract import ACTIVITY_CHECKS, ChecksOutcome, ChecksTask


class CheckActivities:
    def __init__(self, settings: Settings, workspaces: WorkspaceProvider | None = None) -> None:
        self.checks = Checks(settings, workspaces)
        self.workspaces = self.checks.workspaces

    @activity.defn(name=ACTIVITY_CHECKS)
    def run_checks(self, task: ChecksTask) -> ChecksOutcome:
        with adapting():
            return self.checks.run(task)
