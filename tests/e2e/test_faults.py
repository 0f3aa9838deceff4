"""The fault-injection suite: real workers SIGKILLed in every stage, the Temporal server
restarted while a request waits, 429/529/500 and stalls from the model, Slack and S3, the
chat service killed between acknowledgement and start, a check hanging past its timeout.
Each request must reach the outcome it reaches on a calm day, with no duplicate merge,
message or upload. The module writes fault-summary.json (bench/faults.py prints it)."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from anthropic_fake import Fault
from chat_process import ChatProcess
from conftest import eventually
from fault_proxy import HANG, PASS, FaultProxy
from faultstack import FaultLedger, FaultWorld, duplicates
from honkstack import needs_android
from slack_fake import APP_TOKEN, BOT_TOKEN, SIGNING_SECRET, TEAM, SlackFake, mention

from honk.changes import find_request, get_status, slack_request_id
from honk.workflows.contract import RequestStatus, Stage

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


async def yes(value):
    return value


async def inside(world: FaultWorld, request_id: str, stage: Stage, fault: str, bites) -> None:
    """Once the request is in `stage` and the fault has hit (`bites()`), SIGKILL the worker
    and start a new one."""
    await world.stack.wait_stage(request_id, stage, timeout=180)
    await eventually(bites, timeout=60, every=0.2, what=f"{fault} to bite")
    world.restart_worker()
    LEDGER.injected(fault)


@needs_android
async def test_one_request_through_every_fault_merges_exactly_once(tmp_path, task_queue):
    async with FaultWorld(tmp_path, task_queue, slow_check=5, edit_app=slow_build) as world:
        stack, git, s3, slack, client = world.stack, world.git, world.s3, world.slack, world.client
        stack.model.inject(Fault(429, retry_after=0.5), Fault(529), Fault(500), Fault(200, delay=15))
        slack.fail("chat.postMessage", 429, retry_after=1)
        slack.fail("chat.update", 500, apply=True)  # done, but answered as failed: a retry must not repeat it
        ts = f"{int(time.time())}.000200"
        git.set(HANG)
        handle = await world.request("Change the greeting to say 'Hello from the bus!'", ts)
        request_id = handle.id
        await inside(
            world,
            request_id,
            Stage.PREPARING,
            "worker SIGKILL while preparing (git remote hanging)",
            lambda: yes(git.refused),
        )
        git.set(PASS)
        await inside(
            world,
            request_id,
            Stage.EDITING,
            "worker SIGKILL while editing (model reply stalled)",
            lambda: yes(len(stack.model.requests) >= 4),
        )
        statuses = [r.status for r in stack.model.requests]
        for status in (429, 529, 500):
            assert status in statuses, statuses
            LEDGER.injected(f"model answered {status}")
        # The slow check runs in the agent's own verifier run (or, failing that, the CHECKING step).
        await eventually(lambda: yes(stack.check_started(request_id)), timeout=180)
        world.restart_worker()
        LEDGER.injected("worker SIGKILL while checking")
        await inside(world, request_id, Stage.BUILDING, "worker SIGKILL while building", lambda: yes(True))
        s3.fail(503, only=("PUT", ".apk"))
        await eventually(lambda: yes(s3.hits >= 2), timeout=120, what="S3 to refuse the upload")
        LEDGER.injected("S3 answered 503")
        s3.hits = 0
        s3.hang(only=("PUT", "/index.html"))
        await inside(
            world, request_id, Stage.PUBLISHING, "worker SIGKILL while publishing (S3 hanging)", lambda: yes(s3.hits)
        )
        s3.heal()
        waiting = await stack.wait_stage(request_id, Stage.AWAITING_APPROVAL, timeout=180)
        assert waiting.links.install_page

        world.server.stop()  # the server goes away while the request waits for its approver
        world.server.start()
        LEDGER.injected("Temporal server restarted while awaiting approval")

        async def answers():
            try:
                return await get_status(client, request_id)
            except Exception:
                return None

        assert (await eventually(answers, timeout=90, every=1, what="the server back")).stage == Stage.AWAITING_APPROVAL
        git.set(HANG)
        await handle.signal("approve", {"by": "alice"})
        await inside(
            world,
            request_id,
            Stage.MERGING,
            "worker SIGKILL while merging (git remote hanging)",
            lambda: yes(git.refused > 1),
        )
        git.set(PASS)
        result: RequestStatus = await asyncio.wait_for(
            client.get_workflow_handle(request_id, result_type=RequestStatus).result(), 240
        )
        LEDGER.outcome(request_id, "MERGED", result.stage.value)
        assert result.stage == Stage.MERGED, result.last_error
        for method, status in (("chat.postMessage", 429), ("chat.update", 500)):
            assert any(c.status == status for c in slack.calls_to(method)), f"{method} {status} never happened"
            LEDGER.injected(f"Slack {method} answered {status}")
        before = LEDGER.summary()
        merges = world.count_duplicates(LEDGER, request_id, ts)
        assert len(merges) == 1 and "Hello from the bus!" in stack.remote_file("res/values/strings.xml")
        assert LEDGER.summary() == before, "no duplicate merge, message or upload"


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


def test_check_hanging_past_its_timeout_is_a_clear_failure(tmp_path):
    """A check that never ends is stopped at its timeout (with everything it started) and
    reported as such, so the agent's next round and the person see why."""
    import subprocess

    from honk.activities.checks import CheckActivities
    from honk.config.settings import load_settings
    from honk.workflows.contract import ChecksTask, WorkspaceRef
    from honk.workspace import Workspaces

    src, remote = tmp_path / "src", tmp_path / "remote.git"
    src.mkdir()

    def git(*args: str, cwd=src) -> None:
        subprocess.run(["git", "-c", "user.name=T", "-c", "user.email=t@example.com", *args], cwd=cwd, check=True)

    git("init", "-q", "-b", "main")
    (src / ".honk.toml").write_text('[[checks]]\nname = "hangs"\nrun = ["sleep", "987.6"]\ntimeout_seconds = 2\n')
    git("add", "-A")
    git("commit", "-q", "-m", "base")
    git("checkout", "-q", "-b", "honk/hang-1")
    git("clone", "-q", "--bare", str(src), str(remote), cwd=tmp_path)
    settings = load_settings(data_dir=tmp_path / "data")
    ref = WorkspaceRef(
        request_id="honk-hang-1", repo="demo", remote=str(remote), base_branch="main", work_branch="honk/hang-1"
    )
    started = time.monotonic()
    outcome = CheckActivities(settings, Workspaces(settings)).run_checks(ChecksTask(workspace=ref, attempt=1))
    LEDGER.injected("check hanging past its timeout")
    assert outcome.runs[0].timed_out and not outcome.passed
    assert "timed out" in outcome.failure_report()
    assert time.monotonic() - started < 60
    LEDGER.outcome("honk-hang-1", "check timed out", "check timed out")


