"""Host-wide exclusive locks on files: one git step per workspace, mirror or pool at a time,
across the worker's threads and processes."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from honk import liveness

_held_locks = threading.local()


class LockBusy(RuntimeError):
    """A non-blocking `file_lock` found another holder."""


@contextlib.contextmanager
def file_lock(path: Path, what: str = "lock", *, blocking: bool = True) -> Iterator[None]:
    """Exclusive flock on `path`.

    Excludes other processes *and* other threads (each acquisition opens its own file
    description). Re-entrant within a thread, so a caller holding a workspace may call
    methods that lock it again. Heartbeats while waiting for another holder; with
    `blocking=False` raises LockBusy instead of waiting.
    """
    held: dict[str, int] = _held_locks.__dict__.setdefault("paths", {})
    key = str(path)
    if key in held:
        held[key] += 1
        try:
            yield
        finally:
            held[key] -= 1
        return

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            if not blocking:
                raise LockBusy(f"{what} is busy") from None
            with liveness.heartbeating(f"waiting for {what}"):
                fcntl.flock(fd, fcntl.LOCK_EX)
        held[key] = 1
        try:
            yield
        finally:
            del held[key]
    finally:
        os.close(fd)  # releases the flock
