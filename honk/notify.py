"""Tell the requester what happened: status changes, build ready, approval needed, merged.

Delivery sits behind `Notifier`. `LogNotifier` writes each notice as a structured log line
and appends it to a per-request JSON-lines file (always, as the record of what was said).
`SlackNotifier` talks to the Slack Web API for requests that came from Slack: one status
message per request, updated in place as the stage changes, plus thread replies for build
ready (install link + QR image), needs approval (buttons), merged, failed, cancelled,
expired, reminders and refusals.

Idempotent on activity retry. Temporal retries a notify activity whose first attempt may
have posted before failing (a lost response, a worker crash), so:

- every message carries Slack message metadata naming the request and the activity
  (`run id`/`activity id`, the same for every attempt of one notification);
- what was posted is remembered in a small state file under
  `<data_dir>/slack/<request>/` (one file per message, written atomically, so concurrent
  notifications of one request never race);
- a *retry* (attempt > 1) that does not find its message in the state file — it ran on
  another host, or crashed before writing it — looks it up in the thread with
  `conversations.replies` (metadata included) before posting. First attempts never pay for
  that lookup. The status message is found the same way by a worker that never saw it.

Rate limits: a 429 with a short Retry-After is waited out inside the call (slack_sdk's retry
handler); a longer one fails the attempt with `next_retry_delay` = Retry-After, so Temporal
retries exactly when Slack allows it. Permanent refusals (channel gone, bot removed, bad
token) fail without retrying; the workflow records "could not notify" and carries on.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import os
import re
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

import segno
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from temporalio import activity
from temporalio.exceptions import ApplicationError

from honk.config.registry import RegistryError, load_registry
from honk.config.settings import Settings
from honk.redact import redact
from honk.slack.client import (
    ACTION_APPROVE,
    ACTION_CANCEL,
    ACTION_REQUEST_CHANGES,
    DECISION_BLOCK,
    METADATA_EVENT,
    button_value,
    escape,
    retry_after,
    web_client,
)
from honk.workflows.contract import ACTIVITY_NOTIFY, Notice, Stage
from honk.workspace.paths import safe_name

log = logging.getLogger("honk.notify")
slack_log = logging.getLogger("honk.notify.slack")


class Notifier(Protocol):
    async def send(self, notice: Notice) -> None: ...


class LogNotifier:
    """Notices as log lines plus `<dir>/<request_id>.jsonl`, one JSON object a line."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, notice: Notice) -> None:
        fields = {
            "request_id": notice.request_id,
            "event": notice.event,
            "stage": notice.stage.value,
            "text": notice.text,
            "links": notice.links.model_dump(mode="json", exclude_none=True),
        }
        log.info(f"{notice.event}: {notice.text}", extra=fields)
        record = {"at": datetime.now(UTC).isoformat(), **notice.model_dump(mode="json")}
        await asyncio.to_thread(self._append, notice.request_id, record)

    def thread_path(self, request_id: str) -> Path:
        # Request ids are workflow ids; `safe_name` keeps those as they are, others one file.
        return self.directory / f"{safe_name(request_id)}.jsonl"

    def _append(self, request_id: str, record: dict[str, Any]) -> None:
        path = self.thread_path(request_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        # One write(2) of the whole line with O_APPEND: concurrent notices never interleave.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------- Slack


@dataclass(frozen=True)
class Attempt:
    """Which notification this is: `key` is the same for every attempt of one notify
    activity, `number` counts the attempts (1 = first)."""

    key: str
    number: int

    @classmethod
    def current(cls) -> Attempt:
        if activity.in_activity():
            info = activity.info()
            return cls(f"{info.workflow_run_id}-{info.activity_id}", info.attempt)
        return cls(uuid.uuid4().hex, 1)  # called directly (tests, scripts): no retries to detect


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

STAGE_EMOJI = {
    Stage.RECEIVED: ":inbox_tray:",
    Stage.PREPARING: ":file_folder:",
    Stage.EDITING: ":pencil2:",
    Stage.CHECKING: ":mag:",
    Stage.BUILDING: ":hammer_and_wrench:",
    Stage.PUBLISHING: ":outbox_tray:",
    Stage.AWAITING_APPROVAL: ":eyes:",
    Stage.MERGING: ":twisted_rightwards_arrows:",
    Stage.MERGED: ":white_check_mark:",
    Stage.FAILED: ":x:",
    Stage.CANCELLED: ":no_entry_sign:",
    Stage.EXPIRED: ":hourglass:",
}
HAPPY_PATH = [
    Stage.RECEIVED,
    Stage.PREPARING,
    Stage.EDITING,
    Stage.CHECKING,
    Stage.BUILDING,
    Stage.PUBLISHING,
    Stage.AWAITING_APPROVAL,
    Stage.MERGING,
    Stage.MERGED,
]
SHORT_NAMES = {Stage.AWAITING_APPROVAL: "Review", Stage.MERGING: "Merge"}
CLOSING = {"merged": "merged", "failed": "failed", "cancelled": "cancelled", "expired": "expired"}


class SlackNotifier:
    def __init__(self, settings: Settings, client: AsyncWebClient | None = None) -> None:
        self.settings = settings
        self.client = client or web_client(settings)
        self.sent = SentMessages(settings.data_dir / "slack")
        self._remotes: dict[str, str] | None = None

    async def send(self, notice: Notice) -> None:
        origin = notice.origin
        if not (origin.channel and origin.thread_ts):
            slack_log.warning("slack notice without a thread; not sent", extra={"request_id": notice.request_id})
            return
        attempt = Attempt.current()
        try:
            if notice.event not in ("refused", "reminder", "feedback_queued"):
                await self._show_status(notice, attempt)
            deliver = getattr(self, f"_on_{notice.event}", None)
            if deliver is not None:
                await deliver(notice, attempt)
        except SlackApiError as exc:
            raise _failure(exc, notice) from None
        slack_log.info(
            "slack notified", extra={"request_id": notice.request_id, "event": notice.event, "attempt": attempt.number}
        )

    # ------------------------------------------------------------------ per event

    async def _on_build_ready(self, notice: Notice, attempt: Attempt) -> None:
        page, build = notice.links.install_page, notice.links.build
        lines = [f":package: {escape(notice.text)}"]
        if build and build != page:
            lines.append(f"Direct download: {_link(build, 'the build')}")
        body = [_section("\n".join(lines))]
        if page and _is_web(page):
            body.append(
                {
                    "type": "actions",
                    "elements": [
                        {
                            "type": "button",
                            "text": {"type": "plain_text", "text": "Open the install page"},
                            "url": page,
                            "action_id": "honk_open_install",
                        }
                    ],
                }
            )
        await self._post_once(notice, attempt, "build", f"Build ready: {page or notice.text}", body)
        qr = self._qr_png(notice)
        if qr is not None:
            await self._upload_once(notice, attempt, "qr", qr, title="Scan to install on your phone")

    async def _on_needs_approval(self, notice: Notice, attempt: Attempt) -> None:
        previous = self.sent.get(notice.request_id, "approval")
        if previous:  # an earlier round's buttons must not approve this round's build unseen
            await self._close_approval(notice, "superseded by a newer build", previous)
        who = _mention(notice.origin.user)
        value = button_value(request_id=notice.request_id, install_page=notice.links.install_page)
        body = [
            _section(f":eyes: {who}{escape(notice.text)}"),
            {
                "type": "actions",
                "block_id": DECISION_BLOCK,
                "elements": [
                    {
                        "type": "button",
                        "action_id": ACTION_APPROVE,
                        "style": "primary",
                        "value": value,
                        "text": {"type": "plain_text", "text": "Approve & merge"},
                    },
                    {
                        "type": "button",
                        "action_id": ACTION_REQUEST_CHANGES,
                        "value": value,
                        "text": {"type": "plain_text", "text": "Request changes"},
                    },
                    {
                        "type": "button",
                        "action_id": ACTION_CANCEL,
                        "style": "danger",
                        "value": value,
                        "text": {"type": "plain_text", "text": "Cancel"},
                        "confirm": {
                            "title": {"type": "plain_text", "text": "Cancel this request?"},
                            "text": {"type": "mrkdwn", "text": "The work branch is deleted and nothing is merged."},
                            "confirm": {"type": "plain_text", "text": "Cancel request"},
                            "deny": {"type": "plain_text", "text": "Keep it"},
                            "style": "danger",
                        },
                    },
                ],
            },
        ]
        ts = await self._post_once(notice, attempt, "approval", f"Ready for review: {notice.text}", body)
        self.sent.put(notice.request_id, "approval", ts)

    async def _on_reminder(self, notice: Notice, attempt: Attempt) -> None:
        await self._post_once(
            notice,
            attempt,
            "reminder",
            notice.text,
            [_section(f":alarm_clock: {_mention(notice.origin.user)}{escape(notice.text)}")],
        )

    async def _on_merged(self, notice: Notice, attempt: Attempt) -> None:
        sha = notice.links.merged_commit
        text = f":white_check_mark: {_mention(notice.origin.user)}{escape(notice.text)}"
        url = self._commit_url(notice.repo, sha) if sha else None
        if url:
            text += f"\n<{url}|View commit {sha[:12]}>"  # type: ignore[index]
        await self._post_once(notice, attempt, "merged", notice.text, [_section(text)])
        await self._close_approval(notice, "merged")

    async def _on_failed(self, notice: Notice, attempt: Attempt) -> None:
        reason = notice.text.removeprefix("Failed: ")
        text = (
            f":x: {_mention(notice.origin.user)}*This request failed.*\n```{escape(reason[:2500])}```\n"
            f"*What to do:* start a new request with a new message — more detail about what should change "
            f"usually helps. Details: `honk status {escape(notice.request_id)}` or the Temporal UI."
        )
        await self._post_once(notice, attempt, "failed", f"Failed: {reason[:300]}", [_section(text)])
        await self._close_approval(notice, "failed")

    async def _on_cancelled(self, notice: Notice, attempt: Attempt) -> None:
        await self._post_once(
            notice,
            attempt,
            "cancelled",
            notice.text,
            [_section(f":no_entry_sign: {escape(notice.text)}. The work branch was removed.")],
        )
        await self._close_approval(notice, "cancelled")

    async def _on_expired(self, notice: Notice, attempt: Attempt) -> None:
        text = (
            f":hourglass: {_mention(notice.origin.user)}{escape(notice.text)}\n"
            "To try again, start a new request with a new message."
        )
        await self._post_once(notice, attempt, "expired", notice.text, [_section(text)])
        await self._close_approval(notice, "expired")

    async def _on_feedback_queued(self, notice: Notice, attempt: Attempt) -> None:
        await self._post_once(notice, attempt, "feedback", notice.text, [_section(f":memo: {escape(notice.text)}")])

    async def _on_refused(self, notice: Notice, attempt: Attempt) -> None:
        """Privately to the requester when we know who that is; the thread otherwise."""
        origin, name = notice.origin, f"{attempt.key}.refused"
        if self.sent.get(notice.request_id, name):
            return
        text = f":no_entry: {escape(notice.text)}"
        if origin.user:
            try:
                response = await self.client.chat_postEphemeral(
                    channel=origin.channel, user=origin.user, thread_ts=origin.thread_ts, text=text
                )
                self.sent.put(notice.request_id, name, response.get("message_ts") or "sent")
                return
            except SlackApiError as exc:
                if _error(exc) not in ("user_not_in_channel", "channel_not_found", "not_in_channel"):
                    raise
        await self._post_once(notice, attempt, "refused", notice.text, [_section(text)])

    # ------------------------------------------------------------------ the status message

    async def _show_status(self, notice: Notice, attempt: Attempt) -> None:
        request_id, origin = notice.request_id, notice.origin
        ts = self.sent.get(request_id, "status")
        if ts is None and not (notice.event == "received" and attempt.number == 1):
            ts = await self._find(notice, lambda p, m: p.get("kind") == "status")
            if ts:
                self.sent.put(request_id, "status", ts)
        text, body = _status_message(notice)
        if ts:
            try:
                await self.client.chat_update(channel=origin.channel, ts=ts, text=text, blocks=body)
                return
            except SlackApiError as exc:
                if _error(exc) not in ("message_not_found", "cant_update_message"):
                    raise
                slack_log.warning("status message gone; posting a new one", extra={"request_id": request_id})
        response = await self.client.chat_postMessage(
            channel=origin.channel,
            thread_ts=origin.thread_ts,
            text=text,
            blocks=body,
            metadata=_metadata(notice, "status", "status"),
            unfurl_links=False,
            unfurl_media=False,
        )
        self.sent.put(request_id, "status", response["ts"])

    # ------------------------------------------------------------------ exactly once

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
                channel=notice.origin.channel,
                thread_ts=notice.origin.thread_ts,
                text=text[:3000],
                blocks=body,
                metadata=_metadata(notice, part, name),
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
            channel=notice.origin.channel,
            thread_ts=notice.origin.thread_ts,
            content=data,
            filename=filename,
            title=title,
        )
        file_id = (response.get("file") or {}).get("id") or filename
        self.sent.put(notice.request_id, name, file_id)

    async def _find(self, notice: Notice, match: Any, *, any_message: bool = False) -> str | None:
        """The ts of the newest Honk message of this request in the thread that `match`es
        (its metadata payload, the message); None when there is none."""
        origin, cursor, found = notice.origin, None, None
        for _ in range(10):  # 2,000 messages: far more than one request's thread holds
            try:
                page = await self.client.conversations_replies(
                    channel=origin.channel, ts=origin.thread_ts, include_all_metadata=True, limit=200, cursor=cursor
                )
            except SlackApiError as exc:
                if _error(exc) == "thread_not_found":
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
        try:
            await self.client.chat_update(
                channel=notice.origin.channel,
                ts=ts,
                text=f"Review closed: {outcome}",
                blocks=[_section(f"~Ready for review~ — closed: *{escape(outcome)}*.")],
            )
        except SlackApiError as exc:
            if _error(exc) not in ("message_not_found", "cant_update_message"):
                raise

    # ------------------------------------------------------------------ helpers

    def _qr_png(self, notice: Notice) -> bytes | None:
        """The install page's QR code: the publish step's PNG when this host can read it,
        otherwise drawn here from the link (the same picture)."""
        published = getattr(notice.links, "install_qr", None)
        if published:
            path = Path(unquote(urlparse(published).path)) if published.startswith("file://") else Path(published)
            try:
                if path.is_absolute() and path.suffix == ".png" and path.stat().st_size < 1_000_000:
                    return path.read_bytes()
            except OSError:
                pass
        link = notice.links.install_page
        if not link:
            return None
        buffer = io.BytesIO()
        segno.make(link, error="m").save(buffer, kind="png", scale=8, border=2)
        return buffer.getvalue()

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


