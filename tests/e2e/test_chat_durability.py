"""The chat service never loses an event it acknowledged: `honk chat` (a real process) is
SIGKILLed after Slack got its 200 but before the request's workflow started (Temporal is a
black hole at that moment); restarted, it starts the request once and says so in the thread."""

from __future__ import annotations

import os
import time

import pytest
from chat_process import ChatProcess
from conftest import eventually
from fault_proxy import HANG, PASS, FaultProxy
from slack_fake import APP_TOKEN, BOT_TOKEN, SIGNING_SECRET, TEAM, SlackFake, mention

from honk.changes import find_request, slack_request_id
from honk.chat.journal import journal_dir

CHANNEL, BOB = "C0MOBILE", "U0BOB"


@pytest.fixture
def chat_env(tmp_path, dev_env, task_queue):
    proxy = FaultProxy.to(dev_env.client.service_client.config.target_host)
    registry = tmp_path / "honk.toml"
    registry.write_text(
        f'[repos.hello-android]\nremote = "{tmp_path / "remote.git"}"\nchannels = ["{CHANNEL}"]\n'
        f'requesters = ["{BOB}"]\napprovers = ["{BOB}"]\n'
    )
    with SlackFake() as fake:
        env = {
            **os.environ,
            "HONK_TEMPORAL_ADDRESS": proxy.address,
            "HONK_TASK_QUEUE": task_queue,
            "HONK_DATA_DIR": str(tmp_path / "data"),
            "HONK_REGISTRY": str(registry),
            "HONK_SLACK_BOT_TOKEN": BOT_TOKEN,
            "HONK_SLACK_APP_TOKEN": APP_TOKEN,
            "HONK_SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "HONK_SLACK_API_URL": fake.api_url,
            "HONK_LOG_LEVEL": "INFO",
        }
        yield env, proxy, fake
    proxy.close()


async def test_chat_killed_between_ack_and_start_starts_the_request_once(tmp_path, dev_env, chat_env):
    env, proxy, fake = chat_env
    first = ChatProcess(tmp_path, env)
    await first.ready()
    ts = f"{int(time.time())}.000100"
    request_id = slack_request_id(TEAM, CHANNEL, ts)
    proxy.set(HANG)  # the workflow service stops answering: the start cannot get through
    assert await first.event(mention("change the greeting", user=BOB, channel=CHANNEL, ts=ts)) == 200
    records = list(journal_dir(tmp_path / "data").glob("*.json"))
    assert len(records) == 1, "the acknowledged event is on disk"
    await eventually(lambda: _async(proxy.refused > 0), timeout=30, what="the start to reach the dead server")
    first.kill()
    assert await find_request(dev_env.client, request_id) is None, "killed before the start"

    proxy.set(PASS)
    second = ChatProcess(tmp_path, env)
    try:
        await second.ready()

        async def started():
            return await find_request(dev_env.client, request_id)

        await eventually(started, timeout=60, what="the replayed request to start")
        replies = await eventually(
            lambda: _async([m for m in fake.thread(CHANNEL, ts) if "restarted" in m["text"]]),
            timeout=30,
            what="a reply in the thread",
        )
        assert len(replies) == 1
        runs = [wf async for wf in dev_env.client.list_workflows(f"WorkflowId = '{request_id}'")]
        assert len(runs) == 1, "started exactly once"
        await eventually(
            lambda: _async(not list(journal_dir(tmp_path / "data").glob("*.json"))),
            timeout=30,
            what="the record to be marked done",
        )
    finally:
        second.kill()
        await dev_env.client.get_workflow_handle(request_id).terminate("test over")


async def _async(value):
    return value
