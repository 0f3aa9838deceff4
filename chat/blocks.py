"""Block Kit the chat service sends: the "Request changes" modal, what a pressed decision
button leaves behind, the root message of a slash-command request, and the answers to
`/honk status` and `/honk list`. (The notifications themselves are built by the notify
activity, activities/notify.py.) Everything a person typed goes through `escape`."""

from __future__ import annotations

import json
import re
from typing import Any

from honk.changes import Listed
from honk.slack.client import (
    CHANGES_BLOCK,
    CHANGES_INPUT,
    DECISION_BLOCK,
    VIEW_CHANGES,
    escape,
)
from honk.workflows.contract import RequestStatus

_SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")

DONE_WORDS = {"approve": "Approved", "request_changes": "Changes requested", "cancel": "Cancel requested"}


def person(who: str) -> str:
    """A Slack user id as a mention; anyone else (a CLI user) as plain text."""
    return f"<@{who}>" if _SLACK_USER.match(who or "") else escape(who or "someone")


def changes_modal(request_id: str, channel: str, thread_ts: str) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": VIEW_CHANGES,
        "private_metadata": json.dumps({"request_id": request_id, "channel": channel, "thread_ts": thread_ts}),
        "title": {"type": "plain_text", "text": "Request changes"},
        "submit": {"type": "plain_text", "text": "Send to Honk"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "input",
                "block_id": CHANGES_BLOCK,
                "label": {"type": "plain_text", "text": "What should change?"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": CHANGES_INPUT,
                    "multiline": True,
                    "max_length": 3000,
                    "placeholder": {"type": "plain_text", "text": "e.g. make the button blue"},
                },
            }
        ],
    }


def decided(message: dict[str, Any], action: str, user: str) -> list[dict[str, Any]]:
    """The needs-approval message after a button did its work: the buttons give way to a
    line saying who did what, so nobody presses them again."""
    kept = [
        b for b in message.get("blocks") or [] if b.get("block_id") != DECISION_BLOCK and b.get("type") != "actions"
    ]
    note = {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": f"{DONE_WORDS.get(action, action)} by <@{user}>"}],
    }
    return [*kept, note]


def request_root(user: str, repo: str, instruction: str) -> tuple[str, list[dict[str, Any]]]:
    """The channel message a `/honk <repo> ...` request hangs its thread on."""
    text = f"<@{user}> asked Honk to change {repo}: {escape(instruction)}"
    quoted = "\n".join("> " + line for line in escape(instruction).splitlines()) or "> (empty)"
    return text, [
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": f"<@{user}> asked Honk to change *{escape(repo)}*:\n{quoted}"},
        }
    ]


def status_text(status: RequestStatus) -> str:
    links = status.links
    lines = [
        f"*{escape(status.request_id)}* · {escape(status.repo)} · *{status.stage.value}* "
        f"(round {status.round}, attempt {status.attempt})",
        f"> {escape(status.instruction[:300])}",
    ]
    for label, value in (
        ("Install page", links.install_page),
        ("Work branch", links.work_branch),
        ("Merged commit", links.merged_commit),
    ):
        if value:
            lines.append(f"• {label}: {escape(value)}")
    if status.pending_feedback:
        lines.append(f"• Queued feedback: {len(status.pending_feedback)}")
    if status.last_error and status.stage.terminal:
        lines.append(f"• Error: {escape(status.last_error[:500])}")
    for entry in status.timeline[-5:]:
        lines.append(f"  `{entry.at:%H:%M:%S}` {escape(entry.message[:200])}")
    return "\n".join(lines)


def list_text(rows: list[Listed], scope: str) -> str:
    if not rows:
        return f"No requests {scope}."
    lines = [f"Requests {scope}:"]
    for row in rows:
        started = f"{row.started:%Y-%m-%d %H:%M}" if row.started else ""
        lines.append(
            f"• `{escape(row.request_id)}` · {escape(row.repo)} · *{escape(row.stage or row.status)}* · "
            f"{person(row.requester)} · {started}"
        )
    return "\n".join(lines)
