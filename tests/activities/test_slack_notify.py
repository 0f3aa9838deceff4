"""The Slack notifier against the local Slack fake, through the real slack_sdk client:
one status message updated in place, thread replies per event, QR upload (files v2), exactly
once across activity retries (same host and another host), 429 handling, refusals."""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import timedelta
from pathlib import Path

import pytest
from slack_fake import BOT_TOKEN, SlackFake
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from honk.activities.notify import NotifyActivities
from honk.config.settings import Settings, load_settings
from honk.errors import HonkError
from honk.notify.exactly_once import Attempt
from honk.notify.log_notifier import LogNotifier
from honk.notify.routing import ChatNotifier
from honk.slack.client import (
    ACTION_APPROVE,
    ACTION_CANCEL,
    ACTION_REQUEST_CHANGES,
    METADATA_EVENT,
)
from honk.slack.delivery import SlackNotifier
from honk.workflows.contract import Links, Notice, Origin, Stage

CHANNEL = "C0MOBILE"
THREAD = "1700000000.000100"
REQUEST = f"honk-slack-T0HONK-{CHANNEL}-{THREAD}"
USER = "U0BOB"
SHA = "0123456789abcdef0123456789abcdef01234567"
PAGE = "https://builds.example.com/honk/7/index.html"
APK = "https://builds.example.com/honk/7/app-7.apk"


@pytest.fixture
def fake():
    with SlackFake() as f:
        yield f


def settings_for(fake: SlackFake, data_dir: Path, token: str = BOT_TOKEN) -> Settings:
    return load_settings(
        data_dir=data_dir,
        slack_bot_token=token,
        slack_api_url=fake.api_url,
        registry=data_dir / "missing-registry.toml",
    )


def notice(event: str, stage: Stage, text: str, *, user: str | None = USER, **links: str) -> Notice:
    return Notice(
        request_id=REQUEST,
        repo="hello-android",
        event=event,
        stage=stage,
        text=text,  # type: ignore[arg-type]
        origin=Origin(kind="slack", team="T0HONK", channel=CHANNEL, thread_ts=THREAD, user=user),
        links=Links(work_branch="honk/slack-x", **links),
    )


def attempt_env(number: int, activity_id: str = "7") -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info, attempt=number, activity_id=activity_id, workflow_run_id="run-1", workflow_id=REQUEST
    )
    return env


def replies(fake: SlackFake) -> list[dict]:
    return [
        m
        for m in fake.thread(CHANNEL, THREAD)
        if (m.get("metadata") or {}).get("event_payload", {}).get("kind") != "status"
    ]


def kinds(fake: SlackFake) -> list[str]:
    return [
        (m.get("metadata") or {}).get("event_payload", {}).get("kind", "file" if m.get("files") else "?")
        for m in fake.thread(CHANNEL, THREAD)
    ]


