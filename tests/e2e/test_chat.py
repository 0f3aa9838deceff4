"""The chat service over real HTTP (uvicorn) and Socket Mode, with correctly signed requests,
against the Slack fake and a real Temporal dev server. The end-to-end tests run the real
activities (tests/support/honkstack.py) with the Slack notifier pointed at the same fake."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from pathlib import Path

import aiohttp
import pytest
from conftest import eventually
from honkstack import SCRIPT, Stack, needs_android
from pydantic import SecretStr
from slack_fake import (
    APP_TOKEN,
    BOT_TOKEN,
    BOT_USER,
    SIGNING_SECRET,
    TEAM,
    SlackFake,
    block_action,
    form_body,
    interactive_body,
    mention,
    message_event,
    signed_headers,
    slash_command,
    view_submission,
)
from temporalio.client import WorkflowExecutionStatus

from honk.changes import find_request, get_status, slack_request_id
from honk.chat.parse import ParseError, read_command, read_reply, read_request
from honk.chat.server import Chat, require_slack_settings
from honk.config.registry import Registry, load_registry
from honk.config.settings import Settings, SettingsError, load_settings
from honk.slack import blocks
from honk.slack.client import (
    ACTION_APPROVE,
    ACTION_REQUEST_CHANGES,
    CHANGES_BLOCK,
    CHANGES_INPUT,
    VIEW_CHANGES,
)
from honk.workflows.contract import Links, Notice, Origin, RequestStatus, Stage

CHANNEL = "C0MOBILE"
OTHER_CHANNEL = "C0RANDOM"
BOB, ALICE, MALLORY = "U0BOB", "U0ALICE", "U0MALLORY"
_ts = iter(range(1, 10_000))


def new_ts() -> str:
    return f"{int(time.time())}.{next(_ts):06d}"


def write_registry(tmp: Path, remote: Path | str, data_dir: Path) -> Registry:
    path = tmp / "chat-honk.toml"
    path.write_text(
        f'[repos.hello-android]\nremote = "{remote}"\nchannels = ["{CHANNEL}"]\n'
        f'requesters = ["{BOB}", "{ALICE}"]\napprovers = ["{ALICE}"]\n\n'
        f'[repos.web-app]\nremote = "{remote}"\nrequesters = ["*"]\napprovers = ["{ALICE}"]\n'
    )
    return load_registry(path, data_dir)


def with_slack(settings: Settings, fake: SlackFake) -> Settings:
    return settings.model_copy(
        update={
            "slack_bot_token": SecretStr(BOT_TOKEN),
            "slack_signing_secret": SecretStr(SIGNING_SECRET),
            "slack_app_token": SecretStr(APP_TOKEN),
            "slack_api_url": fake.api_url,
        }
    )


class RunningChat:
    """`honk chat` in HTTP mode on 127.0.0.1 (uvicorn in this event loop)."""

    def __init__(self, chat: Chat) -> None:
        self.chat = chat
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = chat.http_server("127.0.0.1", self.sock.getsockname()[1])
        self.http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> RunningChat:
        self.task = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        await eventually(self._started, timeout=10, what="chat server")
        self.http = aiohttp.ClientSession()
        return self

    async def _started(self) -> bool:
        if self.task.done():
            self.task.result()
        return self.server.started

    async def __aexit__(self, *exc: object) -> None:
        assert self.http is not None
        await self.http.close()
        self.server.should_exit = True
        await self.task

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        assert self.http is not None
        async with self.http.post(self.url + path, data=body, headers=headers) as response:
            return response.status, await response.text()

    async def event(
        self, payload: dict, *, retry: int | None = None, timestamp: int | None = None, secret: str = SIGNING_SECRET
    ) -> int:
        body = json.dumps(payload).encode()
        status, _ = await self.post(
            "/slack/events", body, signed_headers(body, secret=secret, timestamp=timestamp, retry=retry)
        )
        return status

    async def action(self, payload: dict) -> int:
        body = interactive_body(payload)
        return (
            await self.post(
                "/slack/interactivity", body, signed_headers(body, content_type="application/x-www-form-urlencoded")
            )
        )[0]

    async def command(self, fields: dict[str, str]) -> tuple[int, str]:
        body = form_body(fields)
        return await self.post(
            "/slack/commands", body, signed_headers(body, content_type="application/x-www-form-urlencoded")
        )


@pytest.fixture
def fake():
    with SlackFake() as f:
        yield f


@pytest.fixture
def chat_settings(dev_env, tmp_path, task_queue, fake) -> Settings:
    base = load_settings(
        data_dir=tmp_path / "data",
        task_queue=task_queue,
        temporal_address=dev_env.client.service_client.config.target_host,
    )
    return with_slack(base, fake)


@pytest.fixture
async def chat(dev_env, tmp_path, chat_settings):
    registry = write_registry(tmp_path, tmp_path / "remote.git", chat_settings.data_dir)
    running = RunningChat(Chat(chat_settings, dev_env.client, registry=registry))
    async with running:
        yield running
    await running.chat.service.drain()


async def started(client, request_id: str, timeout: float = 15):
    async def probe():
        return await find_request(client, request_id)

    return await eventually(probe, timeout=timeout, what=f"{request_id} to start")


async def count_runs(client, request_id: str) -> int:
    return len([wf async for wf in client.list_workflows(f"WorkflowId = '{request_id}'")])


async def terminate(client, *ids: str) -> None:
    for request_id in ids:
        try:
            await client.get_workflow_handle(request_id).terminate("test over")
        except Exception:
            pass


def thread_texts(fake: SlackFake, channel: str, ts: str) -> list[str]:
    return [m["text"] + json.dumps(m.get("blocks") or []) for m in fake.thread(channel, ts)]


# --------------------------------------------------------------------------- parsing


def test_parse_mentions_commands_and_replies(tmp_path):
    registry = write_registry(tmp_path, tmp_path / "r.git", tmp_path)
    ask = read_request(
        f"<@{BOT_USER}> make the <https://x.io|greeting> &amp; title friendlier",
        bot_user=BOT_USER,
        registry=registry,
        channel=CHANNEL,
    )
    assert ask.repo.name == "hello-android" and ask.instruction == "make the greeting (https://x.io) & title friendlier"
    assert (
        read_request(
            f"<@{BOT_USER}> in web-app: fix login", bot_user=BOT_USER, registry=registry, channel=OTHER_CHANNEL
        ).repo.name
        == "web-app"
    )
    assert (
        read_request(
            f"<@{BOT_USER}> fix login in web-app.", bot_user=BOT_USER, registry=registry, channel=OTHER_CHANNEL
        ).instruction
        == "fix login"
    )
    # "in the ..." is just English in a channel that has a repository.
    assert (
        read_request("in the main screen, make it blue", bot_user=None, registry=registry, channel=CHANNEL).instruction
        == "in the main screen, make it blue"
    )
    for text, channel, says in (
        ("in nosuch: fix it", CHANNEL, "I don't know a repository called `nosuch`"),
        ("fix it", OTHER_CHANNEL, "Which repository?"),
        ("", CHANNEL, "What should change in *hello-android*?"),
        ("x" * 4001, CHANNEL, "limit is 4000"),
    ):
        with pytest.raises(ParseError, match=None) as problem:
            read_request(f"<@{BOT_USER}> {text}", bot_user=BOT_USER, registry=registry, channel=channel)
        assert says in str(problem.value)
    assert read_reply("LGTM!", bot_user=BOT_USER).action == "approve"
    assert read_reply(f"<@{BOT_USER}> cancel", bot_user=BOT_USER).action == "cancel"
    assert read_reply("cancel the dialog instead", bot_user=None).action == "request_changes"
    assert read_command("status honk-x").argument == "honk-x"
    assert read_command("hello-android make it blue").instruction == "make it blue"
    assert read_command("").kind == "help" and read_command("list").kind == "list"


def test_missing_settings_are_named():
    bare = load_settings()
    with pytest.raises(SettingsError, match="HONK_SLACK_SIGNING_SECRET"):
        require_slack_settings(bare.model_copy(update={"slack_bot_token": SecretStr(BOT_TOKEN)}), socket_mode=False)
    with pytest.raises(SettingsError, match="HONK_SLACK_APP_TOKEN"):
        require_slack_settings(bare.model_copy(update={"slack_bot_token": SecretStr(BOT_TOKEN)}), socket_mode=True)
    with pytest.raises(SettingsError, match="HONK_SLACK_APP_TOKEN: .*xapp-"):
        load_settings(slack_app_token="xoxb-swapped")
    assert BOT_TOKEN not in repr(load_settings(slack_bot_token=BOT_TOKEN))


# --------------------------------------------------------------------------- HTTP mode


async def test_same_event_three_times_starts_exactly_one_request(chat, fake, dev_env, chat_settings, tmp_path):
    ts = new_ts()
    payload = mention("change the greeting", user=BOB, channel=CHANNEL, ts=ts)
    request_id = slack_request_id(TEAM, CHANNEL, ts)
    now = int(time.time())
    # Slack's retries are new requests (new timestamp, new signature) carrying the same event.
    statuses = [
        await chat.event(payload, timestamp=now),
        await chat.event(payload, retry=1, timestamp=now + 1),
        await chat.event(payload, retry=2, timestamp=now + 2),
    ]
    assert statuses == [200, 200, 200]
    info = await started(dev_env.client, request_id)
    await chat.chat.service.drain()
    assert info.status == WorkflowExecutionStatus.RUNNING
    assert await count_runs(dev_env.client, request_id) == 1
    assert len(fake.calls_to("reactions.add")) == 1, "one start acknowledged in Slack"

    # A second replica (or a restart) has no memory of the event: the workflow id still holds.
    registry = write_registry(tmp_path, tmp_path / "remote.git", chat_settings.data_dir)
    async with RunningChat(Chat(chat_settings, dev_env.client, registry=registry)) as replica:
        assert await replica.event(payload, retry=3) == 200
        await replica.chat.service.drain()
    assert await count_runs(dev_env.client, request_id) == 1
    assert fake.calls_to("chat.postMessage") == [], "no error reply for a duplicate"
    handle = dev_env.client.get_workflow_handle(request_id)
    history = [e async for e in handle.fetch_history_events()]
    started_input = history[0].workflow_execution_started_event_attributes.input.payloads[0].data
    request = json.loads(started_input)
    assert request["requester"] == BOB and request["origin"] == {
        "kind": "slack",
        "team": TEAM,
        "channel": CHANNEL,
        "thread_ts": ts,
        "user": BOB,
    }
    await terminate(dev_env.client, request_id)


async def test_forged_stale_and_replayed_requests_are_rejected(chat, fake, dev_env):
    forged_ts, stale_ts, good_ts = new_ts(), new_ts(), new_ts()
    forged = mention("change the greeting", user=BOB, channel=CHANNEL, ts=forged_ts)
    assert await chat.event(forged, secret="not-the-signing-secret") == 401
    stale = mention("change the greeting", user=BOB, channel=CHANNEL, ts=stale_ts)
    assert await chat.event(stale, timestamp=int(time.time()) - 301) == 401

    good = mention("change the greeting", user=BOB, channel=CHANNEL, ts=good_ts)
    body = json.dumps(good).encode()
    headers = signed_headers(body)
    assert (await chat.post("/slack/events", body, headers))[0] == 200
    # The very same signed request again (a captured request replayed within the window).
    assert (await chat.post("/slack/events", body, headers))[0] == 401
    await started(dev_env.client, slack_request_id(TEAM, CHANNEL, good_ts))
    await chat.chat.service.drain()
    assert await find_request(dev_env.client, slack_request_id(TEAM, CHANNEL, forged_ts)) is None
    assert await find_request(dev_env.client, slack_request_id(TEAM, CHANNEL, stale_ts)) is None
    assert await count_runs(dev_env.client, slack_request_id(TEAM, CHANNEL, good_ts)) == 1
    assert len(fake.calls_to("reactions.add")) == 1
    # Interactivity and commands are verified the same way.
    forged_action = interactive_body({"type": "block_actions"})
    forged_headers = signed_headers(forged_action, secret="wrong", content_type="application/x-www-form-urlencoded")
    assert (await chat.post("/slack/interactivity", forged_action, forged_headers))[0] == 401
    await terminate(dev_env.client, slack_request_id(TEAM, CHANNEL, good_ts))


async def test_bad_input_gets_a_clear_reply_in_the_thread(chat, fake, dev_env):
    cases = [
        (CHANNEL, BOB, "in nosuch: fix the crash", "I don't know a repository called `nosuch`"),
        (OTHER_CHANNEL, BOB, "fix the crash", "Which repository?"),
        (CHANNEL, BOB, "", "What should change in *hello-android*?"),
        (CHANNEL, MALLORY, "fix the crash", "you may not request changes to *hello-android*"),
    ]
    threads = []
    for channel, user, text, _ in cases:
        ts = new_ts()
        threads.append((channel, ts))
        assert await chat.event(mention(text, user=user, channel=channel, ts=ts)) == 200
    # A malformed event (no channel, no user) is acknowledged and changes nothing.
    broken = mention("fix", user=BOB, channel=CHANNEL, ts=new_ts())
    del broken["event"]["channel"], broken["event"]["user"]
    assert await chat.event(broken) == 200
    await chat.chat.service.drain()

    for (channel, ts), (_, user, _, says) in zip(threads, cases, strict=True):
        replies = fake.thread(channel, ts)
        assert len(replies) == 1, replies
        assert replies[0]["thread_ts"] == ts and says in replies[0]["text"]
        assert replies[0]["text"].startswith(f"<@{user}>")
        assert await find_request(dev_env.client, slack_request_id(TEAM, channel, ts)) is None
    # ... and the next good message still works: nothing was lost or wedged.
    ts = new_ts()
    assert await chat.event(mention("in web-app: fix the crash", user=MALLORY, channel=OTHER_CHANNEL, ts=ts)) == 200
    await started(dev_env.client, slack_request_id(TEAM, OTHER_CHANNEL, ts))
    await terminate(dev_env.client, slack_request_id(TEAM, OTHER_CHANNEL, ts))


async def test_direct_message_starts_a_request(chat, dev_env):
    ts = new_ts()
    assert (
        await chat.event(
            message_event(
                "in hello-android: make the title bigger", user=BOB, channel="D0BOB", ts=ts, channel_type="im"
            )
        )
        == 200
    )
    request_id = slack_request_id(TEAM, "D0BOB", ts)
    await started(dev_env.client, request_id)
    # Plain channel chatter is not a request, and a reply in a thread without one is ignored.
    assert await chat.event(message_event("lunch?", user=BOB, channel=CHANNEL, ts=new_ts())) == 200
    assert (
        await chat.event(message_event("approve", user=ALICE, channel=CHANNEL, ts=new_ts(), thread_ts=new_ts())) == 200
    )
    await chat.chat.service.drain()
    await terminate(dev_env.client, request_id)


async def test_slash_command_starts_a_threaded_request_and_answers_privately(chat, fake, dev_env):
    status, _ = await chat.command(
        slash_command(
            "hello-android make the greeting friendlier", user=BOB, channel=CHANNEL, response_url=fake.response_url()
        )
    )
    assert status == 200
    await chat.chat.service.drain()
    root = fake.calls_to("chat.postMessage")[0]
    assert root.args["channel"] == CHANNEL and "make the greeting friendlier" in root.args["text"]
    request_id = slack_request_id(TEAM, CHANNEL, root.response["ts"])
    await started(dev_env.client, request_id)

    await chat.command(slash_command("nosuch do it", user=BOB, channel=CHANNEL, response_url=fake.response_url()))
    await chat.command(slash_command("list", user=BOB, channel=CHANNEL, response_url=fake.response_url()))
    await chat.command(slash_command("", user=BOB, channel=CHANNEL, response_url=fake.response_url()))
    await chat.chat.service.drain()
    assert len(fake.responses) == 3, fake.responses
    # The three answers come back in the order they are ready (the list asks the server).
    unknown = next(r for r in fake.responses if "nosuch" in r["text"])
    helped = next(r for r in fake.responses if r["text"].startswith("*/honk <repository>"))
    listed = next(r for r in fake.responses if r is not unknown and r is not helped)
    assert "I don't know a repository called `nosuch`" in unknown["text"]
    assert "You wrote: `/honk nosuch do it`" in unknown["text"], "the typed command is never lost"
    assert "open for *hello-android*" in listed["text"]
    assert "/honk <repository> <what to change>" in helped["text"]
    assert len(fake.calls_to("chat.postMessage")) == 1, "errors are private, not posted to the channel"
    # What people type is echoed inert: no @here pings, no links smuggled into Honk's replies.
    await chat.command(
        slash_command("&lt;!here&gt; do it", user=BOB, channel=CHANNEL, response_url=fake.response_url())
    )
    await chat.chat.service.drain()
    assert "<!here>" not in fake.responses[-1]["text"] and "&lt;!here&gt;" in fake.responses[-1]["text"]
    await terminate(dev_env.client, request_id)


async def test_healthz(chat):
    assert chat.http is not None
    async with chat.http.get(chat.url + "/healthz") as response:
        assert response.status == 200
        assert (await response.json())["bot_user"] == BOT_USER


async def test_secrets_never_logged_or_posted(chat, fake, dev_env, caplog):
    with caplog.at_level(logging.DEBUG):
        ts = new_ts()
        await chat.event(mention("in nosuch: x", user=BOB, channel=CHANNEL, ts=ts))
        await chat.event(mention("x", user=BOB, channel=CHANNEL, ts=new_ts()), secret="forged-secret-0000")
        await chat.chat.service.drain()
    everything = caplog.text + json.dumps([c.args for c in fake.calls], default=str) + json.dumps(fake.messages)
    for secret in (BOT_TOKEN, APP_TOKEN, SIGNING_SECRET):
        assert secret not in everything


# --------------------------------------------------------------------------- Socket Mode


async def test_socket_mode_mention_starts_a_request(dev_env, tmp_path, chat_settings, fake):
    registry = write_registry(tmp_path, tmp_path / "remote.git", chat_settings.data_dir)
    chat = Chat(chat_settings.model_copy(update={"slack_signing_secret": None}), dev_env.client, registry=registry)
    async with chat.socket_mode():
        assert await asyncio.to_thread(fake.wait_socket, 10), "connected through apps.connections.open"
        assert fake.calls_to("apps.connections.open")
        ts = new_ts()
        payload = mention("change the greeting", user=BOB, channel=CHANNEL, ts=ts)
        first = fake.send_envelope("events_api", payload)
        again = fake.send_envelope("events_api", payload, retry_attempt=1)

        async def acked():
            return fake.acked(first) and fake.acked(again)

        await eventually(acked, timeout=10, what="envelope acks")
        request_id = slack_request_id(TEAM, CHANNEL, ts)
        await started(dev_env.client, request_id)
        await chat.service.drain()
    assert await count_runs(dev_env.client, request_id) == 1
    await terminate(dev_env.client, request_id)


# --------------------------------------------------------------------------- end to end


FEEDBACK_SCRIPT = {
    "replies": [
        *SCRIPT["replies"],
        {
            "when": "greeting",
            "round": 2,
            "feedback": "subtitle",
            "summary": "Subtitle changed as asked.",
            "edits": [
                {
                    "path": "res/values/strings.xml",
                    "replace": "Built by Honk from a chat message.",
                    "with": "Shipped from the bus stop.",
                }
            ],
        },
    ]
}


@pytest.fixture
async def stack_chat(dev_env, tmp_path, task_queue, fake, request):
    options = getattr(request, "param", {})
    stack = Stack(dev_env, tmp_path, task_queue, **options)
    stack.settings = with_slack(stack.settings, fake)  # the notify activity talks to the fake too
    stack.start_worker()
    registry = write_registry(tmp_path, stack.remote, stack.settings.data_dir)
    running = RunningChat(Chat(stack.settings, dev_env.client, registry=registry))
    async with running:
        yield stack, running
    await running.chat.service.drain()
    await stack.close()


def status_updates(fake: SlackFake, channel: str, thread: str) -> tuple[dict, list[str]]:
    posts = [
        c
        for c in fake.calls_to("chat.postMessage")
        if c.args.get("thread_ts") == thread
        and (c.args.get("metadata") or {}).get("event_payload", {}).get("kind") == "status"
    ]
    assert len(posts) == 1, "one status message per request"
    ts = posts[0].response["ts"]
    updates = [c.args["text"] for c in fake.calls_to("chat.update") if c.args["ts"] == ts]
    return fake.message(channel, ts), [posts[0].args["text"], *updates]


def lasted(timeline) -> set[str]:
    """Stages that lasted long enough that their status line must have gone out."""
    stages = [e for e in timeline if e.kind == "stage"]
    return {a.stage.value for a, b in zip(stages, stages[1:], strict=False) if (b.at - a.at).total_seconds() >= 3}


def kind_of(message: dict) -> str | None:
    return (message.get("metadata") or {}).get("event_payload", {}).get("kind")


@needs_android
async def test_end_to_end_mention_to_merge(stack_chat, fake, dev_env):
    stack, chat = stack_chat
    ts = new_ts()
    request_id = slack_request_id(TEAM, CHANNEL, ts)
    assert (
        await chat.event(mention("Change the greeting to say 'Hello from the bus!'", user=BOB, channel=CHANNEL, ts=ts))
        == 200
    )
    await stack.wait_stage(request_id, Stage.AWAITING_APPROVAL, timeout=120)

    async def approval_posted():
        return next((m for m in fake.thread(CHANNEL, ts) if kind_of(m) == "approval"), None)

    approval = await eventually(approval_posted, what="needs-approval message")
    status_message, texts = status_updates(fake, CHANNEL, ts)
    seen = [t.split(":")[0].removeprefix("Honk · ") for t in texts]
    waiting = await get_status(dev_env.client, request_id)
    order = ["RECEIVED", "PREPARING", "EDITING", "CHECKING", "BUILDING", "PUBLISHING", "AWAITING_APPROVAL"]
    # Every stage that lasted is on the status message; one that ended within a second was
    # overtaken by the next line (CHECKING takes no time at all when the agent's own run
    # passed on the pushed tree). The timeline keeps them all.
    assert seen[0] == "RECEIVED" and "AWAITING_APPROVAL" in seen, seen
    assert lasted(waiting.timeline) <= set(seen), seen
    shown = list(dict.fromkeys(s for s in seen if s in order))  # the build notice repeats PUBLISHING
    assert shown == [s for s in order if s in seen], "in the order they happened"
    build = next(m for m in fake.thread(CHANNEL, ts) if kind_of(m) == "build")
    assert waiting.links.install_page and waiting.links.install_page in json.dumps(build["blocks"])
    qr = next(m for m in fake.thread(CHANNEL, ts) if m.get("files"))
    assert fake.uploads[qr["files"][0]["id"]]["data"].startswith(b"\x89PNG")
    buttons = next(b for b in approval["blocks"] if b["type"] == "actions")["elements"]
    assert [b["text"]["text"] for b in buttons] == ["Approve & merge", "Request changes", "Cancel"]
    approve_value = buttons[0]["value"]

    # Mallory is no approver: told privately, and the request keeps waiting.
    assert (
        await chat.action(
            block_action(
                ACTION_APPROVE,
                approve_value,
                user=MALLORY,
                channel=CHANNEL,
                message=approval,
                response_url=fake.response_url(),
            )
        )
        == 200
    )
    await chat.chat.service.drain()
    refusal = fake.ephemerals[-1]
    assert refusal["user"] == MALLORY and refusal["thread_ts"] == ts
    assert f"{MALLORY} is not an approver for hello-android" in refusal["text"]
    await asyncio.sleep(1)
    assert (await get_status(dev_env.client, request_id)).stage == Stage.AWAITING_APPROVAL

    # "Request changes" opens the modal (its submission is covered in the next test's flow).
    await chat.action(
        block_action(
            ACTION_REQUEST_CHANGES,
            approve_value,
            user=BOB,
            channel=CHANNEL,
            message=approval,
            response_url=fake.response_url(),
        )
    )
    await chat.chat.service.drain()
    assert fake.views[-1]["callback_id"] == VIEW_CHANGES
    assert json.loads(fake.views[-1]["private_metadata"])["request_id"] == request_id

    # Alice approves: merged, and the thread says so with the commit.
    assert (
        await chat.action(
            block_action(
                ACTION_APPROVE,
                approve_value,
                user=ALICE,
                channel=CHANNEL,
                message=approval,
                response_url=fake.response_url(),
            )
        )
        == 200
    )
    handle = dev_env.client.get_workflow_handle(request_id, result_type=RequestStatus)
    result = await asyncio.wait_for(handle.result(), 120)
    assert result.stage == Stage.MERGED and result.approved_by == ALICE
    sha = result.links.merged_commit
    assert stack.base_log()[0].startswith(sha)

    async def merged_posted():
        return next((m for m in fake.thread(CHANNEL, ts) if kind_of(m) == "merged"), None)

    merged = await eventually(merged_posted, what="merged reply")
    assert sha in json.dumps(merged["blocks"]) and f"<@{BOB}>" in json.dumps(merged["blocks"])
    status_message, texts = status_updates(fake, CHANNEL, ts)
    assert texts[-1].startswith("Honk · MERGED"), texts
    assert lasted(result.timeline) <= {t.split(":")[0].removeprefix("Honk · ") for t in texts}, texts
    approval_now = fake.message(CHANNEL, approval["ts"])
    assert not any(b["type"] == "actions" for b in approval_now["blocks"]), "no buttons left to press"
    assert any(f"Approved by <@{ALICE}>" in m["text"] for m in fake.thread(CHANNEL, ts))

    await chat.command(
        slash_command(f"status {request_id}", user=BOB, channel=CHANNEL, response_url=fake.response_url())
    )
    await chat.chat.service.drain()
    assert "*MERGED*" in fake.responses[-1]["text"] and sha in fake.responses[-1]["text"]


@needs_android
@pytest.mark.parametrize("stack_chat", [{"slow_check": 4, "script": FEEDBACK_SCRIPT}], indirect=True)
async def test_thread_reply_while_agent_works_is_applied_in_the_next_round(stack_chat, fake, dev_env):
    stack, chat = stack_chat
    ts = new_ts()
    request_id = slack_request_id(TEAM, CHANNEL, ts)
    await chat.event(mention("Change the greeting to say 'Hello from the bus!'", user=BOB, channel=CHANNEL, ts=ts))

    # While round 1 is being checked (the agent's own verifier run, or the CHECKING step),
    # Bob replies in the thread.
    async def slow_check_running():
        return stack.check_started(request_id)

    await eventually(slow_check_running, timeout=60, what="round 1's slow check to start")
    assert (
        await chat.event(
            message_event(
                "Also change the subtitle to say we ship from the bus stop",
                user=BOB,
                channel=CHANNEL,
                ts=new_ts(),
                thread_ts=ts,
            )
        )
        == 200
    )
    await chat.chat.service.drain()
    assert any("queued for the agent's next round" in m["text"] for m in fake.thread(CHANNEL, ts))
    queued = await get_status(dev_env.client, request_id)
    assert queued.round == 1 and [f.by for f in queued.pending_feedback] == [BOB]

    waiting = await stack.wait_stage(request_id, Stage.AWAITING_APPROVAL, timeout=150)
    assert waiting.round == 2, "the reply started the next round"
    assert waiting.last_summary and waiting.last_summary.endswith("Subtitle changed as asked.")
    assert any(f"Feedback from {BOB} queued for the next round" in e.message for e in waiting.timeline)
    assert "Shipped from the bus stop." in stack.remote_file("res/values/strings.xml", waiting.links.work_branch)

    # Request changes through the modal by a stranger: refused privately, nothing queued.
    modal = view_submission(
        VIEW_CHANGES,
        json.dumps({"request_id": request_id, "channel": CHANNEL, "thread_ts": ts}),
        {CHANGES_BLOCK: {CHANGES_INPUT: {"type": "plain_text_input", "value": "make it red"}}},
        user=MALLORY,
    )
    assert await chat.action(modal) == 200
    await chat.chat.service.drain()

    # Mallory is told at once; Bob, the requester, is told privately that Mallory tried.
    async def refused_privately():
        refusals = {
            e["user"]: e["text"] for e in fake.ephemerals if "neither the requester nor an approver" in e["text"]
        }
        return refusals if set(refusals) == {MALLORY, BOB} else None

    refusals = await eventually(refused_privately, what="the refusal, told to Mallory and to the requester")
    assert f"{MALLORY} tried to request changes" in refusals[BOB]
    assert not any(m for m in fake.thread(CHANNEL, ts) if "neither the requester nor an approver" in m["text"])
    assert not (await get_status(dev_env.client, request_id)).pending_feedback

    # "cancel" in the thread works like the button, for the requester.
    await chat.event(message_event("cancel", user=BOB, channel=CHANNEL, ts=new_ts(), thread_ts=ts))
    result = await asyncio.wait_for(
        dev_env.client.get_workflow_handle(request_id, result_type=RequestStatus).result(), 90
    )
    assert result.stage == Stage.CANCELLED and (await get_status(dev_env.client, request_id)).round == 2

    async def cancelled_posted():
        return any(kind_of(m) == "cancelled" for m in fake.thread(CHANNEL, ts))

    await eventually(cancelled_posted, what="cancelled reply")


def test_status_reply_and_status_message_show_the_same_links():
    """One renderer for where a request's work can be seen, in the `/honk status` reply and in
    the status message the notifier keeps up to date; user text escaped in both."""
    links = Links(install_page="https://builds.example.com/7/index.html", work_branch="honk/<x>")
    status = RequestStatus(request_id="honk-1", repo="app", instruction="fix <it>", requester="U0BOB", links=links)
    notice = Notice(
        request_id="honk-1", repo="app", event="status", stage=Stage.BUILDING, text="Building", origin=Origin()
    ).model_copy(update={"links": links})
    reply = blocks.status_text(status)
    _, message = blocks.status_message(notice)
    facts = message[2]["elements"][0]["text"]
    for fact in blocks.link_facts(links):
        assert fact in reply and fact in facts
    assert "<https://builds.example.com/7/index.html|install page>" in reply and "`honk/&lt;x&gt;`" in facts
    assert "fix &lt;it&gt;" in reply
