"""A durable record of every Slack event the chat service acknowledges.

Slack stops delivering an event once it is acknowledged, so the event must be on disk before
the acknowledgement: one JSON file per event id under `<data dir>/chat/events`, written to a
temporary name, fsync'd and renamed (a crash leaves the whole record or none). The record is
removed once the event's handler has finished (request started, or the person answered);
what is still there at start is replayed. Starting a request is idempotent (the workflow id
comes from the thread), so a replay after a crash between start and removal starts nothing
twice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("honk.chat.journal")

# Only what the chat service acts on; anything else would stay pending for ever.
JOURNALED_EVENTS = frozenset({"app_mention", "message"})
MAX_AGE_S = 24 * 3600  # older pending events are stale: the person has moved on
_SAFE_ID = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class Pending:
    event_id: str
    body: dict[str, Any]
    written_at: float


def journal_dir(data_dir: Path) -> Path:
    return data_dir / "chat" / "events"


class EventJournal:
    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def _path(self, event_id: str) -> Path:
        return self.dir / f"{_SAFE_ID.sub('_', event_id)[:120]}.json"

    @staticmethod
    def wants(body: Any) -> str | None:
        """The event id of a body worth journaling, else None."""
        if not isinstance(body, dict) or body.get("type") != "event_callback":
            return None
        event = body.get("event") or {}
        if event.get("type") not in JOURNALED_EVENTS or not body.get("event_id"):
            return None
        return str(body["event_id"])

    def record(self, event_id: str, body: dict[str, Any]) -> None:
        """Durably write the event (raises OSError when it cannot: then Slack is not
        acknowledged and delivers it again)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        final = self._path(event_id)
        tmp = final.with_suffix(f".tmp-{os.getpid()}")
        data = json.dumps({"event_id": event_id, "written_at": time.time(), "body": body}).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        self._sync_dir()

    def done(self, event_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(event_id).unlink()
            self._sync_dir()

    def pending(self, now: float | None = None) -> list[Pending]:
        """Records left by a previous run, oldest first; stale and unreadable ones are dropped."""
        now = time.time() if now is None else now
        found: list[Pending] = []
        for path in sorted(self.dir.glob("*.json")) if self.dir.is_dir() else []:
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                item = Pending(str(record["event_id"]), dict(record["body"]), float(record["written_at"]))
            except (OSError, ValueError, KeyError, TypeError):
                log.warning("unreadable chat event record dropped", extra={"path": str(path)})
                path.unlink(missing_ok=True)
                continue
            if now - item.written_at > MAX_AGE_S:
                log.warning("stale chat event dropped", extra={"event_id": item.event_id})
                path.unlink(missing_ok=True)
                continue
            found.append(item)
        return sorted(found, key=lambda p: p.written_at)

    def _sync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
