"""Every notice as a structured log line, and appended to a per-request JSON-lines file:
always, for every request, as the record of what was said."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from honk.notify.exactly_once import Attempt
from honk.workflows.contract import Notice
from honk.workspace.paths import safe_name

log = logging.getLogger("honk.notify")


class LogNotifier:
    """Notices as log lines plus `<dir>/<request_id>.jsonl`, one JSON object a line."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, notice: Notice, attempt: Attempt | None = None) -> None:
        fields: dict[str, Any] = {
            "request_id": notice.request_id,
            "event": notice.event,
            "stage": notice.stage.value,
            "text": notice.text,
            "links": notice.links.model_dump(mode="json", exclude_none=True),
        }
        if notice.review is not None:  # what the approver reviews, in the log line too
            fields["changed_files"] = notice.review.changed_files
            fields["diff_stat"] = notice.review.diff_stat
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
