"""Tell the requester what happened: status changes, build ready, approval needed, merged.

Delivery sits behind `Notifier`. Until a chat is configured, `LogNotifier` writes each notice
as a structured log line and appends it to a per-request JSON-lines file, the stand-in for
the chat thread; the Slack notifier (one status message updated in place plus thread
replies) implements the same protocol.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from temporalio import activity

from activities.workspace import safe_name
from honk.settings import Settings
from workflows.contract import ACTIVITY_NOTIFY, Notice

log = logging.getLogger("honk.notify")


class Notifier(Protocol):
    async def send(self, notice: Notice) -> None: ...


class LogNotifier:
    """Notices as log lines plus `<dir>/<request_id>.jsonl`, one JSON object a line."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, notice: Notice) -> None:
        fields = {
            "request_id": notice.request_id,
            "event": notice.event,
            "stage": notice.stage.value,
            "text": notice.text,
            "links": notice.links.model_dump(mode="json", exclude_none=True),
        }
        log.info(f"{notice.event}: {notice.text}", extra=fields)
        record = {"at": datetime.now(UTC).isoformat(), **notice.model_dump(mode="json")}
        await asyncio.to_thread(self._append, notice.request_id, record)

    def thread_path(self, request_id: str) -> Path:
        # Request ids are workflow ids; `safe_name` keeps those as they are, others one file.
        return self.directory / f"{safe_name(request_id)}.jsonl"

    def _append(self, request_id: str, record: dict[str, Any]) -> None:
        path = self.thread_path(request_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        # One write(2) of the whole line with O_APPEND: concurrent notices never interleave.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def make_notifier(settings: Settings) -> Notifier:
    # The seam for Slack: pick `SlackNotifier` here once its settings exist.
    return LogNotifier(settings.data_dir / "notifications")


class NotifyActivities:
    def __init__(self, settings: Settings, notifier: Notifier | None = None) -> None:
        self.settings = settings
        self.notifier = notifier or make_notifier(settings)

    @activity.defn(name=ACTIVITY_NOTIFY)
    async def notify(self, notice: Notice) -> None:
        await self.notifier.send(notice)
