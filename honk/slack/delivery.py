"""Notifications into a Slack thread, for requests that came from Slack: one status message
per request, updated in place as the stage changes, plus thread replies for build ready
(install link + QR image), needs approval (buttons), merged, failed, cancelled, expired,
reminders and refusals. What the messages look like: honk/slack/blocks.py.

Exactly once across activity retries (see honk/notify/exactly_once.py):
- every message carries Slack message metadata naming the request and the notification
  (the attempt key, the same for every attempt of one notification);
- what was posted is remembered in a state file under `<data_dir>/slack/<request>/`;
- a *retry* (attempt > 1) that does not find its message there — it ran on another host, or
  crashed before writing it — looks it up in the thread with `conversations.replies`
  (metadata included) before posting. First attempts never pay for that lookup. The status
  message is found the same way by a worker that never saw it.

Rate limits: a 429 with a short Retry-After is waited out inside the call (honk/slack/client.py);
a longer one fails with `retry_after` = Retry-After, so the attempt is retried exactly when
Slack allows it. Permanent refusals (channel gone, bot removed, bad token) fail without
retrying; the workflow records "could not notify" and carries on.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from honk.config.registry import RegistryError, load_registry
from honk.config.settings import Settings
from honk.errors import HonkError
from honk.notify.exactly_once import Attempt, SentMessages
from honk.publish.qr import qr_code
from honk.slack import blocks
from honk.slack.client import METADATA_EVENT, retry_after, web_client
from honk.workflows.contract import BESIDE_STATUS, Links, Notice

log = logging.getLogger("honk.notify.slack")

# Slack errors that will not go away by trying again.
PERMANENT_ERRORS = {
    "channel_not_found",
    "not_in_channel",
    "is_archived",
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "token_revoked",
    "token_expired",
    "no_permission",
    "missing_scope",
    "invalid_blocks",
    "invalid_arguments",
    "msg_too_long",
    "restricted_action",
    "ekm_access_denied",
}
GONE = ("message_not_found", "cant_update_message")  # an update that must become a new post

# Which thread messages a lookup wants: (metadata payload, message) -> bool.
Match = Callable[[dict[str, Any], dict[str, Any]], bool]


class SlackNotifier:
    def __init__(self, settings: Settings, client: AsyncWebClient | None = None) -> None:
        self.settings = settings
        self.client = client or web_client(settings)
        self.sent = SentMessages(settings.data_dir / "slack")
        self._remotes: dict[str, str] | None = None

    async def send(self, notice: Notice, attempt: Attempt | None = None) -> None:
        origin = notice.origin
        if not (origin.channel and origin.thread_ts):
            log.warning("slack notice without a thread; not sent", extra={"request_id": notice.request_id})
            return
        attempt = attempt or Attempt.fresh()
        try:
            if notice.event not in BESIDE_STATUS:
                await self._show_status(notice, attempt)
            await self._reply(notice, attempt)
        except SlackApiError as exc:
            raise failure(exc, notice) from None
        log.info(
            "slack notified", extra={"request_id": notice.request_id, "event": notice.event, "attempt": attempt.number}
        )

    async def _reply(self, notice: Notice, attempt: Attempt) -> None:
        """The thread reply (and its consequences) of each event; status-only events have none."""
        event = notice.event
        if event == "build_ready":
            await self._post_once(notice, attempt, "build", *blocks.build_ready(notice))
            qr = install_qr_png(notice.links)
            if qr is not None:
                await self._upload_once(notice, attempt, "qr", qr, title="Scan to install on your phone")
        elif event == "needs_approval":
            previous = self.sent.get(notice.request_id, "approval")
            if previous:  # an earlier round's buttons must not approve this round's build unseen
                await self._close_approval(notice, "superseded by a newer build", previous)
            ts = await self._post_once(notice, attempt, "approval", *blocks.needs_approval(notice))
            self.sent.put(notice.request_id, "approval", ts)
        elif event == "reminder":
            await self._post_once(notice, attempt, "reminder", *blocks.reminder(notice))
        elif event == "merged":
            sha = notice.links.merged_commit
            url = self._commit_url(notice.repo, sha) if sha else None
            await self._post_once(notice, attempt, "merged", *blocks.merged(notice, url))
            await self._close_approval(notice, "merged")
        elif event in ("failed", "cancelled", "expired"):
            render = {"failed": blocks.failed, "cancelled": blocks.cancelled, "expired": blocks.expired}[event]
            await self._post_once(notice, attempt, event, *render(notice))
            await self._close_approval(notice, event)
        elif event == "feedback_queued":
            await self._post_once(notice, attempt, "feedback", *blocks.feedback_queued(notice))
        elif event == "refused":
            await self._refuse(notice, attempt)

    async def _refuse(self, notice: Notice, attempt: Attempt) -> None:
        """Privately to the requester when we know who that is; the thread otherwise."""
        origin, name = notice.origin, f"{attempt.key}.refused"
        if self.sent.get(notice.request_id, name):
            return
        text = blocks.refused(notice)
        if origin.user:
            try:
                response = await self.client.chat_postEphemeral(
                    channel=_channel(notice), user=origin.user, thread_ts=notice.origin.thread_ts, text=text
                )
                self.sent.put(notice.request_id, name, response.get("message_ts") or "sent")
                return
            except SlackApiError as exc:
                if slack_error(exc) not in ("user_not_in_channel", "channel_not_found", "not_in_channel"):
                    raise
        await self._post_once(notice, attempt, "refused", notice.text, [blocks.section(text)])

    async def _show_status(self, notice: Notice, attempt: Attempt) -> None:
        request_id = notice.request_id
        ts = self.sent.get(request_id, "status")
        if ts is None and not (notice.event == "received" and attempt.number == 1):
            ts = await self._find(notice, lambda p, m: p.get("kind") == "status")
            if ts:
                self.sent.put(request_id, "status", ts)
        text, body = blocks.status_message(notice)
        if ts:
            try:
                await self.client.chat_update(channel=_channel(notice), ts=ts, text=text, blocks=body)
                return
            except SlackApiError as exc:
                if slack_error(exc) not in GONE:
                    raise
                log.warning("status message gone; posting a new one", extra={"request_id": request_id})
        response = await self.client.chat_postMessage(
            channel=_channel(notice),
            thread_ts=notice.origin.thread_ts,
            text=text,
            blocks=body,
            metadata=blocks.metadata(notice, "status", "status"),
            unfurl_links=False,
            unfurl_media=False,
        )
        self.sent.put(request_id, "status", response["ts"])

    async def _post_once(
        self, notice: Notice, attempt: Attempt, part: str, text: str, body: list[dict[str, Any]]
    ) -> str:
        """Post a thread reply unless an earlier attempt of this notification did; its ts."""
        name = f"{attempt.key}.{part}"
        ts = self.sent.get(notice.request_id, name)
        if ts is None and attempt.number > 1:
            ts = await self._find(notice, lambda p, m: p.get("key") == name)
        if ts is None:
            response = await self.client.chat_postMessage(
                channel=_channel(notice),
                thread_ts=notice.origin.thread_ts,
                text=text[:3000],
                blocks=body,
                metadata=blocks.metadata(notice, part, name),
                unfurl_links=False,
                unfurl_media=False,
            )
            ts = response["ts"]
        self.sent.put(notice.request_id, name, ts)
        return ts

    async def _upload_once(self, notice: Notice, attempt: Attempt, part: str, data: bytes, *, title: str) -> None:
        """Upload a file into the thread (files upload v2) unless an earlier attempt did. Files
        carry no metadata, so the file name is derived from the notification instead."""
        name = f"{attempt.key}.{part}"
        if self.sent.get(notice.request_id, name):
            return
        filename = f"honk-install-{hashlib.sha256(name.encode()).hexdigest()[:12]}.png"
        if attempt.number > 1 and await self._find(
            notice,
            lambda p, m: any(f.get("name") == filename for f in m.get("files") or []),
            any_message=True,
        ):
            self.sent.put(notice.request_id, name, filename)
            return
        response = await self.client.files_upload_v2(
            channel=_channel(notice),
            thread_ts=notice.origin.thread_ts,
            content=data,
            filename=filename,
            title=title,
        )
        file_id = (response.get("file") or {}).get("id") or filename
        self.sent.put(notice.request_id, name, file_id)

    async def _find(self, notice: Notice, match: Match, *, any_message: bool = False) -> str | None:
        """The ts of the newest Honk message of this request in the thread that `match`es
        (its metadata payload, the message); None when there is none."""
        cursor, found = None, None
        for _ in range(10):  # 2,000 messages: far more than one request's thread holds
            try:
                page = await self.client.conversations_replies(
                    channel=_channel(notice), ts=_thread(notice), include_all_metadata=True, limit=200, cursor=cursor
                )
            except SlackApiError as exc:
                if slack_error(exc) == "thread_not_found":
                    return None
                raise
            for message in page.get("messages") or []:
                meta = message.get("metadata") or {}
                payload = meta.get("event_payload") or {}
                ours = meta.get("event_type") == METADATA_EVENT and payload.get("request_id") == notice.request_id
                if (ours or any_message) and match(payload, message):
                    found = message.get("ts")
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        return found

    async def _close_approval(self, notice: Notice, outcome: str, ts: str | None = None) -> None:
        """Take the buttons off the needs-approval message: the decision is made."""
        ts = ts or self.sent.get(notice.request_id, "approval")
        if ts is None:
            ts = await self._find(
                notice,
                lambda p, m: (
                    p.get("kind") == "approval" and any(b.get("type") == "actions" for b in m.get("blocks") or [])
                ),
            )
        if ts is None:
            return
        text, body = blocks.approval_closed(outcome)
        try:
            await self.client.chat_update(channel=_channel(notice), ts=ts, text=text, blocks=body)
        except SlackApiError as exc:
            if slack_error(exc) not in GONE:
                raise

    def _commit_url(self, repo: str, sha: str) -> str | None:
        """A web link to the commit for GitHub/GitLab-style https remotes; None otherwise."""
        if self._remotes is None:
            try:
                registry = load_registry(self.settings.registry, self.settings.data_dir)
                self._remotes = {name: entry.remote for name, entry in registry.repos.items()}
            except RegistryError:
                self._remotes = {}
        remote = self._remotes.get(repo, "")
        match = re.match(r"^https://(?:[^@/]*@)?([^/]+)/(.+?)(?:\.git)?/?$", remote)
        if not match:
            return None
        host, path = match.groups()
        return f"https://{host}/{path}/{'-/' if 'gitlab' in host else ''}commit/{sha}"


def install_qr_png(links: Links) -> bytes | None:
    """The install page's QR code: the publish step's PNG when this host can read it,
    otherwise drawn here from the link by the same renderer."""
    published = getattr(links, "install_qr", None)
    if published:
        path = Path(unquote(urlparse(published).path)) if published.startswith("file://") else Path(published)
        try:
            if path.is_absolute() and path.suffix == ".png" and path.stat().st_size < 1_000_000:
                return path.read_bytes()
        except OSError:
            pass
    if not links.install_page:
        return None
    return qr_code(links.install_page).png


def _channel(notice: Notice) -> str:
    return notice.origin.channel or ""  # `send` sends nothing without a channel and thread


def _thread(notice: Notice) -> str:
    return notice.origin.thread_ts or ""


def slack_error(exc: SlackApiError) -> str | None:
    response = exc.response
    try:
        return response.get("error") if response is not None else None
    except AttributeError:
        return None


def failure(exc: SlackApiError, notice: Notice) -> HonkError:
    """A Slack error as the notification's failure: when to retry, if ever."""
    fields = {"request_id": notice.request_id, "event": notice.event}
    wait = retry_after(exc)
    if wait is not None:
        log.warning("slack rate limit; retrying later", extra={**fields, "retry_after_s": wait})
        return HonkError(
            f"Slack rate limit; retrying after {wait:.0f}s",
            kind="SlackRateLimited",
            retry_after=timedelta(seconds=max(wait, 1)),
        )
    error = slack_error(exc) or f"HTTP {getattr(exc.response, 'status_code', '?')}"
    if error in PERMANENT_ERRORS:
        log.error("slack refused the notice", extra={**fields, "error": error})
        return HonkError(f"Slack refused: {error}", kind="SlackRefused", retryable=False)
    log.warning("slack call failed; will retry", extra={**fields, "error": error})
    return HonkError(f"Slack call failed: {error}", kind="SlackError")