async def test_one_status_message_updated_in_place_and_replies_per_event(fake, tmp_path):
    notifier = SlackNotifier(settings_for(fake, tmp_path))
    await notifier.send(notice("received", Stage.RECEIVED, "On it: make the greeting <b>friendlier</b>"))
    for stage, text in (
        (Stage.PREPARING, "Preparing a workspace"),
        (Stage.EDITING, "Agent editing (round 1)"),
        (Stage.CHECKING, "Running checks"),
        (Stage.BUILDING, "Building android"),
        (Stage.PUBLISHING, "Publishing the build"),
    ):
        await notifier.send(notice("status", stage, text))
    await notifier.send(
        notice("build_ready", Stage.PUBLISHING, f"Build #7 is ready: {PAGE}", install_page=PAGE, build=APK)
    )
    await notifier.send(notice("needs_approval", Stage.AWAITING_APPROVAL, "Ready for review.", install_page=PAGE))
    await notifier.send(
        notice("merged", Stage.MERGED, f"Merged into main as {SHA}", install_page=PAGE, merged_commit=SHA)
    )

    posts = fake.calls_to("chat.postMessage")
    status_posts = [c for c in posts if c.args["metadata"]["event_payload"]["kind"] == "status"]
    assert len(status_posts) == 1, "one status message per request"
    status_ts = status_posts[0].response["ts"]
    updates = [c for c in fake.calls_to("chat.update") if c.args["ts"] == status_ts]
    assert [u.args["text"].split(":")[0] for u in updates] == [
        "Honk · PREPARING",
        "Honk · EDITING",
        "Honk · CHECKING",
        "Honk · BUILDING",
        "Honk · PUBLISHING",
        "Honk · PUBLISHING",
        "Honk · AWAITING_APPROVAL",
        "Honk · MERGED",
    ]
    status = fake.message(CHANNEL, status_ts)
    assert status["thread_ts"] == THREAD and "Merged" in json.dumps(status["blocks"])
    assert "&lt;b&gt;friendlier&lt;/b&gt;" in status_posts[0].args["blocks"][0]["text"]["text"], "user text escaped"

    assert kinds(fake) == ["status", "build", "file", "approval", "merged"]
    build, qr, approval, merged = replies(fake)
    assert PAGE in json.dumps(build["blocks"]) and APK in json.dumps(build["blocks"])
    # The QR image went through the upload v2 flow into the thread.
    assert [
        c.method
        for c in fake.calls
        if c.method in ("files.getUploadURLExternal", "upload", "files.completeUploadExternal")
    ] == ["files.getUploadURLExternal", "upload", "files.completeUploadExternal"]
    assert fake.calls_to("files.completeUploadExternal")[0].args["thread_ts"] == THREAD
    upload = fake.uploads[qr["files"][0]["id"]]
    assert upload["data"].startswith(b"\x89PNG\r\n\x1a\n") and upload["title"] == "Scan to install on your phone"
    # The approval message had three buttons, now closed after the merge.
    posted_approval = next(c for c in posts if c.args["metadata"]["event_payload"]["kind"] == "approval")
    buttons = next(b for b in posted_approval.args["blocks"] if b["type"] == "actions")["elements"]
    assert [b["action_id"] for b in buttons] == [ACTION_APPROVE, ACTION_REQUEST_CHANGES, ACTION_CANCEL]
    assert json.loads(buttons[0]["value"]) == {"request_id": REQUEST, "install_page": PAGE}
    assert "confirm" in buttons[2], "cancel asks for confirmation"
    assert f"<@{USER}>" in posted_approval.args["blocks"][0]["text"]["text"]
    assert not any(b["type"] == "actions" for b in approval["blocks"]), "buttons removed once merged"
    assert SHA in json.dumps(merged["blocks"])
    assert all(m.get("metadata", {}).get("event_type", METADATA_EVENT) == METADATA_EVENT for m in replies(fake))


async def test_retry_after_lost_response_posts_once_same_host_and_other_host(fake, tmp_path):
    build = notice("build_ready", Stage.PUBLISHING, f"Build #7 is ready: {PAGE}", install_page=PAGE)
    first = NotifyActivities(settings_for(fake, tmp_path / "host-a"))
    await first.notify(notice("received", Stage.RECEIVED, "On it"))

    # The message is posted but the answer is lost: the attempt fails and Temporal retries.
    fake.fail("chat.postMessage", 500, apply=True)
    with pytest.raises(ApplicationError) as failed:
        await attempt_env(1).run(first.notify, build)
    assert failed.value.type == "SlackError" and not failed.value.non_retryable

    # Attempt 2 on another host: no state file there, so it looks in the thread first.
    other = NotifyActivities(settings_for(fake, tmp_path / "host-b"))
    await attempt_env(2).run(other.notify, build)
    assert fake.calls_to("conversations.replies"), "a retry elsewhere looks before it posts"
    assert kinds(fake).count("build") == 1, "posted exactly once"
    assert kinds(fake).count("file") == 1
    assert len(fake.calls_to("chat.postMessage")) == 2  # the status message, the "lost" build reply
    status_ts = fake.calls_to("chat.postMessage")[0].response["ts"]
    assert fake.calls_to("chat.update")[-1].args["ts"] == status_ts, "host b found the status message"

    # Attempt 3 on host b again: its state file answers, no lookup and no post.
    lookups, posts = len(fake.calls_to("conversations.replies")), len(fake.calls_to("chat.postMessage"))
    await attempt_env(3).run(other.notify, build)
    assert len(fake.calls_to("conversations.replies")) == lookups
    assert len(fake.calls_to("chat.postMessage")) == posts and len(fake.calls_to("files.getUploadURLExternal")) == 1
    assert kinds(fake).count("build") == 1 and kinds(fake).count("file") == 1


