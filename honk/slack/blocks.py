"""All the Block Kit Honk sends to Slack, in one place.

- Notifications (posted by honk/slack/delivery.py): the request's status message with its
  progress line, and the thread replies per event (build ready, needs approval with the
  decision buttons, merged, failed, cancelled, expired, reminders, refusals).
- Chat replies (sent by the chat service): the "Request changes" modal, what a pressed
  decision button leaves behind, the root message of a slash-command request, and the
  answers to `/honk status` and `/honk list`.

Renderers are pure: a view in (`Notice`, `RequestStatus`, rows), `(text, blocks)` or mrkdwn
out. Everything a person or a tool typed goes through `escape`.
"""

from __future__ import annotations

import json
from typing import Any

from honk.changes import Listed
from honk.slack.client import (
    ACTION_APPROVE,
    ACTION_CANCEL,
    ACTION_REQUEST_CHANGES,
    CHANGES_BLOCK,
    CHANGES_INPUT,
    DECISION_BLOCK,
    METADATA_EVENT,
    VIEW_CHANGES,
    button_value,
    escape,
    is_user_id,
)
from honk.workflows.contract import Links, Notice, RequestStatus, Stage, protected_changes_text
from honk.workflows.contract_review import Review, first_files, short_stat, stat_summary

Blocks = list[dict[str, Any]]

DONE_WORDS = {"approve": "Approved", "request_changes": "Changes requested", "cancel": "Cancel requested"}

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


# --------------------------------------------------------------------------- pieces


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}


def mention(user: str | None) -> str:
    """`<@U123> ` to address a Slack user at the start of a message; nothing for anyone else."""
    return f"<@{user}> " if is_user_id(user) else ""


def person(who: str) -> str:
    """A Slack user id as a mention; anyone else (a CLI user) as plain text."""
    return f"<@{who}>" if is_user_id(who) else escape(who or "someone")


def is_web(url: str) -> bool:
    return url.startswith(("https://", "http://"))


def link(url: str, label: str) -> str:
    # Slack links only web URLs; anything else (file:// in a local setup) is shown as text.
    return f"<{url}|{escape(label)}>" if is_web(url) else f"`{escape(url)}`"


def metadata(notice: Notice, kind: str, key: str) -> dict[str, Any]:
    """What lets a retried notification find its own message in the thread."""
    return {"event_type": METADATA_EVENT, "event_payload": {"request_id": notice.request_id, "kind": kind, "key": key}}


# --------------------------------------------------------------------------- status


def link_facts(links: Links, *, commit_chars: int | None = None) -> list[str]:
    """Where the request's work can be seen: install page (or the summary page when nothing is
    built), work branch or its compare view (until merged), merged commit. The status message,
    the approval request and the `/honk status` reply show them alike."""
    facts = []
    if links.install_page:
        facts.append(f"Install: {link(links.install_page, 'install page')}")
    elif links.summary_page:
        facts.append(f"Summary: {link(links.summary_page, 'summary page')}")
    if links.work_branch and not links.merged_commit:
        if links.compare and is_web(links.compare):
            facts.append(f"Compare: {link(links.compare, links.work_branch)}")
        else:
            facts.append(f"Branch: `{escape(links.work_branch)}`")
    if links.merged_commit:
        facts.append(f"Commit: `{escape(links.merged_commit[:commit_chars])}`")
    return facts


def progress(stage: Stage) -> str:
    if stage not in HAPPY_PATH:
        return f"{STAGE_EMOJI[stage]} *{stage.value.title()}*"
    here = HAPPY_PATH.index(stage)
    steps = []
    for i, step in enumerate(HAPPY_PATH[:-1]):
        name = SHORT_NAMES.get(step, step.value.title())
        steps.append(f"~{name}~" if i < here else f"*{name}*" if i == here else name)
    return " → ".join(steps) + (" → *Merged* :white_check_mark:" if stage == Stage.MERGED else "")


def status_message(notice: Notice) -> tuple[str, Blocks]:
    """The one message per request that is updated in place as the stage changes."""
    stage = notice.stage
    title = f"{STAGE_EMOJI.get(stage, '')} *{stage.value.replace('_', ' ').title()}* · {escape(notice.repo)}"
    facts = [*link_facts(notice.links, commit_chars=12), f"Request: `{escape(notice.request_id)}`"]
    body = [
        section(f"{title}\n{escape(notice.text[:1500])}"),
        {"type": "context", "elements": [{"type": "mrkdwn", "text": progress(stage)}]},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(facts)}]},
    ]
    return f"Honk · {stage.value}: {notice.text[:200]}", body


