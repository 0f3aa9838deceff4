"""How long a rate-limited or overloaded service asked us to wait (its Retry-After header).

One parser for every HTTP service Honk calls (Slack, the model API): a header given as
seconds, possibly repeated or as a list, case-insensitive; nonsense and negative values are
ignored; the wait is capped so a hostile or buggy server cannot park a request for days."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_WAIT_S = 600.0


def retry_after(headers: Mapping[str, Any] | None, *, default: float | None = None) -> float | None:
    """Seconds from a Retry-After header, or ``default`` when there is none or it is unreadable."""
    if not headers:
        return default
    value = next((v for k, v in headers.items() if str(k).lower() == "retry-after"), None)
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    try:
        seconds = float(value) if value is not None else None
    except (TypeError, ValueError):
        return default
    if seconds is None or seconds < 0 or seconds != seconds:  # NaN
        return default
    return min(seconds, MAX_WAIT_S)