async def test_qr_upload_retried_after_lost_answer_is_not_duplicated(fake, tmp_path):
    activities = NotifyActivities(settings_for(fake, tmp_path))
    build = notice("build_ready", Stage.PUBLISHING, f"Build #7 is ready: {PAGE}", install_page=PAGE)
    fake.fail("files.completeUploadExternal", 500, apply=True)
    with pytest.raises(ApplicationError):
        await attempt_env(1).run(activities.notify, build)
    await attempt_env(2).run(activities.notify, build)
    assert kinds(fake).count("file") == 1 and kinds(fake).count("build") == 1
    assert len(fake.calls_to("files.getUploadURLExternal")) == 1


async def test_first_attempts_never_look_up(fake, tmp_path):
    notifier = SlackNotifier(settings_for(fake, tmp_path))
    await notifier.send(notice("received", Stage.RECEIVED, "On it"), Attempt.of("run-1", "1", 1))
    await notifier.send(notice("status", Stage.PREPARING, "Preparing"), Attempt.of("run-1", "2", 1))
    await notifier.send(notice("needs_approval", Stage.AWAITING_APPROVAL, "Review"), Attempt.of("run-1", "3", 1))
    assert fake.calls_to("conversations.replies") == []


async def test_short_retry_after_is_waited_out(fake, tmp_path):
    notifier = SlackNotifier(settings_for(fake, tmp_path))
    fake.fail("chat.postMessage", 429, retry_after=1)
    await notifier.send(notice("received", Stage.RECEIVED, "On it"))
    calls = fake.calls_to("chat.postMessage")
    assert [c.status for c in calls] == [429, 200]
    assert calls[1].at - calls[0].at >= 1.0, "Retry-After honoured"
    assert kinds(fake) == ["status"]


async def test_long_retry_after_is_handed_to_temporal(fake, tmp_path):
    notifier = SlackNotifier(settings_for(fake, tmp_path))
    fake.fail("chat.postMessage", 429, retry_after=120)
    with pytest.raises(HonkError) as failed:
        await notifier.send(notice("received", Stage.RECEIVED, "On it"))
    assert failed.value.kind == "SlackRateLimited" and failed.value.retryable
    assert failed.value.retry_after == timedelta(seconds=120)
    assert len(fake.calls_to("chat.postMessage")) == 1, "no hammering while rate limited"


async def test_permanent_refusal_is_not_retried(fake, tmp_path):
    notifier = SlackNotifier(settings_for(fake, tmp_path, token="xoxb-wrong-token-000"))
    with pytest.raises(HonkError) as failed:
        await notifier.send(notice("received", Stage.RECEIVED, "On it"))
    assert failed.value.kind == "SlackRefused" and not failed.value.retryable
    assert "invalid_auth" in str(failed.value)


