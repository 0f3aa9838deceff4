"""Exactly-once delivery of notifications across activity retries.

Temporal retries a notify activity whose first attempt may have posted before failing (a
lost response, a worker crash). So each notification knows which one it is (`Attempt`: the
same key for every attempt of one notify activity) and what was already posted is kept in
small state files (`SentMessages`), one per message, written atomically so concurrent
notifications of one request never race. A retry that finds nothing there (it ran on another
host) looks in the chat thread before posting; see honk/slack/delivery.py.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from honk.workspace.paths import safe_name


@dataclass(frozen=True)
class Attempt:
    """Which notification this is: `key` is the same for every attempt of one notify
    activity, `number` counts the attempts (1 = first)."""

    key: str
    number: int

    @classmethod
    def of(cls, run_id: str, activity_id: str, number: int) -> Attempt:
        # The run id, not the workflow id: activity ids start again after continue-as-new.
        return cls(f"{run_id}-{activity_id}", number)

    @classmethod
    def fresh(cls) -> Attempt:
        """A notification sent outside Temporal (tests, scripts): no retries to detect."""
        return cls(uuid.uuid4().hex, 1)


class SentMessages:
    """What was posted, per request: `<root>/<request>/<name>` holds a message ts or file id."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, request_id: str, name: str) -> Path:
        return self.root / safe_name(request_id) / safe_name(name)

    def get(self, request_id: str, name: str) -> str | None:
        try:
            return self._path(request_id, name).read_text().strip() or None
        except OSError:
            return None

    def put(self, request_id: str, name: str, value: str) -> None:
        path = self._path(request_id, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w") as f:
            f.write(value)
        os.replace(tmp, path)
