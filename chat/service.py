"""What the chat service does with what people write: start requests, steer them, pass on
decisions — always through `honk.changes`, the one client-side API — and answer in Slack.

Every method here runs after Slack has been acknowledged (see chat/app.py), so it may take
its time; it never raises into Bolt: problems become a reply to the person.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from honk import changes
from honk.changes import RequestError, find_request, slack_request_id
from honk.chat.journal import EventJournal, journal_dir
from honk.chat.parse import ParseError, read_reply, read_request
from honk.config.registry import Registry, RegistryError, RepoEntry, load_registry
from honk.config.settings import Settings, SettingsError
from honk.slack import blocks
from honk.slack.client import escape
from honk.workflows.contract import SA_STAGE, Origin, Stage

log = logging.getLogger("honk.chat")


@dataclass(frozen=True)
class Place:
    """A Slack thread: where a request lives and where its replies go."""

    team: str
    channel: str
    thread_ts: str

    @property
    def request_id(self) -> str:
        return slack_request_id(self.team, self.channel, self.thread_ts)

    def fields(self) -> dict[str, str]:
        return {"team": self.team, "channel": self.channel, "thread_ts": self.thread_ts}


class RegistrySource:
    """The registry, re-read when its file changes (no restart to add a repository)."""

    def __init__(self, settings: Settings, fixed: Registry | None = None) -> None:
        self.path: Path = settings.registry
        self.data_dir = settings.data_dir
        self.fixed = fixed
        self._loaded: Registry | None = None
        self._mtime: float | None = None

    def get(self) -> Registry:
        if self.fixed is not None:
            return self.fixed
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            mtime = None
        if self._loaded is None or mtime != self._mtime:
            try:
                self._loaded, self._mtime = load_registry(self.path, self.data_dir), mtime
            except RegistryError:
                if self._loaded is None:
                    raise
                log.exception("registry changed but is invalid; keeping the previous one")
        return self._loaded


class ChatService:
    def __init__(
        self, settings: Settings, temporal: Client, slack: AsyncWebClient, registry: Registry | None = None
    ) -> None:
        self.settings = settings
        self.temporal = temporal
        self.slack = slack
        self.registries = RegistrySource(settings, registry)
        self.bot_user: str | None = None  # from auth.test at start; mentions of it are stripped
        self.inflight: set[asyncio.Task[Any]] = set()
        self.journal = EventJournal(journal_dir(settings.data_dir))
        self._own_session = False

    async def connect_slack(self) -> dict[str, Any]:
        """Check the bot token (auth.test) and learn the bot's user id. From here on all Web
        API calls share one connection pool (slack_sdk otherwise opens one per call)."""
        if self.slack.session is None:
            self.slack.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
            self._own_session = True
        try:
            auth = await self.slack.auth_test()
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else None
            if error in ("invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"):
                raise SettingsError(f"Slack refused HONK_SLACK_BOT_TOKEN ({error})") from None
            raise
        self.bot_user = auth.get("user_id")
        log.info("slack connected", extra={"team": auth.get("team_id"), "bot_user": self.bot_user})
        return auth.data  # type: ignore[return-value]

    async def drain(self, timeout: float = 20.0) -> None:
        """Let the work handed to the background finish (on shutdown): nothing acknowledged
        to Slack is dropped half-way."""
        pending = {t for t in self.inflight if not t.done()}
        if pending:
            log.info("waiting for background work", extra={"tasks": len(pending)})
            await asyncio.wait(pending, timeout=timeout)

    async def close(self) -> None:
        await self.drain()
        if self._own_session and self.slack.session is not None:
            await self.slack.session.close()
            self.slack.session = None
            self._own_session = False

    # ------------------------------------------------------------------ new requests

    async def start_from_text(self, place: Place, user: str, text: str, *, replayed: bool = False) -> None:
        """A mention or direct message that should become a request in `place`."""
        registry = self.registries.get()
        try:
            ask = read_request(text, bot_user=self.bot_user, registry=registry, channel=place.channel)
        except ParseError as problem:
            log.info("request not understood", extra={**place.fields(), "user": user, "problem": str(problem)})
            await self.reply(place, f"<@{user}> {problem}")
            return
        await self.start(place, user, ask.repo, ask.instruction, registry, replayed=replayed)

    async def start(
        self,
        place: Place,
        user: str,
        repo: RepoEntry,
        instruction: str,
        registry: Registry | None = None,
        *,
        replayed: bool = False,
    ) -> bool:
        """Start the request of `place`; a second start of the same thread is a no-op."""
        registry = registry or self.registries.get()
        if not repo.may_request(user):
            log.info("requester refused", extra={**place.fields(), "user": user, "repo": repo.name})
            await self.reply(
                place,
                f"<@{user}> you may not request changes to *{escape(repo.name)}*: you are "
                "not among its requesters in Honk's registry. Ask whoever runs Honk to add you.",
            )
            return False
        origin = Origin(kind="slack", team=place.team, channel=place.channel, thread_ts=place.thread_ts, user=user)
        try:
            handle = await changes.start_request(
                self.temporal,
                self.settings,
                registry,
                repo=repo.name,
                instruction=instruction,
                requester=user,
                origin=origin,
                request_id=place.request_id,
            )
        except WorkflowAlreadyStartedError:
            # Slack delivered the event again (or a second replica got it): one request per thread.
            log.info("request already started", extra={**place.fields(), "request_id": place.request_id})
            return False
        except (RequestError, RegistryError) as problem:
            await self.reply(place, f"<@{user}> {escape(str(problem))}")
            return False
        except RPCError as exc:
            log.error("could not start request", extra={**place.fields(), "error": exc.message})
            await self.reply(
                place,
                f"<@{user}> I could not start this request: Honk's workflow service is "
                "not answering. Your message is still here; mention me again in a minute.",
            )
            return False
        log.info("request started", extra={**place.fields(), "request_id": handle.id, "repo": repo.name, "user": user})
        await self.react(place.channel, place.thread_ts, "eyes")
        if replayed:
            await self.reply(place, f"<@{user}> Honk restarted before starting this request; it has started now.")
        return True

    # ------------------------------------------------------------------ steering

    async def steer(self, place: Place, user: str, text: str) -> bool:
        """A reply in a thread. False when the thread holds no request (not ours to answer)."""
        request_id = place.request_id
        try:
            info = await find_request(self.temporal, request_id)
        except RPCError as exc:
            log.error("could not look up the thread's request", extra={**place.fields(), "error": exc.message})
            await self.whisper(place, user, "Honk's workflow service is not answering; try again in a minute.")
            return True
        if info is None:
            return False
        if info.status != WorkflowExecutionStatus.RUNNING:
            stage = info.typed_search_attributes.get(SA_STAGE) if info.typed_search_attributes else None
            await self.whisper(
                place,
                user,
                f"This request has already ended ({stage or info.status.name}). "
                "To change more, start a new request with a new message.",
            )
            return True
        reply = read_reply(text, bot_user=self.bot_user)
        if reply is None:
            return True
        await self.decide(place, user, request_id, reply.action, reply.text)
        return True

    async def decide(self, place: Place, user: str, request_id: str, action: str, text: str = "") -> bool:
        """Pass a decision through the workflow's validated update; a refusal is told to
        `user` alone, an accepted one to the thread. True when accepted."""
        try:
            outcome = await changes.decide(self.temporal, request_id, action, user, text)
        except RequestError as refusal:
            reason = str(refusal).removeprefix("refused: ")
            log.info("decision refused", extra={**place.fields(), "user": user, "action": action, "reason": reason})
            await self.whisper(place, user, f"Not done: {escape(reason)}")
            return False
        except RPCError as exc:
            log.error("decision failed", extra={**place.fields(), "action": action, "error": exc.message})
            await self.whisper(place, user, "Honk's workflow service is not answering; try again in a minute.")
            return False
        log.info(
            "decision accepted",
            extra={
                **place.fields(),
                "user": user,
                "action": action,
                "request_id": request_id,
                "stage": outcome.stage.value,
            },
        )
        await self.reply(place, _accepted(action, user, outcome.stage, outcome.message))
        return True

    async def button_is_current(self, place: Place, user: str, request_id: str, install_page: str | None) -> bool:
        """An Approve button belongs to one build; after another round it must not approve
        the newer build unseen. Unknown (no worker to ask) counts as current."""
        if not install_page:
            return True
        try:
            status = await changes.get_status(self.temporal, request_id, query_timeout=3)
        except (RequestError, RPCError):
            return True
        if status.links.install_page and status.links.install_page != install_page:
            await self.whisper(
                place,
                user,
                "That button belongs to an older build. Use the buttons on the "
                "latest *Ready for review* message in this thread.",
            )
            return False
        return True

    # ------------------------------------------------------------------ Slack output

    async def reply(self, place: Place, text: str, blocks_: list[dict[str, Any]] | None = None) -> str | None:
        try:
            response = await self.slack.chat_postMessage(
                channel=place.channel,
                thread_ts=place.thread_ts,
                text=text,
                blocks=blocks_,
                unfurl_links=False,
                unfurl_media=False,
            )
            return response.get("ts")
        except SlackApiError as exc:
            log.error("slack reply failed", extra={**place.fields(), "error": exc.response.get("error")})
            return None

    async def whisper(self, place: Place, user: str, text: str) -> None:
        """An ephemeral message: only `user` sees it, in the thread."""
        try:
            await self.slack.chat_postEphemeral(channel=place.channel, user=user, text=text, thread_ts=place.thread_ts)
        except SlackApiError as exc:
            log.error("slack ephemeral failed", extra={**place.fields(), "error": exc.response.get("error")})

    async def react(self, channel: str, ts: str, name: str) -> None:
        try:
            await self.slack.reactions_add(channel=channel, timestamp=ts, name=name)
        except SlackApiError as exc:  # cosmetic: already_reacted, missing scope, ...
            log.debug("reaction failed", extra={"channel": channel, "error": exc.response.get("error")})

    async def replace_buttons(self, channel: str, message: dict[str, Any], action: str, user: str) -> None:
        try:
            await self.slack.chat_update(
                channel=channel,
                ts=message["ts"],
                text=message.get("text") or "Honk",
                blocks=blocks.decided(message, action, user),
            )
        except (SlackApiError, KeyError) as exc:
            log.warning("could not update the decision message", extra={"channel": channel, "error": str(exc)})


def _accepted(action: str, user: str, stage: Stage, message: str) -> str:
    if "no worker answered" in message:
        return f"<@{user}>: {escape(message)}"
    if action == "approve":
        return f":white_check_mark: Approved by <@{user}>; merging."
    if action == "cancel":
        return f":no_entry_sign: <@{user}> cancelled the request; cleaning up."
    if stage == Stage.AWAITING_APPROVAL:
        return f":memo: <@{user}> asked for changes; the agent starts a new round."
    return f":memo: Got it, <@{user}>: your feedback is queued for the agent's next round."
