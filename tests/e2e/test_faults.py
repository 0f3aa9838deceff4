"""The fault-injection suite: real workers SIGKILLed in every stage, the Temporal server
restarted while a request waits, 429/529/500 and stalls from the model, Slack and S3, the
chat service killed between acknowledgement and start, a check hanging past its timeout.
Each request must reach the outcome it reaches on a calm day, with no duplicate merge,
message or upload. The module writes fault-summary.json (bench/faults.py prints it)."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import uuid
from datetime import timedelta
from types import SimpleNamespace

import boto3
import pytest
from anthropic_fake import Fault
from chat_process import ChatProcess
from conftest import eventually
from fault_proxy import HANG, PASS, FaultProxy, HttpFaultProxy
from faultstack import FaultLedger, PersistentDevServer, WorkerProcess, duplicates
from git_http import GitHttpServer
from honkstack import Stack, needs_android
from moto_s3 import MotoServer
from slack_fake import APP_TOKEN, BOT_TOKEN, SIGNING_SECRET, TEAM, SlackFake, mention
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from honk.changes import find_request, get_status, slack_request_id, start_request
from honk.config.registry import load_registry
from honk.workflows.contract import Origin, RequestOptions, RequestStatus, Stage

pytestmark = pytest.mark.faults

CHANNEL, BOB = "C0MOBILE", "U0BOB"
GIT_USER, GIT_PASSWORD = "honk-bot", "fault-suite-password-7c1d"
LEDGER = FaultLedger()


@pytest.fixture(scope="module", autouse=True)
def summary():
    yield LEDGER
    LEDGER.write()


def slow_build(app) -> None:
    """The APK build takes a few seconds longer, so a kill lands inside it."""
    config = app / ".honk.toml"
    config.write_text(
        config.read_text().replace(
            'run = ["python3", "tools/build_apk.py", "--out", "build"]',
            'run = ["python3", "-c", "import runpy, sys, time; time.sleep(5); sys.argv = [\'tools/build_apk.py\', '
            "'--out', 'build']; runpy.run_path('tools/build_apk.py', run_name='__main__')\"]",
        )
    )


def as_env(settings: dict[str, object]) -> dict[str, str]:
    return {f"HONK_{key.upper()}": str(value) for key, value in settings.items()}


@needs_android
async def test_one_request_through_every_fault_merges_exactly_once(tmp_path, task_queue):
    server = PersistentDevServer(tmp_path)
    server.start()
    moto = MotoServer(tmp_path / "moto.log")
    s3 = HttpFaultProxy(moto.endpoint)
    slack = SlackFake().start()
    git_server = GitHttpServer(tmp_path / "remotes", GIT_USER, GIT_PASSWORD)
    threading.Thread(target=git_server.serve_forever, daemon=True).start()
    git = FaultProxy("127.0.0.1", git_server.server_address[1])
    workers: list[WorkerProcess] = []
    try:
        client = await Client.connect(server.address, data_converter=pydantic_data_converter)
        bucket = f"honk-{uuid.uuid4().hex[:10]}"
        s3_settings = {
            "artifact_store": "s3",
            "s3_bucket": bucket,
            "s3_endpoint_url": s3.url,
            "s3_region": "eu-west-1",
            "s3_access_key_id": "AKIAHONKTEST",
            "s3_secret_access_key": "honk-test-secret",
        }
        boto3.client(
            "s3",
            endpoint_url=moto.endpoint,
            region_name="eu-west-1",
            aws_access_key_id="AKIAHONKTEST",
            aws_secret_access_key="honk-test-secret",
        ).create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        extra = {**s3_settings, "slack_bot_token": BOT_TOKEN, "slack_api_url": slack.api_url}
        stack = Stack(
            SimpleNamespace(client=client), tmp_path, task_queue, slow_check=5, edit_app=slow_build, settings=extra
        )
        registry_file = tmp_path / "honk.toml"
        remote = f"http://{git.address}/hello-android.git"  # the worker has the credentials
        registry_file.write_text(
            f'[repos.hello-android]\nremote = "{remote}"\napprovers = ["alice"]\nmerge_strategy = "squash"\n'
        )
        stack.registry = load_registry(registry_file, stack.settings.data_dir)
        env = {**stack.cli_env(), **as_env(extra), "HONK_GIT_USERNAME": GIT_USER, "HONK_GIT_PASSWORD": GIT_PASSWORD}

        def restart() -> None:
            workers[-1].kill()
            workers.append(WorkerProcess(env, tmp_path / "worker.log"))

        async def inside(stage: Stage, fault: str, signal_of_fault) -> None:
            await stack.wait_stage(request_id, stage, timeout=180)
            await eventually(signal_of_fault, timeout=60, every=0.2, what=f"{fault} to bite")
            restart()
            LEDGER.injected(fault)

        async def yes(value):
            return value

        workers.append(WorkerProcess(env, tmp_path / "worker.log"))
        stack.model.inject(Fault(429, retry_after=0.5), Fault(529), Fault(500), Fault(200, delay=15))
        slack.fail("chat.postMessage", 429, retry_after=1)
        slack.fail("chat.update", 500, apply=True)  # done, but answered as failed: a retry must not repeat it
        ts = f"{int(time.time())}.000200"
        request_id = slack_request_id(TEAM, CHANNEL, ts)
        git.set(HANG)
        handle = await start_request(
            client,
            stack.settings,
            stack.registry,
            repo="hello-android",
            instruction="Change the greeting to say 'Hello from the bus!'",
            requester="bob",
            origin=Origin(kind="slack", team=TEAM, channel=CHANNEL, thread_ts=ts, user=BOB),
            request_id=request_id,
            options=RequestOptions(heartbeat_timeout=timedelta(seconds=5)),
        )
        await inside(Stage.PREPARING, "worker SIGKILL while preparing (git remote hanging)", lambda: yes(git.refused))
        git.set(PASS)
        await inside(
            Stage.EDITING,
            "worker SIGKILL while editing (model reply stalled)",
            lambda: yes(len(stack.model.requests) >= 4),
        )
        statuses = [r.status for r in stack.model.requests]
        for status in (429, 529, 500):
            assert status in statuses, statuses
            LEDGER.injected(f"model answered {status}")
        await inside(Stage.CHECKING, "worker SIGKILL while checking", lambda: yes(True))
        await inside(Stage.BUILDING, "worker SIGKILL while building", lambda: yes(True))
        s3.fail(503, only=("PUT", ".apk"))
        await eventually(lambda: yes(s3.hits >= 2), timeout=120, what="S3 to refuse the upload")
        LEDGER.injected("S3 answered 503")
        s3.hits = 0
        s3.hang(only=("PUT", "/index.html"))
        await inside(Stage.PUBLISHING, "worker SIGKILL while publishing (S3 hanging)", lambda: yes(s3.hits))
        s3.heal()
        waiting = await stack.wait_stage(request_id, Stage.AWAITING_APPROVAL, timeout=180)
        assert waiting.links.install_page

        server.stop()  # the server goes away while the request waits for its approver
        server.start()
        LEDGER.injected("Temporal server restarted while awaiting approval")

        async def answers():
            try:
                return await get_status(client, request_id)
            except Exception:
                return None

        assert (await eventually(answers, timeout=90, every=1, what="the server back")).stage == Stage.AWAITING_APPROVAL
        git.set(HANG)
        await handle.signal("approve", {"by": "alice"})
        await inside(Stage.MERGING, "worker SIGKILL while merging (git remote hanging)", lambda: yes(git.refused > 1))
        git.set(PASS)
        result: RequestStatus = await asyncio.wait_for(
            client.get_workflow_handle(request_id, result_type=RequestStatus).result(), 240
        )
        LEDGER.outcome(request_id, "MERGED", result.stage.value)
        assert result.stage == Stage.MERGED, result.last_error
        for method, status in (("chat.postMessage", 429), ("chat.update", 500)):
            assert any(c.status == status for c in slack.calls_to(method)), f"{method} {status} never happened"
            LEDGER.injected(f"Slack {method} answered {status}")

        merges = [sha for sha in stack.honk_commits() if request_id in stack.commit_message(sha)]
        LEDGER.duplicate_merges += max(0, len(merges) - 1)
        thread = slack.thread(CHANNEL, ts)
        LEDGER.duplicate_messages += duplicates([m["text"] + json.dumps(m.get("blocks") or []) for m in thread])
        LEDGER.duplicate_uploads += duplicates([u["name"] for u in slack.uploads.values()])
        assert len(merges) == 1 and "Hello from the bus!" in stack.remote_file("res/values/strings.xml")
        assert LEDGER.duplicate_messages == 0, [m["text"] for m in thread]
        assert LEDGER.duplicate_uploads == 0
    finally:
        for worker in workers:
            worker.kill()
        git.close()
        git_server.shutdown()
        s3.close()
        moto.stop()
        slack.stop()
        server.stop()
        if "stack" in locals():
            stack.model.stop()


async def test_chat_killed_between_ack_and_start(tmp_path, dev_env, task_queue):
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
        }
        first = ChatProcess(tmp_path, env)
        await first.ready()
        ts = f"{int(time.time())}.000300"
        request_id = slack_request_id(TEAM, CHANNEL, ts)
        proxy.set(HANG)
        assert await first.event(mention("change the greeting", user=BOB, channel=CHANNEL, ts=ts)) == 200

        async def stalled():
            return proxy.refused > 0

        await eventually(stalled, timeout=30, what="the start to stall")
        first.kill()
        LEDGER.injected("chat service SIGKILL between ack and start")
        proxy.set(PASS)
        second = ChatProcess(tmp_path, env)
        try:
            await second.ready()

            async def started():
                return await find_request(dev_env.client, request_id)

            found = await eventually(started, timeout=60, what="the request to start")
            LEDGER.outcome(request_id, "started", "started" if found else "lost")

            async def replied():
                return fake.thread(CHANNEL, ts)

            thread = await eventually(replied, timeout=30, what="a reply in the thread")
            LEDGER.duplicate_messages += duplicates([m["text"] for m in thread])
            runs = [wf async for wf in dev_env.client.list_workflows(f"WorkflowId = '{request_id}'")]
            assert len(runs) == 1
        finally:
            second.kill()
            proxy.close()
            await dev_env.client.get_workflow_handle(request_id).terminate("test over")