async def test_refusal_is_private_to_the_requester_or_in_the_thread(fake, tmp_path):
    notifier = SlackNotifier(settings_for(fake, tmp_path))
    text = "U0MALLORY tried to approve: U0MALLORY is not an approver for hello-android"
    await notifier.send(notice("refused", Stage.AWAITING_APPROVAL, text))
    assert fake.ephemerals == [
        {"channel": CHANNEL, "user": USER, "text": f":no_entry: {text}", "blocks": None, "thread_ts": THREAD}
    ]
    assert fake.calls_to("chat.postMessage") == [] and fake.calls_to("chat.update") == []
    await notifier.send(notice("refused", Stage.AWAITING_APPROVAL, text, user=None))
    assert kinds(fake) == ["refused"], "without a user: a thread reply"


async def test_failed_expired_cancelled_say_what_happened_and_what_to_do(fake, tmp_path):
    notifier = SlackNotifier(settings_for(fake, tmp_path))
    await notifier.send(notice("needs_approval", Stage.AWAITING_APPROVAL, "Review"))
    await notifier.send(notice("failed", Stage.FAILED, "Failed: checks still failing after 3 attempts:\nboom <x>"))
    failed = replies(fake)[-1]
    text = failed["blocks"][0]["text"]["text"]
    assert "checks still failing" in text and "boom &lt;x&gt;" in text and "What to do" in text
    assert f"honk status {REQUEST}" in text
    assert not any(b["type"] == "actions" for b in replies(fake)[0]["blocks"]), "buttons closed"
    await notifier.send(notice("expired", Stage.EXPIRED, "No decision before the approval deadline"))
    assert "start a new request" in replies(fake)[-1]["blocks"][0]["text"]["text"]
    await notifier.send(notice("cancelled", Stage.CANCELLED, "Cancelled by U0BOB"))
    assert "Cancelled by U0BOB" in replies(fake)[-1]["blocks"][0]["text"]["text"]


async def test_new_round_supersedes_old_buttons(fake, tmp_path):
    notifier = SlackNotifier(settings_for(fake, tmp_path))
    await notifier.send(notice("needs_approval", Stage.AWAITING_APPROVAL, "Review round 1", install_page=PAGE))
    await notifier.send(
        notice("needs_approval", Stage.AWAITING_APPROVAL, "Review round 2", install_page=PAGE.replace("/7/", "/8/"))
    )
    first, second = replies(fake)
    assert not any(b["type"] == "actions" for b in first["blocks"])
    assert "superseded" in json.dumps(first["blocks"])
    assert any(b["type"] == "actions" for b in second["blocks"])


async def test_publish_qr_png_is_used_when_readable(fake, tmp_path):
    png = tmp_path / "qr.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\nfrom-publish")
    notifier = SlackNotifier(settings_for(fake, tmp_path))
    await notifier.send(
        notice("build_ready", Stage.PUBLISHING, "Build ready", install_page=PAGE, install_qr=png.as_uri())
    )
    assert next(iter(fake.uploads.values()))["data"] == png.read_bytes()


async def test_cli_requests_go_to_the_log_only(fake, tmp_path):
    notifier = ChatNotifier(LogNotifier(tmp_path / "notifications"), SlackNotifier(settings_for(fake, tmp_path)))
    cli = notice("received", Stage.RECEIVED, "On it").model_copy(update={"origin": Origin()})
    await notifier.send(cli)
    assert fake.calls == []
    assert (tmp_path / "notifications" / f"{REQUEST}.jsonl").exists()


async def test_no_secret_in_messages_or_logs(fake, tmp_path, caplog):
    notifier = SlackNotifier(settings_for(fake, tmp_path))
    with caplog.at_level(logging.DEBUG):
        await notifier.send(notice("received", Stage.RECEIVED, "On it"))
        await notifier.send(notice("build_ready", Stage.PUBLISHING, "Build ready", install_page=PAGE))
    assert BOT_TOKEN not in caplog.text
    assert BOT_TOKEN not in json.dumps(fake.messages, default=str)
    assert BOT_TOKEN not in repr(settings_for(fake, tmp_path))
