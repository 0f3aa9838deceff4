"""The whole pipeline on a real Temporal dev server with the real activities: real git
remotes on disk, real subprocess checks, the real APK build, the local artifact store."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import BIN, ROOT, eventually
from honkstack import Stack, needs_android

from honk.changes import get_status, list_requests
from honk.workflows.contract import Stage

pytestmark = needs_android


@pytest.fixture
async def stack(dev_env, tmp_path, task_queue):
    s = Stack(dev_env, tmp_path, task_queue)
    s.start_worker()
    yield s
    await s.close()


def temporal_cli(env, *args: str) -> subprocess.CompletedProcess:
    address = env.client.service_client.config.target_host
    return subprocess.run(
        [str(BIN / "temporal"), *args, "--address", address], capture_output=True, text=True, timeout=60
    )


async def test_pipeline_merges_real_change_with_trailers(stack):
    handle = await stack.request("Change the greeting to say 'Hello from the bus!'")
    waiting = await stack.wait_stage(handle.id, Stage.AWAITING_APPROVAL)

    # The build is published and installable before anything merges.
    apk = Path(next(a.path for a in waiting.artifacts if a.name.endswith(".apk")))
    verify = subprocess.run(["apksigner", "verify", str(apk)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    badging = subprocess.run(["aapt", "dump", "badging", str(apk)], capture_output=True, text=True).stdout
    assert "package: name='dev.honk.hello'" in badging
    page = waiting.links.install_page
    assert page and "Hello from the bus!" not in stack.remote_file("res/values/strings.xml")
    assert waiting.links.work_branch in stack.remote_branches()

    # `honk list --stage AWAITING_APPROVAL` shows it (the CLI, as a user runs it).
    listed = subprocess.run(
        [sys.executable, "-m", "honk.cli", "list", "--stage", "AWAITING_APPROVAL", "--json"],
        capture_output=True,
        text=True,
        env=stack.cli_env(),
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert handle.id in [row["request_id"] for row in json.loads(listed.stdout)]

    await handle.signal("approve", {"by": "alice"})
    result = await asyncio.wait_for(handle.result(), 90)
    assert result.stage == Stage.MERGED, result.last_error

    sha = result.links.merged_commit
    assert stack.base_log()[0].startswith(sha)
    message = stack.commit_message(sha)
    assert f"Honk-Request: {handle.id}" in message
    assert "Requested-by: bob" in message and "Approved-by: alice" in message
    assert "Hello from the bus!" in stack.remote_file("res/values/strings.xml")
    assert waiting.links.work_branch not in stack.remote_branches(), "work branch cleaned up"
    assert len(stack.base_log()) == 2, "exactly one new commit on the base"


async def test_checks_fail_then_agent_repairs_with_real_check_output(stack):
    handle = await stack.request("Add a farewell line, broken first")
    waiting = await stack.wait_stage(handle.id, Stage.AWAITING_APPROVAL)
    assert waiting.attempt == 2
    failed = [e.message for e in waiting.timeline if "Checks failed" in e.message]
    assert failed and "resources FAILED" in failed[0]
    await handle.signal("approve", {"by": "alice"})
    result = await asyncio.wait_for(handle.result(), 90)
    assert result.stage == Stage.MERGED
    assert "farewell" in stack.remote_file("res/values/strings.xml")


async def test_stock_temporal_cli_signal_approves_only_for_approver(stack, dev_env):
    handle = await stack.request("Change the greeting to say 'Hello from the bus!'")
    await stack.wait_stage(handle.id, Stage.AWAITING_APPROVAL)

    refused = temporal_cli(
        dev_env, "workflow", "signal", "--workflow-id", handle.id, "--name", "approve", "--input", '{"by":"mallory"}'
    )
    assert refused.returncode == 0, refused.stderr

    async def refusal_recorded():
        s = await get_status(dev_env.client, handle.id)
        return s if any(e.kind == "refused" for e in s.timeline) else None

    status = await eventually(refusal_recorded, what="refusal in timeline")
    assert status.stage == Stage.AWAITING_APPROVAL
    assert "mallory is not an approver" in [e for e in status.timeline if e.kind == "refused"][0].message
    await asyncio.sleep(1)
    assert (await get_status(dev_env.client, handle.id)).stage == Stage.AWAITING_APPROVAL

    approved = temporal_cli(
        dev_env, "workflow", "signal", "--workflow-id", handle.id, "--name", "approve", "--input", '{"by":"alice"}'
    )
    assert approved.returncode == 0, approved.stderr
    result = await asyncio.wait_for(handle.result(), 90)
    assert result.stage == Stage.MERGED and result.approved_by == "alice"


async def test_waiting_request_visible_in_list_and_ui_filter(stack, dev_env, ui_port):
    handle = await stack.request("Change the greeting to say 'Hello from the bus!'")
    await stack.wait_stage(handle.id, Stage.AWAITING_APPROVAL)

    async def listed():
        rows = await list_requests(dev_env.client, stage="AWAITING_APPROVAL", repo="hello-android")
        return handle.id in [r.request_id for r in rows]

    await eventually(listed, what="visibility to index the stage")
    # The Temporal UI's list filter calls this HTTP API with the same visibility query.
    ui = f"http://127.0.0.1:{ui_port}"
    query = urllib.parse.quote("HonkStage='AWAITING_APPROVAL'")
    with urllib.request.urlopen(f"{ui}/api/v1/namespaces/default/workflows?query={query}", timeout=10) as resp:
        body = json.load(resp)
    assert handle.id in [e["execution"]["workflowId"] for e in body.get("executions", [])]
    await handle.signal("cancel", {"by": "bob"})
    assert (await asyncio.wait_for(handle.result(), 60)).stage == Stage.CANCELLED


async def test_worker_killed_mid_request_still_merges_exactly_once(dev_env, tmp_path, task_queue):
    stack = Stack(dev_env, tmp_path, task_queue, slow_check=4)
    env = stack.cli_env()

    def spawn() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "honk.cli", "worker"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "worker.log").open("ab"),
            start_new_session=True,
        )

    first = spawn()
    try:
        handle = await stack.request(
            "Change the greeting to say 'Hello from the bus!'", heartbeat_timeout=timedelta(seconds=5)
        )

        # Kill the worker inside the slow check, whichever step runs it (the agent's own
        # verifier run or the CHECKING stage).
        async def slow_check_running():
            return stack.check_started(handle.id)

        await eventually(slow_check_running, timeout=120, what="the slow check to start")
        await asyncio.sleep(1)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        second = spawn()
        try:
            await stack.wait_stage(handle.id, Stage.AWAITING_APPROVAL, timeout=120)
            await handle.signal("approve", {"by": "alice"})
            result = await asyncio.wait_for(handle.result(), 120)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=60) == 0, "graceful shutdown on SIGTERM"
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert result.stage == Stage.MERGED, result.last_error
    merged = [line for line in stack.base_log() if line != stack.base_log()[-1]]
    assert len(merged) == 1, "merged exactly once"
    assert stack.commit_message(result.links.merged_commit).count("Honk-Request:") == 1
    history = [e async for e in handle.fetch_history_events()]
    retried = [
        e
        for e in history
        if e.HasField("activity_task_started_event_attributes") and e.activity_task_started_event_attributes.attempt > 1
    ]
    assert retried, "the killed worker's step was retried by the new worker"