class ChatNotifier:
    """Slack for requests that came from Slack; the log (and its JSON-lines record) for all."""

    def __init__(self, log_notifier: LogNotifier, slack: Notifier | None = None) -> None:
        self.log = log_notifier
        self.slack = slack
        self._warned = False

    async def send(self, notice: Notice) -> None:
        if notice.origin.kind == "slack":
            if self.slack is not None:
                await self.slack.send(notice)  # first: a failure here retries before the log line
            elif not self._warned:
                self._warned = True
                slack_log.warning(
                    "a request came from Slack but HONK_SLACK_BOT_TOKEN is not set; notices go to the log only",
                    extra={"request_id": notice.request_id},
                )
        await self.log.send(notice)


def make_notifier(settings: Settings) -> Notifier:
    token = settings.slack_bot_token
    slack = SlackNotifier(settings) if token is not None and token.get_secret_value() else None
    return ChatNotifier(LogNotifier(settings.data_dir / "notifications"), slack)


class NotifyActivities:
    def __init__(self, settings: Settings, notifier: Notifier | None = None) -> None:
        self.settings = settings
        self.notifier = notifier or make_notifier(settings)

    @activity.defn(name=ACTIVITY_NOTIFY)
    async def notify(self, notice: Notice) -> None:
        # Failure texts can quote check output or remote errors: mask secrets before anyone sees them.
        await self.notifier.send(notice.model_copy(update={"text": redact(notice.text)}))


