"""Prometheus metrics: after an end-to-end request, `curl` of the worker's endpoint (a real
`honk worker` process) shows Honk's metrics beside the SDK's, and the endpoint of the process
that started the request (what the chat service does) shows the requests it started."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import urllib.request

import pytest
from conftest import eventually, free_port
from faultstack import WorkerProcess
from honkstack import Stack, needs_android

from honk import telemetry
from honk.config.settings import load_settings
from honk.workers.temporal import connect
from honk.workflows.contract import Stage


def scrape(port: int) -> str:
    """What Prometheus (or an operator's curl) gets from the endpoint."""
    url = f"http://127.0.0.1:{port}/metrics"
    if shutil.which("curl"):
        done = subprocess.run(["curl", "-sSf", "--max-time", "10", url], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout
    with urllib.request.urlopen(url, timeout=10) as response:  # no curl on this machine
        return response.read().decode()


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the first sample `name{...labels...}`, or None."""
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*)(\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(3) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(4))
    return None


@needs_android
async def test_prometheus_endpoints_show_honk_metrics_after_an_end_to_end_run(dev_env, tmp_path, task_queue):
    worker_port, chat_port = free_port(), free_port()
    stack = Stack(dev_env, tmp_path, task_queue)
    # The starting side (in the chat service: `honk chat` with HONK_METRICS_PORT) ...
    starter = stack.settings.model_copy(update={"metrics_port": chat_port, "metrics_host": "127.0.0.1"})
    stack.client = await connect(starter)
    # ... and a worker process of its own with its endpoint.
    env = {**stack.cli_env(), "HONK_METRICS_PORT": str(worker_port), "HONK_METRICS_HOST": "127.0.0.1"}
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        handle = await stack.request("Add a farewell line, broken first")  # one failed check, then a pass
        await stack.wait_stage(handle.id, Stage.AWAITING_APPROVAL)
        await handle.signal("approve", {"by": "mallory"})  # refused: not an approver
        await handle.signal("approve", {"by": "alice"})
        result = await asyncio.wait_for(handle.result(), 90)
        assert result.stage == Stage.MERGED, result.last_error

        async def worker_metrics():
            text = scrape(worker_port)
            return text if sample(text, "honk_requests_finished_total", outcome="merged") else None

        text = await eventually(worker_metrics, timeout=15, what="the worker's metrics")
    finally:
        worker.stop()
        await stack.close()

    repo = {"repo": "hello-android"}
    assert sample(text, "honk_requests_finished_total", outcome="merged", **repo) == 1
    assert sample(text, "honk_request_duration_seconds_count", outcome="merged") == 1
    for stage in (
        "RECEIVED",
        "PREPARING",
        "EDITING",
        "CHECKING",
        "BUILDING",
        "PUBLISHING",
        "AWAITING_APPROVAL",
        "MERGING",
    ):
        assert sample(text, "honk_stage_duration_seconds_count", stage=stage, **repo), stage
    assert sample(text, "honk_agent_runs_total", status="finished", **repo) == 2
    assert sample(text, "honk_agent_tokens_total", kind="input", model="scripted-model") > 0
    assert sample(text, "honk_agent_tokens_total", kind="output", model="scripted-model") > 0
    assert sample(text, "honk_agent_cost_dollars_sum", model="scripted-model") > 0
    assert sample(text, "honk_agent_turns_count") == 2
    assert sample(text, "honk_check_attempts_total", outcome="failed", **repo) == 1
    assert sample(text, "honk_check_attempts_total", outcome="passed", **repo) == 1
    assert sample(text, "honk_build_duration_seconds_count", target="android", outcome="ok") == 1
    assert sample(text, "honk_decisions_total", action="approve", outcome="refused") == 1
    assert sample(text, "honk_decisions_total", action="approve", outcome="accepted") == 1
    # The SDK's own metrics on the same endpoint, e.g. activity latencies per activity type.
    assert sample(text, "temporal_activity_execution_latency_count", activity_type="run_agent")
    assert sample(text, "temporal_workflow_completed_total")
    assert 'service="honk-worker"' in text

    chat = scrape(chat_port)
    assert sample(chat, "honk_requests_started_total", origin="cli", **repo) == 1
    assert sample(chat, "temporal_request_total")  # the client's calls to Temporal
    assert "honk_requests_finished" not in chat, "workflow metrics belong to the worker's endpoint"


def test_metrics_off_by_default_and_a_busy_port_names_the_variable():
    assert telemetry.runtime(load_settings()) is None  # HONK_METRICS_PORT unset: no endpoint
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(telemetry.MetricsUnavailable, match="HONK_METRICS_PORT"):
            telemetry.runtime(load_settings(metrics_port=port, metrics_host="127.0.0.1"))
