"""`honk chat` in HTTP mode as a real process, as a deployment runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import aiohttp
from conftest import eventually, free_port
from slack_fake import signed_headers


class ChatProcess:
    """`honk chat` in HTTP mode, as a deployment runs it."""

    def __init__(self, tmp, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (tmp / f"chat-{self.port}.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "honk.cli", "chat", "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    async def ready(self) -> None:
        async def probe():
            assert self.process.poll() is None, f"honk chat exited ({self.process.returncode})"
            try:
                async with aiohttp.ClientSession() as http, http.get(self.url + "/healthz") as r:
                    return r.status == 200
            except aiohttp.ClientError:
                return False

        await eventually(probe, timeout=60, every=0.3, what="honk chat to listen")

    async def event(self, payload: dict) -> int:
        body = json.dumps(payload).encode()
        async with (
            aiohttp.ClientSession() as http,
            http.post(self.url + "/slack/events", data=body, headers=signed_headers(body)) as r,
        ):
            return r.status

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.log.close()