# --------------------------------------------------------------------------- Block Kit


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}


def _mention(user: str | None) -> str:
    return f"<@{user}> " if user and re.match(r"^[UW][A-Z0-9]+$", user) else ""


def _is_web(url: str) -> bool:
    return url.startswith(("https://", "http://"))


def _link(url: str, label: str) -> str:
    # Slack links only web URLs; anything else (file:// in a local setup) is shown as text.
    return f"<{url}|{escape(label)}>" if _is_web(url) else f"`{escape(url)}`"


def _metadata(notice: Notice, kind: str, key: str) -> dict[str, Any]:
    return {"event_type": METADATA_EVENT, "event_payload": {"request_id": notice.request_id, "kind": kind, "key": key}}


def _progress(stage: Stage) -> str:
    if stage not in HAPPY_PATH:
        return f"{STAGE_EMOJI[stage]} *{stage.value.title()}*"
    here = HAPPY_PATH.index(stage)
    steps = []
    for i, step in enumerate(HAPPY_PATH[:-1]):
        name = SHORT_NAMES.get(step, step.value.title())
        steps.append(f"~{name}~" if i < here else f"*{name}*" if i == here else name)
    return " → ".join(steps) + (" → *Merged* :white_check_mark:" if stage == Stage.MERGED else "")


