"""Heartbeats for long domain work, through a callback the caller installs.

The domain library calls ``beat()`` and ``cancelled()``; an activity adapter installs a
``Pulse`` that forwards them to Temporal (``activities/adapter.py``), so a dead worker is
noticed within the heartbeat timeout and a cancelled request stops promptly. Outside an
activity (tests, the CLI) the default pulse does nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator
from typing import Any, Protocol


class Pulse(Protocol):
    def beat(self, *details: Any) -> None: ...

    def cancelled(self) -> bool: ...

    def shielded(self) -> contextlib.AbstractContextManager[None]: ...


class _Still:
    def beat(self, *details: Any) -> None:
        return None

    def cancelled(self) -> bool:
        return False

    def shielded(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


_current: contextvars.ContextVar[Pulse | None] = contextvars.ContextVar("honk_pulse", default=None)


@contextlib.contextmanager
def using(pulse: Pulse) -> Iterator[None]:
    """Route ``beat()``/``cancelled()`` of the enclosed domain work to ``pulse``."""
    token = _current.set(pulse)
    try:
        yield
    finally:
        _current.reset(token)


def _pulse() -> Pulse:
    return _current.get() or _Still()


def in_activity() -> bool:
    """True when a caller installed a pulse (the work runs inside a Temporal activity)."""
    return _current.get() is not None


def beat(*details: Any) -> None:
    _pulse().beat(*details)


def cancelled() -> bool:
    return _pulse().cancelled()


def shielded() -> contextlib.AbstractContextManager[None]:
    """A block the caller's cancellation may not interrupt half-way (cleanup that kills a
    process tree); a cancellation that arrives meanwhile is raised when it ends."""
    return _pulse().shielded()


@contextlib.contextmanager
def heartbeating(*details: Any, every: float = 5.0) -> Iterator[threading.Event]:
    """Heartbeat from a background thread while a blocking block (a git clone, a push) runs.

    Yields an event that is set when the work is cancelled, for loops that can stop early.
    """
    stop = threading.Event()
    cancel = threading.Event()
    pulse = _current.get()
    if pulse is None:
        yield cancel
        return

    def run() -> None:
        while not stop.wait(every):
            try:
                pulse.beat(*details)
            except RuntimeError:  # the activity already finished
                return
            if pulse.cancelled():
                cancel.set()

    # A Temporal pulse reads the activity from context variables: the thread runs in a copy.
    context = contextvars.copy_context()
    pulse.beat(*details)
    thread = threading.Thread(target=context.run, args=(run,), name="honk-heartbeat", daemon=True)
    thread.start()
    try:
        yield cancel
    finally:
        stop.set()
        thread.join(timeout=every + 1)