@needs_android
async def test_git_remote_down_for_a_minute_during_merge_still_merges_once(tmp_path, task_queue):
    async with FaultWorld(tmp_path, task_queue) as world:
        ts = f"{int(time.time())}.000400"
        handle = await world.request("Change the greeting to say 'Hello from the bus!'", ts)
        await world.stack.wait_stage(handle.id, Stage.AWAITING_APPROVAL, timeout=240)
        world.git.refuse_for(60)
        LEDGER.injected("git remote unreachable for 60 s during merge")
        await handle.signal("approve", {"by": "alice"})
        result: RequestStatus = await asyncio.wait_for(
            world.client.get_workflow_handle(handle.id, result_type=RequestStatus).result(), 300
        )
        LEDGER.outcome(handle.id, "MERGED", result.stage.value)
        assert world.git.refused > 0, "the outage hit the merge"
        merges = world.count_duplicates(LEDGER, handle.id, ts)
        assert result.stage == Stage.MERGED, result.last_error
        assert len(merges) == 1


def no_worker_queue(app) -> None:
    config = app / ".honk.toml"
    config.write_text(config.read_text().replace('name = "android"', 'name = "android"\ntask_queue = "honk-nobody"', 1))


@needs_android
@pytest.mark.slow
async def test_build_queue_without_worker_fails_naming_the_queue(tmp_path, task_queue):
    async with FaultWorld(tmp_path, task_queue, edit_app=no_worker_queue) as world:
        ts = f"{int(time.time())}.000500"
        handle = await world.request("Change the greeting to say 'Hello from the bus!'", ts)
        LEDGER.injected("build queue with no worker")
        await world.stack.wait_stage(handle.id, Stage.BUILDING, timeout=240)

        async def told():
            status = await get_status(world.client, handle.id)
            said = [status.last_error or "", *(e.message for e in status.timeline)]
            return any("honk-nobody" in text and "no worker" in text for text in said)

        await eventually(told, timeout=600, every=2, what="a failure naming the queue")
        LEDGER.outcome(handle.id, "no worker named", "no worker named")
