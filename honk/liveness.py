"""Heartbeats for blocking activity work, so a dead worker is noticed within the heartbeat
timeout and a cancelled request stops its work promptly."""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator
from typing import Any

from temporalio import activity


def in_activity() -> bool:
    return activity.in_activity()


def beat(*details: Any) -> None:
    """Heartbeat if running inside an activity; a no-op when called from plain code."""
    if activity.in_activity():
        activity.heartbeat(*details)


def cancelled() -> bool:
    return activity.in_activity() and activity.is_cancelled()


@contextlib.contextmanager
def heartbeating(*details: Any, every: float = 5.0) -> Iterator[threading.Event]:
    """Heartbeat from a background thread while a blocking block (a git clone, a push) runs.

    Yields an event that is set when the activity is cancelled, for loops that can stop early.
    """
    stop = threading.Event()
    cancel = threading.Event()
    if not activity.in_activity():
        yield cancel
        return

    def run() -> None:
        while not stop.wait(every):
            try:
                activity.heartbeat(*details)
            except RuntimeError:  # the activity already finished
                return
            if activity.is_cancelled():
                cancel.set()

    # The activity context lives in context variables; the thread runs in a copy of them.
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(run,), name="honk-heartbeat", daemon=True)
    activity.heartbeat(*details)
    thread.start()
    try:
        yield cancel
    finally:
        stop.set()
        thread.join(timeout=every + 1)
