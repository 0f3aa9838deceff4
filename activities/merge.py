"""The `merge` activity: an approved change onto the base branch (honk/merge.py) inside Temporal."""

from __future__ import annotations

from temporalio import activity

from honk.activities.adapter import adapting
from honk.config.settings import Settings
from honk.merge import Merger
from honk.workflows.contract import ACTIVITY_MERGE, MergeOutcome, MergeTask


class MergeActivities:
    def __init__(self, settings: Settings) -> None:
        self.merger = Merger(settings)
        self.workspaces = self.merger.workspaces

    @activity.defn(name=ACTIVITY_MERGE)
    def merge(self, task: MergeTask) -> MergeOutcome:
        with adapting():
            return self.merger.merge(task)
