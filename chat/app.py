"""The Bolt app: which Slack input goes to which handler.

Slack retries anything not acknowledged within 3 seconds, so every handler acknowledges
first (events are acknowledged by Bolt itself before the listener runs) and does the real
work — Temporal calls, replies — afterwards, in the background task Bolt runs it in. The
same app serves HTTP mode (chat/server.py, behind FastAPI) and Socket Mode.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError

from honk import changes, telemetry
from honk.changes import RequestError
from honk.chat.guard import Guard
from honk.chat.parse import read_command, unknown_repo, usage
from honk.chat.service import ChatService, Place
from honk.slack import blocks
from honk.slack.client import (
    ACTION_APPROVE,
    ACTION_CANCEL,
    ACTION_REQUEST_CHANGES,
    CHANGES_BLOCK,
    CHANGES_INPUT,
    VIEW_CHANGES,
    escape,
    read_button_value,
)

log = logging.getLogger("honk.chat")

# Message subtypes that are still a person writing; every other subtype (edits, deletions,
# joins, bot messages) is not something to act on.
_PERSON_SUBTYPES = {None, "thread_broadcast", "file_share"}
EVENT_CONCURRENCY = 8
REPLAYED = "honk_replayed"  # context flag of an event replayed from the journal


def create_app(service: ChatService, *, signing_secret: str | None) -> AsyncApp:
    """`signing_secret` is required in HTTP mode; Socket Mode needs none (the WebSocket is
    authenticated by the app token)."""
    app = AsyncApp(
        client=service.slack,
        signing_secret=signing_secret or "",
        logger=logging.getLogger("honk.chat.bolt"),
        process_before_response=False,  # answer Slack at ack(), keep working afterwards
    )
    guard = Guard()
    app.middleware(guard.check)
    journal = service.journal

    async def keep_record(
        req: AsyncBoltRequest, resp: BoltResponse, next: Callable[[], Awaitable[BoltResponse]]
    ) -> BoltResponse:  # noqa: A002
        # On disk before Bolt acknowledges: an event Slack stops sending is never lost.
        event_id = journal.wants(req.body)
        if event_id and not req.context.get(REPLAYED):
            try:
                journal.record(event_id, req.body)
            except OSError as exc:
                log.error("cannot record the event; not acknowledging", extra={"error": str(exc)})
                return BoltResponse(status=503, body="")  # Slack delivers it again
        return await next()

    app.middleware(keep_record)

    # Events can arrive in bursts. Their work (a Temporal call, a Slack call, each answer
    # parsed on this event loop) runs at most this many at a time, so a burst of answers
    # never holds up the loop that acknowledges the next request; the rest wait their turn.
    # Button presses and commands acknowledge inside their handler, so they skip this queue.
    event_slots = asyncio.Semaphore(EVENT_CONCURRENCY)

    def background(handler: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
        """Track the handler's task (so shutdown waits for it) and turn any failure into a
        log line instead of a lost stack trace."""
        acknowledges_itself = "ack" in inspect.signature(handler).parameters

        @functools.wraps(handler)
        async def run(*args: Any, **kwargs: Any) -> None:
            task = asyncio.current_task()
            if task is not None:
                service.inflight.add(task)
            try:
                # One trace per chat message: the request it starts joins it (honk/telemetry.py).
                with telemetry.start_span(f"chat.{handler.__name__}"):
                    if acknowledges_itself:
                        await handler(*args, **kwargs)
                    else:
                        async with event_slots:
                            await handler(*args, **kwargs)
            except Exception:
                log.exception("chat handler failed", extra={"handler": handler.__name__})
            finally:
                if task is not None:
                    service.inflight.discard(task)
            # Handled (or failed for good, logged above): nothing left to replay. A crash
            # before this line leaves the record, and the next start replays it.
            event_id = journal.wants(kwargs.get("body"))
            if event_id:
                journal.done(event_id)

        return run

    # ------------------------------------------------------------------ events

    @app.event("app_mention")
    @background
    async def start_from_mention(event: dict[str, Any], body: dict[str, Any], context: dict[str, Any]) -> None:
        place, user = _event_place(event, body)
        if place is None or not user:
            log.warning("mention without channel, user or ts ignored", extra={"event_id": body.get("event_id")})
            return
        text = event.get("text") or ""
        if place.thread_ts != event.get("ts") and await service.steer(place, user, text):
            return  # a mention inside a request's thread steers it
        await service.start_from_text(place, user, text, replayed=bool(context.get(REPLAYED)))

    @app.event("message")
    @background
    async def route_message(event: dict[str, Any], body: dict[str, Any], context: dict[str, Any]) -> None:
        if event.get("subtype") not in _PERSON_SUBTYPES or event.get("bot_id"):
            return
        place, user = _event_place(event, body)
        if place is None or not user or user == service.bot_user:
            return
        text = event.get("text") or ""
        direct = event.get("channel_type") == "im"
        if not direct and service.bot_user and f"<@{service.bot_user}" in text:
            return  # Slack sends an app_mention for this too; that handler answers it
        if place.thread_ts != event.get("ts"):
            await service.steer(place, user, text)  # in a request's thread: steer; elsewhere: not ours
        elif direct:
            await service.start_from_text(place, user, text, replayed=bool(context.get(REPLAYED)))

    # ------------------------------------------------------------------ the slash command

    @app.command(service.settings.slack_command)
    @background
    async def run_command(ack: Any, body: dict[str, Any], respond: Any) -> None:
        await ack()
        command = read_command(body.get("text") or "")
        name = service.settings.slack_command
        user, channel, team = body.get("user_id", ""), body.get("channel_id", ""), body.get("team_id", "")
        typed = f"You wrote: `{name} {escape(body.get('text') or '')}`"  # nothing typed is lost
        if command.kind == "help":
            await respond(usage(name))
        elif command.kind == "list":
            await respond(await _list_open(service, channel))
        elif command.kind == "status":
            await respond(await _status(service, user, command.argument))
        else:
            registry = service.registries.get()
            repo = registry.repos.get(command.repo)
            if repo is None:
                await respond(f"{unknown_repo(command.repo, registry)}\n{typed}")
                return
            if not command.instruction:
                await respond(
                    f"What should change in *{escape(repo.name)}*? `{name} {escape(repo.name)} "
                    f"<what to change>`\n{typed}"
                )
                return
            if not repo.may_request(user):
                await respond(
                    f"You may not request changes to *{escape(repo.name)}*: you are not among its "
                    f"requesters in Honk's registry.\n{typed}"
                )
                return
            text, root_blocks = blocks.request_root(user, repo.name, command.instruction)
            try:
                root = await service.slack.chat_postMessage(channel=channel, text=text, blocks=root_blocks)
            except SlackApiError as exc:
                log.warning(
                    "cannot post the request's root message",
                    extra={"channel": channel, "error": exc.response.get("error")},
                )
                await respond(
                    f"I can't post in this channel ({exc.response.get('error')}). Invite me with "
                    f"`/invite @honk`, or send me a direct message.\n{typed}"
                )
                return
            await service.start(Place(team, channel, root["ts"]), user, repo, command.instruction, registry)

    # ------------------------------------------------------------------ buttons and the modal

    @app.action(ACTION_APPROVE)
    @background
    async def approve_from_button(ack: Any, body: dict[str, Any]) -> None:
        await ack()
        place, user, value = _action_place(body)
        if place is None:
            return
        if not await service.button_is_current(place, user, value["request_id"], value.get("install_page")):
            return
        if await service.decide(place, user, value["request_id"], "approve"):
            await service.replace_buttons(place.channel, body.get("message") or {}, "approve", user)

    @app.action(ACTION_CANCEL)
    @background
    async def cancel_from_button(ack: Any, body: dict[str, Any]) -> None:
        await ack()  # the button carries Slack's own confirmation dialog
        place, user, value = _action_place(body)
        if place is not None and await service.decide(place, user, value["request_id"], "cancel"):
            await service.replace_buttons(place.channel, body.get("message") or {}, "cancel", user)

    @app.action(ACTION_REQUEST_CHANGES)
    @background
    async def open_changes_modal(ack: Any, body: dict[str, Any]) -> None:
        await ack()
        place, user, value = _action_place(body)
        if place is None:
            return
        try:
            await service.slack.views_open(
                trigger_id=body["trigger_id"],
                view=blocks.changes_modal(value["request_id"], place.channel, place.thread_ts),
            )
        except SlackApiError as exc:
            log.warning("could not open the modal", extra={"error": exc.response.get("error")})
            await service.whisper(
                place, user, "I could not open the form; reply in this thread with what should change instead."
            )

    @app.view(VIEW_CHANGES)
    @background
    async def submit_changes(ack: Any, body: dict[str, Any], view: dict[str, Any]) -> None:
        values = view.get("state", {}).get("values", {})
        text = ((values.get(CHANGES_BLOCK) or {}).get(CHANGES_INPUT) or {}).get("value") or ""
        if not text.strip():
            await ack(response_action="errors", errors={CHANGES_BLOCK: "Say what should change."})
            return
        await ack()
        meta = read_button_value(view.get("private_metadata"))
        user = (body.get("user") or {}).get("id", "")
        team = (body.get("team") or {}).get("id", "")
        if not (meta.get("request_id") and meta.get("channel") and meta.get("thread_ts") and user):
            log.warning("modal submission without its request", extra={"user": user})
            return
        place = Place(team, meta["channel"], meta["thread_ts"])
        await service.decide(place, user, meta["request_id"], "request_changes", text.strip())

    @app.error
    async def log_error(error: Exception, body: dict[str, Any]) -> None:
        log.error("bolt error", extra={"error": f"{type(error).__name__}: {error}", "type": body.get("type")})

    return app


async def replay_pending(app: AsyncApp, service: ChatService) -> int:
    """Hand the events a previous run acknowledged but did not finish to the same handlers
    (as Socket Mode requests: they were verified when they arrived). Returns how many."""
    pending = service.journal.pending()
    for item in pending:
        log.info("replaying an acknowledged event", extra={"event_id": item.event_id})
        request = AsyncBoltRequest(body=item.body, mode="socket_mode", context={REPLAYED: True})
        await app.async_dispatch(request)
    return len(pending)


def _event_place(event: dict[str, Any], body: dict[str, Any]) -> tuple[Place | None, str | None]:
    """The thread an event belongs to: its own ts when it starts one."""
    team = body.get("team_id") or event.get("team")
    channel, ts = event.get("channel"), event.get("ts")
    if not (team and channel and ts):
        return None, event.get("user")
    return Place(team, channel, event.get("thread_ts") or ts), event.get("user")


def _action_place(body: dict[str, Any]) -> tuple[Place | None, str, dict[str, Any]]:
    user = (body.get("user") or {}).get("id", "")
    team = (body.get("team") or {}).get("id", "")
    action = (body.get("actions") or [{}])[0]
    value = read_button_value(action.get("value"))
    container, message = body.get("container") or {}, body.get("message") or {}
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
    thread_ts = message.get("thread_ts") or container.get("thread_ts") or message.get("ts")
    if not (user and team and channel and thread_ts and value.get("request_id")):
        log.warning("button press without its request", extra={"user": user, "action": action.get("action_id")})
        return None, user, value
    return Place(team, channel, thread_ts), user, value


async def _list_open(service: ChatService, channel: str) -> str:
    repo = service.registries.get().for_channel(channel)
    try:
        rows = await changes.list_requests(service.temporal, repo=repo.name if repo else None, limit=100)
    except (RequestError, RPCError) as exc:
        return f"Could not list requests: {escape(str(exc))}"
    open_rows = [r for r in rows if r.status == WorkflowExecutionStatus.RUNNING.name][:20]
    return blocks.list_text(open_rows, f"open for *{escape(repo.name)}*" if repo else "open")


async def _status(service: ChatService, user: str, request_id: str) -> str:
    if not request_id:
        try:
            rows = await changes.list_requests(service.temporal, limit=200)
        except (RequestError, RPCError) as exc:
            return f"Could not list requests: {escape(str(exc))}"
        mine = [r for r in rows if r.requester == user and r.status == WorkflowExecutionStatus.RUNNING.name]
        return blocks.list_text(mine[:20], "of yours that are open")
    try:
        return blocks.status_text(await changes.get_status(service.temporal, request_id))
    except (RequestError, RPCError) as exc:
        return f"No status for `{escape(request_id)}`: {escape(str(exc))}"
