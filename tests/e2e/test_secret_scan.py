"""Leak nothing: an end-to-end request (Slack mention → agent → checks → build → approve →
merge) with secrets configured everywhere, then a scan of what anyone could read — the log
lines, the workflow history, what the fake Slack received and what the fake model received."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest
from anthropic_fake import API_KEY
from conftest import eventually, readable_history
from honkstack import needs_android
from slack_fake import BOT_TOKEN, SIGNING_SECRET, TEAM, block_action, mention
from test_chat import ALICE, BOB, CHANNEL, fake, kind_of, new_ts, stack_chat  # noqa: F401

from honk.changes import slack_request_id
from honk.logs import configure_logging
from honk.slack.client import ACTION_APPROVE
from honk.workflows.contract import RequestStatus, Stage

GIT_PASSWORD = "gitpass-7Hq2vX9mZk"
WORKER_ENV_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzSCANsecret"
LINK_KEY = "link-signing-key-5dd3c1f0a9"


def print_environment_check(app) -> None:
    with (app / ".honk.toml").open("a") as f:
        f.write('\n[[checks]]\nname = "print-env"\nrun = ["env"]\n')


@needs_android
@pytest.mark.parametrize(
    "stack_chat",
    [
        {
            "edit_app": print_environment_check,
            "settings": {"git_username": "honk-bot", "git_password": GIT_PASSWORD, "link_signing_key": LINK_KEY},
        }
    ],
    indirect=True,
)
async def test_no_secret_reaches_logs_history_chat_or_model(stack_chat, fake, dev_env, monkeypatch):  # noqa: F811
    stack, chat = stack_chat
    secrets = {
        "slack bot token": BOT_TOKEN,
        "slack signing secret": SIGNING_SECRET,
        "anthropic key": API_KEY,
        "git password": GIT_PASSWORD,
        "worker env secret": WORKER_ENV_SECRET,
        "link signing key": LINK_KEY,
    }
    # A secret in the worker's own environment: repository commands must not inherit it.
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", WORKER_ENV_SECRET)
    logs = io.StringIO()
    configure_logging("DEBUG", logs)
    try:
        ts = new_ts()
        request_id = slack_request_id(TEAM, CHANNEL, ts)
        assert (
            await chat.event(
                mention("Change the greeting to say 'Hello from the bus!'", user=BOB, channel=CHANNEL, ts=ts)
            )
            == 200
        )
        await stack.wait_stage(request_id, Stage.AWAITING_APPROVAL, timeout=120)

        async def approval_posted():
            return next((m for m in fake.thread(CHANNEL, ts) if kind_of(m) == "approval"), None)

        approval = await eventually(approval_posted, what="needs-approval message")
        value = next(b for b in approval["blocks"] if b["type"] == "actions")["elements"][0]["value"]
        await chat.action(
            block_action(
                ACTION_APPROVE, value, user=ALICE, channel=CHANNEL, message=approval, response_url=fake.response_url()
            )
        )
        handle = dev_env.client.get_workflow_handle(request_id, result_type=RequestStatus)
        assert (await asyncio.wait_for(handle.result(), 120)).stage == Stage.MERGED
        history = readable_history((await handle.fetch_history()).to_json())
    finally:
        logging.getLogger().handlers.clear()

    readable = {
        "logs": logs.getvalue(),
        "workflow history": history,
        "fake Slack (bodies)": json.dumps([c.args for c in fake.calls], default=str),
        "fake Anthropic (bodies)": stack.model.dump(),
    }
    assert "agent run done" in readable["logs"], "the scan saw the worker's logs"
    assert "print-env" in history and "HOME=" in history, "the env-printing check ran and its output is in history"
    assert any(c.method == "chat.postMessage" for c in fake.calls)
    for where, text in readable.items():
        for name, value in secrets.items():
            assert value not in text, f"the {name} leaked into {where}"
