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
