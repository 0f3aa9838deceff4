"""What the chat service and the notifier share about Slack: the Web API client (one place
sets its base URL and rate-limit handling), the ids of Honk's buttons and modal, what a
Slack user id looks like, and how user text is escaped for Slack's mrkdwn.

The notifier posts the buttons and the chat service handles them, so their ids live here
rather than in either of them (nothing imports `chat/`).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient

from honk.config.settings import Settings, SettingsError
from honk.ratelimit import retry_after as header_retry_after

log = logging.getLogger("honk.slack")

# Buttons on the needs-approval message, and the "Request changes" modal.
ACTION_APPROVE = "honk_approve"
ACTION_REQUEST_CHANGES = "honk_request_changes"
ACTION_CANCEL = "honk_cancel"
DECISION_BLOCK = "honk_decision"
VIEW_CHANGES = "honk_changes"
CHANGES_BLOCK = "honk_changes_text"
CHANGES_INPUT = "text"

# Every message Honk posts carries message metadata of this type, so a retried notification
# can find what an earlier attempt already posted (see honk/slack/delivery.py).
METADATA_EVENT = "honk_notice"

# A 429 whose Retry-After is longer than this is not waited out inside one API call: the
# notify activity fails and Temporal retries it after exactly that delay instead.
MAX_INLINE_RETRY_AFTER = 10


# A Slack user id (U..., or W... on Enterprise Grid), and a mention of one as Slack sends it
# (`<@U123>` or `<@U123|name>`).
USER_ID = r"[UW][A-Z0-9]+"
USER_MENTION = re.compile(rf"<@({USER_ID})(?:\|[^>]*)?>")
_USER = re.compile(rf"^{USER_ID}$")


def is_user_id(who: str | None) -> bool:
    """Whether `who` is a Slack user id (rather than a CLI user's name)."""
    return bool(who and _USER.match(who))


def escape(text: str) -> str:
    """User or tool text made inert for mrkdwn: no mentions, links or markup injection."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def retry_after(exc: SlackApiError) -> float | None:
    """Seconds Slack asked us to wait, when it answered 429."""
    response = exc.response
    if response is None or response.status_code != 429:
        return None
    wait = header_retry_after(response.headers)
    return 1.0 if wait is None else wait


class BoundedRateLimitRetry(AsyncRateLimitErrorRetryHandler):
    """Wait out a 429 inside the call when Retry-After is short; otherwise let the error
    surface, so an activity can hand the wait to Temporal instead of holding a slot."""

    def __init__(self, max_retry_count: int = 3, max_wait: float = MAX_INLINE_RETRY_AFTER) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait = max_wait

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        wait = header_retry_after(response.headers)
        wait = 1.0 if wait is None else wait
        if wait > self.max_wait:
            log.warning("slack rate limit too long to wait inline", extra={"retry_after_s": wait})
            return False
        log.info("slack rate limited; waiting", extra={"retry_after_s": wait, "url": request.url})
        return True


def retry_handlers() -> list[AsyncRetryHandler]:
    # Server errors are deliberately not retried here: a 5xx may hide a message that was
    # posted after all, and only the caller knows how to check for it before posting again.
    return [AsyncConnectionErrorRetryHandler(), BoundedRateLimitRetry()]


def web_client(settings: Settings, token: str | None = None) -> AsyncWebClient:
    """The bot's Web API client (or one for `token`), pointed at `HONK_SLACK_API_URL`."""
    if token is None:
        if settings.slack_bot_token is None or not settings.slack_bot_token.get_secret_value():
            raise SettingsError("HONK_SLACK_BOT_TOKEN is not set (the bot token, xoxb-...)")
        token = settings.slack_bot_token.get_secret_value()
    return AsyncWebClient(
        token=token,
        base_url=settings.slack_api_url,
        timeout=15,
        retry_handlers=retry_handlers(),
        logger=logging.getLogger("honk.slack.sdk"),
    )


def button_value(**fields: Any) -> str:
    """A button's value: compact JSON (Slack allows 2,000 characters)."""
    return json.dumps(fields, separators=(",", ":"))[:2000]


def read_button_value(value: str | None) -> dict[str, Any]:
    try:
        data = json.loads(value or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