def status_text(status: RequestStatus) -> str:
    """The answer to `/honk status`: the status message's facts plus round, queue, timeline."""
    lines = [
        f"*{escape(status.request_id)}* · {escape(status.repo)} · *{status.stage.value}* "
        f"(round {status.round}, attempt {status.attempt})",
        f"> {escape(status.instruction[:300])}",
    ]
    lines += [f"• {fact}" for fact in link_facts(status.links)]
    if status.changed_files:
        shown, more = first_files(status.changed_files, limit=5)
        size = stat_summary(status.diff_stat)
        names = ", ".join(f"`{escape(name.replace('`', ''))}`" for name in shown) + (
            f" and {more} more" if more else ""
        )
        lines.append(f"• Changed: {names}" + (f" ({escape(size)})" if size else ""))
    if status.pending_feedback:
        lines.append(f"• Queued feedback: {len(status.pending_feedback)}")
    if status.protected_changes:
        lines.append(f"• :warning: {escape(protected_changes_text(status.protected_changes))}")
    if status.last_error and status.stage.terminal:
        lines.append(f"• Error: {escape(status.last_error[:500])}")
    for entry in status.timeline[-5:]:
        lines.append(f"  `{entry.at:%H:%M:%S}` {escape(entry.message[:200])}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- notifications


def changes(review: Review | None) -> Blocks:
    """The approval request's "Changes": the first files and the diff stat in a code block."""
    if review is None or not (review.changed_files or review.diff_stat):
        return []
    lines = ["*Changes*"]
    if review.changed_files:
        shown, more = first_files(review.changed_files, review.changed_count)
        names = ", ".join(f"`{escape(name.replace('`', ''))}`" for name in shown)
        lines.append(names + (f" and {more} more" if more else ""))
    if review.diff_stat:  # no backtick may close the block early
        lines.append("```" + escape(short_stat(review.diff_stat, 2000).replace("`", "'")) + "```")
    return [section("\n".join(lines))]


def build_ready(notice: Notice) -> tuple[str, Blocks]:
    page, build = notice.links.install_page, notice.links.build
    lines = [f":package: {escape(notice.text)}"]
    if build and build != page:
        lines.append(f"Direct download: {link(build, 'the build')}")
    body: Blocks = [section("\n".join(lines))]
    if page and is_web(page):
        button = {
            "type": "button",
            "text": {"type": "plain_text", "text": "Open the install page"},
            "url": page,
            "action_id": "honk_open_install",
        }
        body.append({"type": "actions", "elements": [button]})
    return f"Build ready: {page or notice.text}", body


def needs_approval(notice: Notice) -> tuple[str, Blocks]:
    value = button_value(request_id=notice.request_id, install_page=notice.links.install_page)
    confirm_cancel = {
        "title": {"type": "plain_text", "text": "Cancel this request?"},
        "text": {"type": "mrkdwn", "text": "The work branch is deleted and nothing is merged."},
        "confirm": {"type": "plain_text", "text": "Cancel request"},
        "deny": {"type": "plain_text", "text": "Keep it"},
        "style": "danger",
    }
    buttons = [
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
            "confirm": confirm_cancel,
        },
    ]
    body = [section(f":eyes: {mention(notice.origin.user)}{escape(notice.text)}"), *changes(notice.review)]
    facts = link_facts(notice.links)
    if facts:
        body.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(facts)}]})
    warning = protected_changes_text(notice.protected_changes)
    if warning:  # the approver must know the verifier itself changed
        body.append(section(f":warning: *{escape(warning)}*"))
    body.append({"type": "actions", "block_id": DECISION_BLOCK, "elements": buttons})
    size = stat_summary(notice.review.diff_stat if notice.review else None)
    text = f"Ready for review: {notice.text}" + (f" ({size})" if size else "")
    return text + (f" {warning}" if warning else ""), body


def approval_closed(outcome: str) -> tuple[str, Blocks]:
    """The needs-approval message once decided: the buttons are gone."""
    return f"Review closed: {outcome}", [section(f"~Ready for review~ — closed: *{escape(outcome)}*.")]


def reminder(notice: Notice) -> tuple[str, Blocks]:
    return notice.text, [section(f":alarm_clock: {mention(notice.origin.user)}{escape(notice.text)}")]


def merged(notice: Notice, commit_url: str | None) -> tuple[str, Blocks]:
    text = f":white_check_mark: {mention(notice.origin.user)}{escape(notice.text)}"
    sha = notice.links.merged_commit
    if commit_url and sha:
        text += f"\n<{commit_url}|View commit {sha[:12]}>"
    return notice.text, [section(text)]


def failed(notice: Notice) -> tuple[str, Blocks]:
    reason = notice.text.removeprefix("Failed: ")
    text = (
        f":x: {mention(notice.origin.user)}*This request failed.*\n```{escape(reason[:2500])}```\n"
        f"*What to do:* start a new request with a new message — more detail about what should change "
        f"usually helps. Details: `honk status {escape(notice.request_id)}` or the Temporal UI."
    )
    return f"Failed: {reason[:300]}", [section(text)]


def cancelled(notice: Notice) -> tuple[str, Blocks]:
    return notice.text, [section(f":no_entry_sign: {escape(notice.text)}. The work branch was removed.")]


def expired(notice: Notice) -> tuple[str, Blocks]:
    text = (
        f":hourglass: {mention(notice.origin.user)}{escape(notice.text)}\n"
        "To try again, start a new request with a new message."
    )
    return notice.text, [section(text)]


def feedback_queued(notice: Notice) -> tuple[str, Blocks]:
    return notice.text, [section(f":memo: {escape(notice.text)}")]


def refused(notice: Notice) -> str:
    return f":no_entry: {escape(notice.text)}"


# --------------------------------------------------------------------------- chat replies


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


def decided(message: dict[str, Any], action: str, user: str) -> Blocks:
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


def request_root(user: str, repo: str, instruction: str) -> tuple[str, Blocks]:
    """The channel message a `/honk <repo> ...` request hangs its thread on."""
    text = f"<@{user}> asked Honk to change {repo}: {escape(instruction)}"
    quoted = "\n".join("> " + line for line in escape(instruction).splitlines()) or "> (empty)"
    # Not `section()`: the root quotes the whole instruction, untruncated, as it always has.
    root = {"type": "mrkdwn", "text": f"<@{user}> asked Honk to change *{escape(repo)}*:\n{quoted}"}
    return text, [{"type": "section", "text": root}]


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
