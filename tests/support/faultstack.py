"""The pieces the fault suite breaks on purpose: a Temporal dev server that keeps its state
in a file (so it can be restarted), `honk worker` processes to SIGKILL, the git remote served
over smart HTTP behind a TCP fault proxy, S3 (moto) behind an HTTP fault proxy, and a ledger
of injected faults and outcomes written to fault-summary.json."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from conftest import BIN, ROOT, free_port

from honk.workflows.contract import SEARCH_ATTRIBUTES


class PersistentDevServer:
    """`temporal server start-dev --db-filename`: a restart keeps every workflow."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.db = tmp / "temporal.db"
        self.log = tmp / "temporal.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> None:
        argv = [str(BIN / "temporal"), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(self.port)]
        argv += ["--headless", "--db-filename", str(self.db), "--log-level", "error"]
        for key in SEARCH_ATTRIBUTES:
            argv += ["--search-attribute", f"{key.name}=Keyword"]
        self.process = subprocess.Popen(
            argv, stdout=self.log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, f"temporal exited: {self.log.read_text()[-2000:]}"
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            assert time.monotonic() < deadline, "temporal did not listen"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


class WorkerProcess:
    """`honk worker` as its own process group, so SIGKILL takes its git and check children too."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "honk.cli", "worker"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=log.open("ab"),
            start_new_session=True,
        )

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            return self.process.wait(timeout=60)
        return self.process.returncode


@dataclass
class FaultLedger:
    faults: list[str] = field(default_factory=list)
    outcomes: dict[str, tuple[str, str]] = field(default_factory=dict)  # request: (expected, actual)
    duplicate_merges: int = 0
    duplicate_messages: int = 0
    duplicate_uploads: int = 0

    def injected(self, name: str) -> None:
        self.faults.append(name)

    def outcome(self, request_id: str, expected: str, actual: str) -> None:
        self.outcomes[request_id] = (expected, actual)

    def summary(self) -> dict[str, object]:
        lost = sorted(r for r, (want, got) in self.outcomes.items() if want != got)
        return {
            "faults_injected": len(self.faults),
            "faults": self.faults,
            "requests": len(self.outcomes),
            "requests_lost": len(lost),
            "lost": {r: {"expected": self.outcomes[r][0], "actual": self.outcomes[r][1]} for r in lost},
            "duplicate_merges": self.duplicate_merges,
            "duplicate_messages": self.duplicate_messages,
            "duplicate_uploads": self.duplicate_uploads,
        }

    def write(self) -> Path:
        path = Path(os.environ.get("HONK_FAULT_SUMMARY") or ROOT / "fault-summary.json")
        path.write_text(json.dumps(self.summary(), indent=2) + "\n")
        return path


def duplicates(items: list[str]) -> int:
    """How many items repeat an earlier one."""
    return sum(n - 1 for n in Counter(items).values())


GIT_USER, GIT_PASSWORD = "honk-bot", "fault-suite-password-7c1d"
TEAM_CHANNEL = ("T0HONK", "C0MOBILE")


class FaultWorld:
    """Everything a request needs, each piece breakable: a restartable Temporal server,
    `honk worker` processes, the git remote over HTTP behind a TCP fault proxy, S3 (moto)
    behind an HTTP fault proxy, the Slack fake, the scripted model fake."""

    def __init__(self, tmp: Path, task_queue: str, **stack_options: object) -> None:
        self.tmp, self.task_queue, self.stack_options = tmp, task_queue, stack_options
        self.workers: list[WorkerProcess] = []

    async def __aenter__(self) -> FaultWorld:
        import threading
        import uuid
        from types import SimpleNamespace

        import boto3
        from fault_proxy import FaultProxy, HttpFaultProxy
        from git_http import GitHttpServer
        from honkstack import Stack
        from moto_s3 import MotoServer
        from slack_fake import BOT_TOKEN, SlackFake
        from temporalio.client import Client
        from temporalio.contrib.pydantic import pydantic_data_converter

        from honk.config.registry import load_registry

        self.server = PersistentDevServer(self.tmp)
        self.server.start()
        self.moto = MotoServer(self.tmp / "moto.log")
        self.s3 = HttpFaultProxy(self.moto.endpoint)
        self.slack = SlackFake().start()
        self.git_server = GitHttpServer(self.tmp / "remotes", GIT_USER, GIT_PASSWORD)
        threading.Thread(target=self.git_server.serve_forever, daemon=True).start()
        self.git = FaultProxy("127.0.0.1", self.git_server.server_address[1])
        self.client = await Client.connect(self.server.address, data_converter=pydantic_data_converter)
        bucket = f"honk-{uuid.uuid4().hex[:10]}"
        keys = {"aws_access_key_id": "AKIAHONKTEST", "aws_secret_access_key": "honk-test-secret"}
        boto3.client("s3", endpoint_url=self.moto.endpoint, region_name="eu-west-1", **keys).create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        extra = {
            "artifact_store": "s3",
            "s3_bucket": bucket,
            "s3_endpoint_url": self.s3.url,
            "s3_region": "eu-west-1",
            "s3_access_key_id": keys["aws_access_key_id"],
            "s3_secret_access_key": keys["aws_secret_access_key"],
            "slack_bot_token": BOT_TOKEN,
            "slack_api_url": self.slack.api_url,
        }
        self.stack = Stack(
            SimpleNamespace(client=self.client),
            self.tmp,
            self.task_queue,
            settings=extra,
            **self.stack_options,  # type: ignore[arg-type]
        )
        registry_file = self.tmp / "honk.toml"
        remote = f"http://{self.git.address}/hello-android.git"  # the worker has the credentials
        registry_file.write_text(
            f'[repos.hello-android]\nremote = "{remote}"\napprovers = ["alice"]\nmerge_strategy = "squash"\n'
        )
        self.stack.registry = load_registry(registry_file, self.stack.settings.data_dir)
        self.env = {
            **self.stack.cli_env(),
            **{f"HONK_{key.upper()}": str(value) for key, value in extra.items()},
            "HONK_GIT_USERNAME": GIT_USER,
            "HONK_GIT_PASSWORD": GIT_PASSWORD,
        }
        self.workers.append(WorkerProcess(self.env, self.tmp / "worker.log"))
        return self

    def restart_worker(self) -> None:
        self.workers[-1].kill()
        self.workers.append(WorkerProcess(self.env, self.tmp / "worker.log"))

    async def request(self, instruction: str, thread_ts: str, **options: object):
        from datetime import timedelta

        from honk.changes import slack_request_id, start_request
        from honk.workflows.contract import Origin, RequestOptions

        team, channel = TEAM_CHANNEL
        return await start_request(
            self.client,
            self.stack.settings,
            self.stack.registry,
            repo="hello-android",
            instruction=instruction,
            requester="bob",
            origin=Origin(kind="slack", team=team, channel=channel, thread_ts=thread_ts, user="U0BOB"),
            request_id=slack_request_id(team, channel, thread_ts),
            options=RequestOptions(**{"heartbeat_timeout": timedelta(seconds=5), **options}),
        )

    def count_duplicates(self, ledger: FaultLedger, request_id: str, thread_ts: str) -> list[str]:
        """Adds this request's duplicate merges, messages and uploads to `ledger`; returns
        the commits on the base that carry its Honk-Request trailer."""
        merges = [sha for sha in self.stack.honk_commits() if request_id in self.stack.commit_message(sha)]
        ledger.duplicate_merges += max(0, len(merges) - 1)
        thread = self.slack.thread(TEAM_CHANNEL[1], thread_ts)
        ledger.duplicate_messages += duplicates([m["text"] + json.dumps(m.get("blocks") or []) for m in thread])
        ledger.duplicate_uploads += duplicates([u["name"] for u in self.slack.uploads.values()])
        return merges

    async def __aexit__(self, *exc: object) -> None:
        for worker in self.workers:
            worker.kill()
        self.git.close()
        self.git_server.shutdown()
        self.s3.close()
        self.moto.stop()
        self.slack.stop()
        self.server.stop()
        self.stack.model.stop()
