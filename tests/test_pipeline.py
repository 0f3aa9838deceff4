"""The whole pipeline on a real Temporal dev server with the real activities: real git
remotes on disk, real subprocess checks, the real APK build, the local artifact store."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from datetime import timedelta
from pathlib import Path

import git
import pytest

from conftest import BIN, ROOT, eventually
from honk.changes import RequestError, get_status, list_requests, start_request
from honk.demo import SAMPLE_APP, create_remote
from honk.registry import load_registry
from honk.settings import load_settings
from workers.main import build_workers, run_workers
from workflows.contract import RequestOptions, RequestStatus, Stage

needs_android = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("aapt", "zipalign", "apksigner", "java")),
    reason="Android build tools are installed by `make test`",
)
pytestmark = needs_android

SCRIPT = {
    "replies": [
        {"when": "greeting", "round": 1, "summary": "Greeting changed.",
         "edits": [{"path": "res/values/strings.xml", "replace": "Hello from Honk!",
                    "with": "Hello from the bus!"}]},
        {"when": "broken first", "attempt": 1, "summary": "Added a farewell line (forgot the string).",
         "edits": [{"path": "res/layout/activity_main.xml", "replace": "android:text=\"@string/subtitle\"",
                    "with": "android:text=\"@string/farewell\""}]},
        {"when": "broken first", "attempt": 2, "feedback": "farewell", "summary": "Defined the farewell string.",
         "edits": [{"path": "res/values/strings.xml", "replace": "</resources>",
                    "with": "    <string name=\"farewell\">See you on the bus.</string>\n</resources>"}]},
    ]
}


class Stack:
    def __init__(self, env, tmp: Path, task_queue: str, *, slow_check: float = 0) -> None:
        self.env = env
        self.tmp = tmp
        self.script = tmp / "model.json"
        self.script.write_text(json.dumps(SCRIPT))
        self.settings = load_settings(
            data_dir=tmp / "data", task_queue=task_queue, agent_script=self.script,
            temporal_address=env.client.service_client.config.target_host,
        )
        app = tmp / "app-src"
        shutil.copytree(SAMPLE_APP, app, ignore=shutil.ignore_patterns("build"))
        if slow_check:
            with (app / ".honk.toml").open("a") as f:
                f.write(f'\n[[checks]]\nname = "slow"\nrun = ["python3", "-c", "import time; time.sleep({slow_check})"]\n')
        self.remote = create_remote(app, tmp / "remotes" / "hello-android.git")
        registry = tmp / "honk.toml"
        registry.write_text(
            f'[repos.hello-android]\nremote = "{self.remote}"\napprovers = ["alice"]\n'
        )
        self.registry = load_registry(registry, self.settings.data_dir)
        self.stop = asyncio.Event()
        self.task: asyncio.Task | None = None

    def start_worker(self) -> None:
        workers = build_workers(self.env.client, self.settings)
        self.task = asyncio.create_task(run_workers(workers, self.stop))

    async def request(self, instruction: str, **options):
        return await start_request(
            self.env.client, self.settings, self.registry, repo="hello-android",
            instruction=instruction, requester="bob",
            options=RequestOptions(**options) if options else None,
        )

    async def wait_stage(self, request_id: str, stage: Stage, timeout: float = 90) -> RequestStatus:
        async def probe():
            try:
                status = await get_status(self.env.client, request_id)
            except RequestError:  # e.g. a query routed to a worker that was just killed
                return None
            if status.stage.terminal and status.stage != stage:
                raise AssertionError(f"ended {status.stage.value}: {status.last_error}")
            return status if status.stage == stage else None

        return await eventually(probe, timeout=timeout, every=0.3, what=stage.value)

    def cli_env(self) -> dict[str, str]:
        return {**os.environ, "HONK_TEMPORAL_ADDRESS": self.settings.temporal_address,
                "HONK_TASK_QUEUE": self.settings.task_queue, "HONK_DATA_DIR": str(self.settings.data_dir),
                "HONK_AGENT_SCRIPT": str(self.script), "HONK_LOG_LEVEL": "INFO"}

    def base_log(self) -> list[str]:
        return git.Repo(self.remote).git.log("main", "--format=%H %s").splitlines()

    def commit_message(self, sha: str) -> str:
        return git.Repo(self.remote).git.log("-1", "--format=%B", sha)

    def remote_file(self, path: str, ref: str = "main") -> str:
        return git.Repo(self.remote).git.show(f"{ref}:{path}")

    def remote_branches(self) -> list[str]:
        return [h.name for h in git.Repo(self.remote).heads]

    async def close(self) -> None:
        self.stop.set()
        if self.task:
            await self.task


@pytest.fixture
async def stack(dev_env, tmp_path, task_queue):
    s = Stack(dev_env, tmp_path, task_queue)
    s.start_worker()
    yield s
    await s.close()


def temporal_cli(env, *args: str) -> subprocess.CompletedProcess:
    address = env.client.service_client.config.target_host
    return subprocess.run([str(BIN / "temporal"), *args, "--address", address],
                          capture_output=True, text=True, timeout=60)


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
    listed = subprocess.run([sys.executable, "-m", "honk.cli", "list", "--stage", "AWAITING_APPROVAL", "--json"],
                            capture_output=True, text=True, env=stack.cli_env(), timeout=60)
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

    refused = temporal_cli(dev_env, "workflow", "signal", "--workflow-id", handle.id,
                           "--name", "approve", "--input", '{"by":"mallory"}')
    assert refused.returncode == 0, refused.stderr

    async def refusal_recorded():
        s = await get_status(dev_env.client, handle.id)
        return s if any(e.kind == "refused" for e in s.timeline) else None

    status = await eventually(refusal_recorded, what="refusal in timeline")
    assert status.stage == Stage.AWAITING_APPROVAL
    assert "mallory is not an approver" in [e for e in status.timeline if e.kind == "refused"][0].message
    await asyncio.sleep(1)
    assert (await get_status(dev_env.client, handle.id)).stage == Stage.AWAITING_APPROVAL

    approved = temporal_cli(dev_env, "workflow", "signal", "--workflow-id", handle.id,
                            "--name", "approve", "--input", '{"by":"alice"}')
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
        return subprocess.Popen([sys.executable, "-m", "honk.cli", "worker"], env=env, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=(tmp_path / "worker.log").open("ab"),
                                start_new_session=True)

    first = spawn()
    try:
        handle = await stack.request("Change the greeting to say 'Hello from the bus!'",
                                     heartbeat_timeout=timedelta(seconds=5))
        await stack.wait_stage(handle.id, Stage.CHECKING)
        await asyncio.sleep(1)  # inside the slow check
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
    retried = [e for e in history if e.HasField("activity_task_started_event_attributes")
               and e.activity_task_started_event_attributes.attempt > 1]
    assert retried, "the killed worker's step was retried by the new worker"