def _status_message(notice: Notice) -> tuple[str, list[dict[str, Any]]]:
    stage, links = notice.stage, notice.links
    title = f"{STAGE_EMOJI.get(stage, '')} *{stage.value.replace('_', ' ').title()}* · {escape(notice.repo)}"
    facts = []
    if links.install_page:
        facts.append(f"Install: {_link(links.install_page, 'install page')}")
    if links.work_branch and not links.merged_commit:
        facts.append(f"Branch: `{escape(links.work_branch)}`")
    if links.merged_commit:
        facts.append(f"Commit: `{escape(links.merged_commit[:12])}`")
    facts.append(f"Request: `{escape(notice.request_id)}`")
    body = [
        _section(f"{title}\n{escape(notice.text[:1500])}"),
        {"type": "context", "elements": [{"type": "mrkdwn", "text": _progress(stage)}]},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(facts)}]},
    ]
    return f"Honk · {stage.value}: {notice.text[:200]}", body


def _error(exc: SlackApiError) -> str | None:
    response = exc.response
    try:
        return response.get("error") if response is not None else None
    except AttributeError:
        return None


def _failure(exc: SlackApiError, notice: Notice) -> ApplicationError:
    """A Slack error as the activity's failure: when to retry, if ever."""
    fields = {"request_id": notice.request_id, "event": notice.event}
    wait = retry_after(exc)
    if wait is not None:
        slack_log.warning("slack rate limit; retrying later", extra={**fields, "retry_after_s": wait})
        return ApplicationError(
            f"Slack rate limit; retrying after {wait:.0f}s",
            type="SlackRateLimited",
            next_retry_delay=timedelta(seconds=max(wait, 1)),
        )
    error = _error(exc) or f"HTTP {getattr(exc.response, 'status_code', '?')}"
    if error in PERMANENT_ERRORS:
        slack_log.error("slack refused the notice", extra={**fields, "error": error})
        return ApplicationError(f"Slack refused: {error}", type="SlackRefused", non_retryable=True)
    slack_log.warning("slack call failed; will retry", extra={**fields, "error": error})
    return ApplicationError(f"Slack call failed: {error}", type="SlackError")
