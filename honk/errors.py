"""The one failure type the domain library reports to its callers.

Activities turn it into a Temporal ``ApplicationError`` (``activities/adapter.py``): ``kind``
becomes the error type the workflow branches on (``MergeConflict``, ``ConfigError``), and
``retryable`` says whether trying again can help. The domain itself never imports Temporal.
"""

from __future__ import annotations

from datetime import timedelta


class HonkError(Exception):
    """A failure with a user-facing message, a stable kind and a retry verdict."""

    def __init__(
        self,
        message: str,
        *,
        kind: str = "HonkError",
        retryable: bool = True,
        retry_after: timedelta | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.retryable = retryable
        self.retry_after = retry_after  # e.g. a rate limit's Retry-After


def permanent(message: str, kind: str) -> HonkError:
    """A failure that trying again will not fix (bad configuration, a refused request)."""
    return HonkError(message, kind=kind, retryable=False)
