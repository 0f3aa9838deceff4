"""Reading what people write to Honk in Slack: mentions, direct messages, thread replies and
the slash command. Pure functions, no I/O; `ParseError` carries the reply the person gets.

    @honk make the greeting friendlier                 the channel's repository
    @honk in hello-android: make the greeting friendlier
    @honk make the greeting friendlier in hello-android
    /honk hello-android make the greeting friendlier
    /honk status [ID]    /honk list    /honk help

In a request's thread, "approve" (or "lgtm", "ship it", "merge") and "cancel" (or "stop",
"abort") act like the buttons; anything else requests changes (queued for the agent's next round).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Literal

from honk.config.registry import REPO_NAME, Registry, RepoEntry
from honk.slack.client import USER_MENTION, escape
from honk.workflows.contract import Action

MAX_INSTRUCTION = 4000  # honk.changes enforces it too; checking here gives a friendlier reply

_CHANNEL_LINK = re.compile(r"<#([CGD][A-Z0-9]+)(?:\|([^>]*))?>")
_SPECIAL = re.compile(r"<!([a-z]+)(?:\^[^|>]*)?(?:\|([^>]*))?>")
_LINK = re.compile(r"<((?:https?|mailto|ftp)://?[^|>]+)(?:\|([^>]*))?>")
_LEADING_REPO = re.compile(r"^in\s+(?P<name>[^\s:,]+)\s*(?P<sep>[:,\n])?\s*(?P<rest>.*)$", re.DOTALL | re.IGNORECASE)
_TRAILING_REPO = re.compile(
    r"^(?P<rest>.*?)[\s,]+in\s+(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*?)[.!]?\s*$", re.DOTALL | re.IGNORECASE
)

APPROVE_WORDS = {"approve", "approved", "approve and merge", "approve & merge", "lgtm", "ship it", "merge"}
CANCEL_WORDS = {"cancel", "stop", "abort"}


class ParseError(ValueError):
    """What was written cannot become a request; the message is the reply."""


@dataclass(frozen=True)
class Ask:
    """A new request: which repository and what to change."""

    repo: RepoEntry
    instruction: str


@dataclass(frozen=True)
class ThreadReply:
    """A reply in a request's thread, read as one of the request's actions."""

    action: Action
    text: str


@dataclass(frozen=True)
class Command:
    kind: Literal["help", "list", "status", "request"]
    argument: str = ""  # the request id for `status`
    repo: str = ""
    instruction: str = ""


def plain_text(text: str, bot_user: str | None = None) -> str:
    """Slack's wire format made readable: the bot's own mention removed, other mentions,
    channel and web links turned back into what the person typed, entities decoded."""
    if bot_user:
        text = re.sub(rf"<@{re.escape(bot_user)}(?:\|[^>]*)?>", " ", text)
    text = USER_MENTION.sub(lambda m: f"<@{m.group(1)}>", text)  # kept: the agent may need who
    text = _CHANNEL_LINK.sub(lambda m: f"#{m.group(2) or m.group(1)}", text)
    text = _SPECIAL.sub(lambda m: f"@{m.group(2) or m.group(1)}", text)
    text = _LINK.sub(
        lambda m: m.group(1) if not m.group(2) or m.group(2) == m.group(1) else f"{m.group(2)} ({m.group(1)})", text
    )
    text = html.unescape(text)
    return re.sub(r"[ \t]+", " ", text).strip()


def read_request(text: str, *, bot_user: str | None, registry: Registry, channel: str | None) -> Ask:
    """A mention or direct message → the repository and the instruction.

    The repository is the one named with `in <repo>` (first or last), else the channel's,
    else the only one in the registry. A leading `in <word>` that is no repository counts as
    a repository name only when it is marked as one (`in <repo>:`) or nothing else would do.
    """
    words = plain_text(text, bot_user)
    channel_repo = registry.for_channel(channel) if channel else None
    repo: RepoEntry | None = None
    instruction = words

    leading = _LEADING_REPO.match(words)
    trailing = _TRAILING_REPO.match(words)
    if leading and leading.group("name").strip(".") in registry.repos:
        repo, instruction = registry.repos[leading.group("name").strip(".")], leading.group("rest")
    elif (
        leading
        and REPO_NAME.match(leading.group("name"))
        and (leading.group("sep") or (channel_repo is None and len(registry.repos) != 1))
    ):
        raise ParseError(_unknown_repo(leading.group("name"), registry))
    elif trailing and trailing.group("name") in registry.repos:
        repo, instruction = registry.repos[trailing.group("name")], trailing.group("rest")
    elif channel_repo is not None:
        repo = channel_repo
    elif len(registry.repos) == 1:
        repo = next(iter(registry.repos.values()))
    else:
        raise ParseError(
            "Which repository? This channel is not linked to one, so say it: "
            f"`in <repository>: <what to change>`. Repositories: {_names(registry)}."
        )
    instruction = instruction.strip()
    if not instruction:
        raise ParseError(
            f"What should change in *{repo.name}*? Write it after the mention, e.g. "
            "`@honk make the login button bigger`."
        )
    if len(instruction) > MAX_INSTRUCTION:
        raise ParseError(
            f"That instruction is {len(instruction)} characters; the limit is {MAX_INSTRUCTION}. "
            "Shorten it, or link to a document."
        )
    return Ask(repo=repo, instruction=instruction)


def read_reply(text: str, *, bot_user: str | None) -> ThreadReply | None:
    """A reply in a request's thread → approve, cancel, or request changes; None when empty."""
    words = plain_text(text, bot_user)
    bare = re.sub(r"[\s.!]+$", "", words.lower()).strip()
    if not bare:
        return None
    if bare in APPROVE_WORDS:
        return ThreadReply("approve", "")
    if bare in CANCEL_WORDS:
        return ThreadReply("cancel", "")
    return ThreadReply("request_changes", words)


def read_command(text: str) -> Command:
    """`/honk ...` → what to do. Subcommands win over a repository of the same name."""
    words = plain_text(text).split(None, 1)
    if not words or words[0].lower() in ("help", "-h", "--help", "?"):
        return Command("help")
    head, rest = words[0], (words[1] if len(words) > 1 else "").strip()
    if head.lower() == "list":
        return Command("list")
    if head.lower() == "status":
        return Command("status", argument=rest.split()[0] if rest else "")
    return Command("request", repo=head, instruction=rest)


def _names(registry: Registry) -> str:
    return ", ".join(f"`{name}`" for name in sorted(registry.repos)) or "none configured"


def _unknown_repo(name: str, registry: Registry) -> str:
    return f"I don't know a repository called `{escape(name)}`. Repositories: {_names(registry)}."


def unknown_repo(name: str, registry: Registry) -> str:
    return _unknown_repo(name, registry)


def usage(command: str) -> str:
    return (
        f"*{command} <repository> <what to change>* — start a request (it gets its own thread)\n"
        f"*{command} status [ID]* — a request's stage and links (without ID: your open requests)\n"
        f"*{command} list* — open requests (this channel's repository, if it has one)\n"
        "Or mention me: `@honk make the greeting friendlier` (`in <repository>:` if the channel "
        "has no repository). Reply in a request's thread to steer it; `approve` and `cancel` "
        "there work like the buttons."
    )
