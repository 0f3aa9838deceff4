"""The notify activity: a notice to the requester, through the domain's notifiers
(honk/notify/), with which attempt of which notification this is, so a retry never posts twice."""

from __future__ import annotations

from temporalio import activity

from honk.activities.adapter import adapting
from honk.config.settings import Settings
from honk.notify.exactly_once import Attempt
from honk.notify.routing import Notifier, make_notifier, notify
from honk.workflows.contract import ACTIVITY_NOTIFY, Notice


class NotifyActivities:
    def __init__(self, settings: Settings, notifier: Notifier | None = None) -> None:
        self.settings = settings
        self.notifier = notifier or make_notifier(settings)

    @activity.defn(name=ACTIVITY_NOTIFY)
    async def notify(self, notice: Notice) -> None:
        with adapting():
            await notify(self.notifier, notice, current_attempt())


def current_attempt() -> Attempt | None:
    """This activity's attempt; None when called directly (tests, scripts): nothing to retry."""
    if not activity.in_activity():
        return None
    info = activity.info()
    return Attempt.of(info.workflow_run_id or "", info.activity_id, info.attempt)
