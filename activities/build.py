"""The `build` activity: one build target (honk/builds/build.py) inside Temporal."""

from __future__ import annotations

from temporalio import activity

from honk.activities.adapter import adapting
from honk.builds.build import Builder
from honk.builds.drivers import BuildDriver
from honk.checks import WorkspaceProvider
from honk.config.settings import Settings
from honk.publish.store import ArtifactStore
from honk.workflows.contract import ACTIVITY_BUILD, BuildOutcome, BuildTask


class BuildActivities:
    def __init__(
        self,
        settings: Settings,
        workspaces: WorkspaceProvider | None = None,
        drivers: dict[str, BuildDriver] | None = None,
        store: ArtifactStore | None = None,
    ) -> None:
        self.builder = Builder(settings, workspaces, drivers, store)
        self.workspaces = self.builder.workspaces

    @activity.defn(name=ACTIVITY_BUILD)
    def build(self, task: BuildTask) -> BuildOutcome:
        with adapting():
            return self.builder.build(task)
