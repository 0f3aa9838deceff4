"""What a Claude Code run reports, read into Honk's terms: token usage and cost per model,
and a failed run as a retry decision (the same kinds as the default backend's errors)."""

from __future__ import annotations

from typing import Any

from honk.errors import HonkError
from honk.workflows.contract import Usage


def usage_of(data: dict[str, Any] | None, cost: float) -> Usage:
    data = data or {}
    return Usage(
        input_tokens=int(data.get("input_tokens") or data.get("inputTokens") or 0),
        output_tokens=int(data.get("output_tokens") or data.get("outputTokens") or 0),
        cache_write_tokens=int(data.get("cache_creation_input_tokens") or data.get("cacheCreationInputTokens") or 0),
        cache_read_tokens=int(data.get("cache_read_input_tokens") or data.get("cacheReadInputTokens") or 0),
        cost_usd=round(float(cost or 0), 6),
    )


def result_error(result: Any, assistant_error: str | None) -> HonkError:
    """Map a failed run to a retry decision, like `messages.model_error`: refusals
    (400/401/403/404) are final, everything else (429, 529, 5xx, a crashed CLI) is retried."""
    status = getattr(result, "api_error_status", None) if result is not None else None
    text = (
        (
            getattr(result, "result", None)
            or "; ".join(getattr(result, "errors", None) or [])
            or assistant_error
            or "no detail"
        )
        if result is not None
        else (assistant_error or "no detail")
    )
    if status in (400, 401, 403, 404) or assistant_error in (
        "authentication_failed",
        "billing_error",
        "invalid_request",
    ):
        hint = (
            " Check HONK_ANTHROPIC_API_KEY."
            if status in (401, 403) or assistant_error == "authentication_failed"
            else ""
        )
        return HonkError(
            f"the model API refused the request ({status or assistant_error}): {text}.{hint}",
            kind="ModelRequestRejected",
            retryable=False,
        )
    if status is not None or assistant_error is not None:
        return HonkError(f"the model API is unavailable ({status or assistant_error}): {text}", kind="ModelUnavailable")
    if result is None:
        return HonkError("Claude Code ended without a result", kind="ClaudeCodeError")
    return HonkError(f"Claude Code failed ({getattr(result, 'subtype', '?')}): {text}", kind="ClaudeCodeError")


class MessageUsage:
    """An AssistantMessage's usage dict, shaped like the API's usage object for `Meter.add`."""

    def __init__(self, data: dict[str, Any] | None) -> None:
        data = data or {}
        self.input_tokens = data.get("input_tokens", 0)
        self.output_tokens = data.get("output_tokens", 0)
        self.cache_creation_input_tokens = data.get("cache_creation_input_tokens", 0)
        self.cache_read_input_tokens = data.get("cache_read_input_tokens", 0)
