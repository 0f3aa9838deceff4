"""`honk replay` before a deploy: each running request of the namespace is replayed against
the local code and reported compatible or not; the command fails when one is not."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from changed_workflows import ExtraNotification
from conftest import BIN, ROOT, eventually, honk_plugin
from temporalio import activity
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from honk.workflows.change_request import ChangeRequestWorkflow
from honk.workflows.contract import (
    ACTIVITY_NOTIFY,
    ACTIVITY_PREPARE,
    SEARCH_ATTRIBUTES,
    ChangeRequest,
    Notice,
    PreparedWorkspace,
    WorkspaceRef,
)


@activity.defn(name=ACTIVITY_NOTIFY)
async def notify(notice: Notice) -> None:
    return None


@activity.defn(name=ACTIVITY_PREPARE)
async def prepare(ref: WorkspaceRef) -> PreparedWorkspace:
    await asyncio.Event().wait()  # the request stays running, parked in PREPARING
    raise AssertionError("unreachable")


def request() -> ChangeRequest:
    return ChangeRequest(repo="app", remote="file:///nowhere.git", instruction="fix it", requester="bob")


async def start_running(env: WorkflowEnvironment, workflow: type, workflow_id: str) -> None:
    """Run `workflow` until it has scheduled the prepare step, then stop its worker."""
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    async with Worker(env.client, task_queue=queue, workflows=[workflow], activities=[notify, prepare]):
        handle = await env.client.start_workflow(workflow.run, request(), id=workflow_id, task_queue=queue)

        async def prepare_scheduled() -> bool:
            history = await handle.fetch_history()
            return any(
                e.activity_task_scheduled_event_attributes.activity_type.name == ACTIVITY_PREPARE
                for e in history.events
            )

        await eventually(prepare_scheduled, what="the prepare step to be scheduled")


def honk_replay(env: WorkflowEnvironment, tmp_path: Path) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HONK_")}
    environ |= {
        "HONK_TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "HONK_DATA_DIR": str(tmp_path / "data"),
    }
    return subprocess.run(
        [sys.executable, "-m", "honk.cli", "replay", "--json"],
        env=environ,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_replay_reports_each_running_request_and_fails_on_an_incompatible_one(tmp_path):
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
        plugins=[honk_plugin()],
        dev_server_log_level="error",
    )
    try:
        await start_running(env, ChangeRequestWorkflow, "honk-app-current")
        ok = await asyncio.to_thread(honk_replay, env, tmp_path)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert json.loads(ok.stdout) == [
            {
                "request_id": "honk-app-current",
                "run_id": json.loads(ok.stdout)[0]["run_id"],
                "compatible": True,
                "problem": None,
            }
        ]

        # A request started by other code (one more notification) cannot continue on this code.
        await start_running(env, ExtraNotification, "honk-app-older-code")
        broken = await asyncio.to_thread(honk_replay, env, tmp_path)
        assert broken.returncode == 1, broken.stdout + broken.stderr
        verdicts = {v["request_id"]: v for v in json.loads(broken.stdout)}
        assert verdicts["honk-app-current"]["compatible"] is True
        assert verdicts["honk-app-older-code"]["compatible"] is False
        assert "Nondeterminism" in verdicts["honk-app-older-code"]["problem"]
    finally:
        await env.shutdown()
