"""Which notifiers a notice goes to: the log (and its JSON-lines record) for every request,
Slack as well for requests that came from Slack (when a bot token is configured)."""

from __future__ import annotations

import logging
from typing import Protocol

from honk.config.settings import Settings
from honk.notify.exactly_once import Attempt
from honk.notify.log_notifier import LogNotifier
from honk.redact import redact
from honk.slack.delivery import SlackNotifier
from honk.workflows.contract import Notice

slack_log = logging.getLogger("honk.notify.slack")


class Notifier(Protocol):
    async def send(self, notice: Notice, attempt: Attempt | None = None) -> None: ...


class ChatNotifier:
    """Slack for requests that came from Slack; the log (and its JSON-lines record) for all."""

    def __init__(self, log_notifier: LogNotifier, slack: Notifier | None = None) -> None:
        self.log = log_notifier
        self.slack = slack
        self._warned = False

    async def send(self, notice: Notice, attempt: Attempt | None = None) -> None:
        if notice.origin.kind == "slack":
            if self.slack is not None:
                await self.slack.send(notice, attempt)  # first: a failure here retries before the log line
            elif not self._warned:
                self._warned = True
                slack_log.warning(
                    "a request came from Slack but HONK_SLACK_BOT_TOKEN is not set; notices go to the log only",
                    extra={"request_id": notice.request_id},
                )
        await self.log.send(notice, attempt)


def make_notifier(settings: Settings) -> Notifier:
    token = settings.slack_bot_token
    slack = SlackNotifier(settings) if token is not None and token.get_secret_value() else None
    return ChatNotifier(LogNotifier(settings.data_dir / "notifications"), slack)


async def notify(notifier: Notifier, notice: Notice, attempt: Attempt | None = None) -> None:
    """Send `notice`. Failure texts can quote check output or remote errors: secrets are
    masked before anyone sees them."""
    await notifier.send(notice.model_copy(update={"text": redact(notice.text)}), attempt)
