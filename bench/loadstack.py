"""What the load benchmarks share: a tiny repository whose steps are near-instant, and a Honk
stack on 127.0.0.1 run from a temporary directory (Temporal dev server with a database file,
the scripted model, `honk worker` as its own process) that the benchmark stops itself.

The repository holds one text file, one check (`test -f greeting.txt`) and, optionally, one
`command` build target that copies the file to `out/app.txt`. The scripted model answers every
request with one edit of that file, so each step is real (git, sandboxed commands, the
Anthropic client, publishing) but does almost nothing: what remains is Honk's own cost.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import AsyncExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

from temporalio.api.enums.v1 import EventType  # noqa: E402
from temporalio.client import Client  # noqa: E402

from honk.changes import start_request  # noqa: E402
from honk.cli.demo import create_remote  # noqa: E402
from honk.cli.devstack import DevServer  # noqa: E402
from honk.cli.scripted_model import ScriptedModel, ScriptedModelServer  # noqa: E402
from honk.config.registry import load_registry  # noqa: E402
from honk.config.settings import load_settings  # noqa: E402
from honk.workers.temporal import connect  # noqa: E402
from honk.workflows.contract import QUERY_STATUS, SA_STAGE, RequestStatus  # noqa: E402

REPO = "tiny"
REQUESTER = "bench"
INSTRUCTION = "make the greeting friendlier"
CHECK = ["test", "-f", "greeting.txt"]
BUILD = ["sh", "-c", "mkdir -p out && cp greeting.txt out/app.txt"]
EDIT = {"path": "greeting.txt", "replace": "Hello", "with": "Hello there"}
SCRIPT = {"replies": [{"when": "greeting", "summary": "Made the greeting friendlier.", "edits": [EDIT]}]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


def tiny_repo(tmp: Path, *, build: bool = True) -> Path:
    """A bare remote on disk holding the tiny repository as one commit on main."""
    src = tmp / "tiny-src"
    src.mkdir(parents=True)
    (src / "greeting.txt").write_text("Hello\n")
    config = f'[[checks]]\nname = "exists"\nrun = {json.dumps(CHECK)}\n'
    if build:
        config += (
            f'\n[[build]]\nname = "app"\ndriver = "command"\nrun = {json.dumps(BUILD)}\nartifacts = ["out/*.txt"]\n'
        )
    (src / ".honk.toml").write_text(config)
    return create_remote(src, tmp / "remotes" / "tiny.git")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class LoadStack:
    """Dev server, scripted model and a `honk worker` process, all in a temporary directory."""

    def __init__(self, *, build: bool = True, activities: int = 4, judge: bool = True, keep: Path | None = None):
        self._tmp = tempfile.TemporaryDirectory(prefix="honk-bench-") if keep is None else None
        self.tmp = keep or Path(self._tmp.name)  # type: ignore[union-attr]
        self.remote = tiny_repo(self.tmp, build=build)
        self.model = ScriptedModelServer(ScriptedModel(SCRIPT))
        registry = self.tmp / "honk.toml"
        registry.write_text(f'[repos.{REPO}]\nremote = "{self.remote}"\napprovers = ["{REQUESTER}"]\n')
        own = {
            "HONK_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
            "HONK_UI_PORT": str(free_port()),
            "HONK_TASK_QUEUE": "bench",
            "HONK_DATA_DIR": str(self.tmp / "data"),
            "HONK_REGISTRY": str(registry),
            "HONK_ANTHROPIC_BASE_URL": self.model.url,
            "HONK_ANTHROPIC_API_KEY": "scripted-offline",
            "HONK_MODEL": "scripted-model",
            "HONK_MAX_CONCURRENT_ACTIVITIES": str(activities),
            "HONK_JUDGE": "true" if judge else "false",
            "HONK_LOG_LEVEL": "WARNING",
        }
        self.env = {**os.environ, **own, "PYTHONPATH": str(ROOT)}
        self.settings = load_settings(**{k.removeprefix("HONK_").lower(): v for k, v in own.items()})
        self.registry = load_registry(registry, self.settings.data_dir)
        self.server = DevServer(self.settings)
        self.worker: subprocess.Popen | None = None
        self.client: Client | None = None
        self._exit = AsyncExitStack()

    async def __aenter__(self) -> LoadStack:
        self.model.start()
        await asyncio.to_thread(self.server.start)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.client = await connect(self.settings)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.3)
        self.start_worker()
        self.worker_start_s = await self.wait_worker_ready()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop_worker()
        await asyncio.to_thread(self.server.stop)
        self.model.stop()
        if self._tmp:
            self._tmp.cleanup()

    def start_worker(self) -> None:
        log = (self.tmp / "worker.log").open("ab")
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "honk.cli", "worker"],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    async def wait_worker_ready(self, timeout: float = 60) -> float:
        """Seconds until the worker polls its workflow and activity queues (its start cost)."""
        from temporalio.api.enums.v1 import TaskQueueType
        from temporalio.api.taskqueue.v1 import TaskQueue
        from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.worker and self.worker.poll() is not None:
                raise RuntimeError(f"the worker exited with {self.worker.returncode}:\n{self.worker_log_tail()}")
            polling = []
            for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
                answer = await self.client.workflow_service.describe_task_queue(  # type: ignore[union-attr]
                    DescribeTaskQueueRequest(
                        namespace=self.settings.temporal_namespace,
                        task_queue=TaskQueue(name=self.settings.task_queue),
                        task_queue_type=kind,
                    )
                )
                polling.append(any(p.identity.startswith(f"{self.worker.pid}@") for p in answer.pollers))  # type: ignore[union-attr]
            if all(polling):
                return time.monotonic() - started
            await asyncio.sleep(0.1)
        raise RuntimeError(f"the worker did not poll within {timeout:.0f}s:\n{self.worker_log_tail()}")

    def stop_worker(self) -> None:
        if self.worker and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGTERM)
            try:
                self.worker.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait()
        self.worker = None

    def worker_log_tail(self, lines: int = 20) -> str:
        path = self.tmp / "worker.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    async def submit(self) -> tuple[str, float]:
        """Start one request; its id and the wall-clock time it was submitted at."""
        submitted = time.time()
        handle = await start_request(
            self.client,  # type: ignore[arg-type]
            self.settings,
            self.registry,
            repo=REPO,
            instruction=INSTRUCTION,
            requester=REQUESTER,
        )
        return handle.id, submitted

    async def count(self, stage: str) -> int:
        query = f"{SA_STAGE.name} = '{stage}'"
        return (await self.client.count_workflows(query)).count  # type: ignore[union-attr]

    async def wait_for(self, expected: int, timeout: float, stage: str = "AWAITING_APPROVAL") -> dict[str, int]:
        """Poll the visibility store until `expected` requests sit at `stage` (or failed)."""
        deadline = time.monotonic() + timeout
        while True:
            reached, failed = await self.count(stage), await self.count("FAILED")
            if reached + failed >= expected or time.monotonic() > deadline:
                return {"reached": reached, "failed": failed}
            await asyncio.sleep(0.25)

    async def status(self, request_id: str, timeout: float = 10) -> RequestStatus:
        from datetime import timedelta

        handle = self.client.get_workflow_handle(request_id)  # type: ignore[union-attr]
        return await handle.query(QUERY_STATUS, result_type=RequestStatus, rpc_timeout=timedelta(seconds=timeout))

    async def step_breakdown(self, request_ids: list[str]) -> dict[str, dict[str, float]]:
        """Median milliseconds per activity (queue wait and run) and per workflow task, read
        from the history's event timestamps: where a request's time goes."""
        samples: dict[str, list[float]] = defaultdict(list)
        for request_id in request_ids:
            history = await self.client.get_workflow_handle(request_id).fetch_history()  # type: ignore[union-attr]
            by_id = {e.event_id: e for e in history.events}
            per_request: dict[str, float] = defaultdict(float)
            for event in history.events:
                at = event.event_time.ToMilliseconds()
                if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                    scheduled = by_id[event.activity_task_started_event_attributes.scheduled_event_id]
                    name = scheduled.activity_task_scheduled_event_attributes.activity_type.name
                    per_request[f"{name} queued"] += at - scheduled.event_time.ToMilliseconds()
                elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                    attrs = event.activity_task_completed_event_attributes
                    started = by_id[attrs.started_event_id]
                    name = by_id[attrs.scheduled_event_id].activity_task_scheduled_event_attributes.activity_type.name
                    per_request[f"{name} ran"] += at - started.event_time.ToMilliseconds()
                elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                    attrs = event.workflow_task_completed_event_attributes
                    scheduled = by_id[attrs.scheduled_event_id]
                    per_request["workflow tasks"] += at - scheduled.event_time.ToMilliseconds()
                if event.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
                    fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
                    if SA_STAGE.name in fields and b"AWAITING_APPROVAL" in fields[SA_STAGE.name].data:
                        break  # up to the approval wait only
            for key, value in per_request.items():
                samples[key].append(value)
        import statistics

        return {key: round(statistics.median(values), 1) for key, values in sorted(samples.items())}


def stage_at(status: RequestStatus, stage: str) -> float | None:
    """When the request entered `stage` (epoch seconds), from its timeline."""
    return next((e.at.timestamp() for e in status.timeline if e.kind == "stage" and e.stage.value == stage), None)
