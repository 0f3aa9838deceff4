"""The `publish` activity: store a build and its install page (honk/publish) inside Temporal."""

from __future__ import annotations

from temporalio import activity

from honk.activities.adapter import adapting
from honk.config.settings import Settings
from honk.publish.publish import Publisher
from honk.publish.store import ArtifactStore
from honk.workflows.contract import ACTIVITY_PUBLISH, Published, PublishTask


class PublishActivities:
    def __init__(self, settings: Settings, store: ArtifactStore | None = None) -> None:
        self.publisher = Publisher(settings, store)
        self.store = self.publisher.store

    @activity.defn(name=ACTIVITY_PUBLISH)
    def publish(self, task: PublishTask) -> Published:
        with adapting():
            return self.publisher.publish(task)
