"""A Honk stack for tests on the real dev server: the sample app as a bare remote, a
registry, the scripted model, and in-process workers running the real activities."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import git
import pytest
from anthropic_fake import API_KEY, FakeAnthropic
from conftest import eventually

from honk.changes import RequestError, get_status, start_request
from honk.checks import logs_dir
from honk.cli.demo import SAMPLE_APP, create_remote
from honk.config.registry import load_registry
from honk.config.settings import load_settings
from honk.workers.main import build_workers, run_workers
from honk.workflows.contract import RequestOptions, RequestStatus, Stage

needs_android = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("aapt", "zipalign", "apksigner", "java")),
    reason="Android build tools are installed by `make test`",
)

SCRIPT = {
    "replies": [
        {
            "when": "greeting",
            "round": 1,
            "summary": "Greeting changed.",
            "edits": [{"path": "res/values/strings.xml", "replace": "Hello from Honk!", "with": "Hello from the bus!"}],
        },
        {
            "when": "broken first",
            "attempt": 1,
            "summary": "Added a farewell line (forgot the string).",
            "edits": [
                {
                    "path": "res/layout/activity_main.xml",
                    "replace": 'android:text="@string/subtitle"',
                    "with": 'android:text="@string/farewell"',
                }
            ],
        },
        {
            "when": "broken first",
            "attempt": 2,
            "feedback": "farewell",
            "summary": "Defined the farewell string.",
            "edits": [
                {
                    "path": "res/values/strings.xml",
                    "replace": "</resources>",
                    "with": '    <string name="farewell">See you on the bus.</string>\n</resources>',
                }
            ],
        },
    ]
}


class Stack:
    def __init__(
        self,
        env,
        tmp: Path,
        task_queue: str,
        *,
        slow_check: float = 0,
        script: dict | None = None,
        edit_app: Callable[[Path], None] | None = None,
        strategy: str = "squash",
        settings: dict | None = None,
    ) -> None:
        self.env = env
        self.client = env.client  # `await use_factory_client()`: honk.temporal.connect's instead
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.script = tmp / "model.json"
        self.script.write_text(json.dumps(script or SCRIPT))
        self.model = FakeAnthropic(script or SCRIPT).start()
        self.settings = load_settings(
            data_dir=tmp / "data",
            task_queue=task_queue,
            agent_script=self.script,
            temporal_address=env.client.service_client.config.target_host,
            anthropic_base_url=self.model.url,
            anthropic_api_key=API_KEY,
            model="scripted-model",
            **(settings or {}),  # extra settings, e.g. agent_backend="claude-code"
            sandbox_writable=[tmp],  # some tests' checks report through files beside the workspace
        )
        app = tmp / "app-src"
        shutil.copytree(SAMPLE_APP, app, ignore=shutil.ignore_patterns("build"))
        if slow_check:
            with (app / ".honk.toml").open("a") as f:
                f.write(
                    f'\n[[checks]]\nname = "slow"\nrun = ["python3", "-c", "import time; time.sleep({slow_check})"]\n'
                )
        if edit_app:
            edit_app(app)
        self.remote = create_remote(app, tmp / "remotes" / "hello-android.git")
        registry = tmp / "honk.toml"
        registry.write_text(
            f'[repos.hello-android]\nremote = "{self.remote}"\napprovers = ["alice"]\nmerge_strategy = "{strategy}"\n'
        )
        self.registry = load_registry(registry, self.settings.data_dir)
        self.stop = asyncio.Event()
        self.task: asyncio.Task | None = None

    async def use_factory_client(self):
        """Workers and requests go through `honk.temporal.connect` (codec, tracing, metrics
        runtime from `self.settings`) instead of the test environment's plain client."""
        from honk.workers.temporal import connect

        self.client = await connect(self.settings)
        return self.client

    def start_worker(self) -> None:
        workers = build_workers(self.client, self.settings)
        self.task = asyncio.create_task(run_workers(workers, self.stop))

    async def request(self, instruction: str, **options):
        return await start_request(
            self.client,
            self.settings,
            self.registry,
            repo="hello-android",
            instruction=instruction,
            requester="bob",
            options=RequestOptions(**options) if options else None,
        )

    async def wait_stage(self, request_id: str, stage: Stage, timeout: float = 90) -> RequestStatus:
        async def probe():
            try:
                status = await get_status(self.client, request_id)
            except RequestError:  # e.g. a query routed to a worker that was just killed
                return None
            if status.stage.terminal and status.stage != stage:
                raise AssertionError(f"ended {status.stage.value}: {status.last_error}")
            return status if status.stage == stage else None

        return await eventually(probe, timeout=timeout, every=0.3, what=stage.value)

    def cli_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HONK_TEMPORAL_ADDRESS": self.settings.temporal_address,
            "HONK_TASK_QUEUE": self.settings.task_queue,
            "HONK_DATA_DIR": str(self.settings.data_dir),
            "HONK_AGENT_SCRIPT": str(self.script),
            "HONK_LOG_LEVEL": "INFO",
            "HONK_ANTHROPIC_BASE_URL": self.model.url,
            "HONK_ANTHROPIC_API_KEY": API_KEY,
            "HONK_MODEL": "scripted-model",
            "HONK_SANDBOX_WRITABLE": json.dumps([str(self.tmp)]),
        }

    def base_log(self) -> list[str]:
        return git.Repo(self.remote).git.log("main", "--format=%H %s").splitlines()

    def commit_message(self, sha: str) -> str:
        return git.Repo(self.remote).git.log("-1", "--format=%B", sha)

    def check_started(self, request_id: str, name: str = "slow") -> bool:
        """Whether the request's check `name` has started (its log exists): looks only in the
        request's own log directory, not in workspaces and mirrors that come and go."""
        logs = logs_dir(self.settings, request_id)
        return logs.is_dir() and any(logs.glob(f"check-{name}-*.log"))

    def remote_file(self, path: str, ref: str = "main") -> str:
        return git.Repo(self.remote).git.show(f"{ref}:{path}")

    def push_to_base(self, path: str, old: str, new: str, message: str) -> str:
        """Someone else's commit lands on main (a clone, an edit, a push)."""
        work = self.tmp / f"other-{len(os.listdir(self.tmp))}"
        repo = git.Repo.clone_from(str(self.remote), str(work), branch="main")
        target = work / path
        text = target.read_text() if target.exists() else ""
        assert old in text, f"{old!r} not in {path}"
        target.write_text(text.replace(old, new, 1))
        repo.git.add(A=True)
        repo.git.commit(
            "-m",
            message,
            author="Carol <carol@example.com>",
            env={"GIT_COMMITTER_NAME": "Carol", "GIT_COMMITTER_EMAIL": "carol@example.com"},
        )
        repo.git.push("origin", "main")
        return repo.head.commit.hexsha

    def honk_commits(self) -> list[str]:
        """Shas on main whose message carries a Honk-Request trailer."""
        out = git.Repo(self.remote).git.log("main", "--format=%H%x00%B%x1e")
        return [r.strip().split("\0")[0] for r in out.split("\x1e") if "Honk-Request:" in r]

    def remote_branches(self) -> list[str]:
        return [h.name for h in git.Repo(self.remote).heads]

    async def close(self) -> None:
        self.stop.set()
        if self.task:
            await self.task
        self.model.stop()
