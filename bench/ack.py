"""How fast does `honk chat` acknowledge signed Slack events?

    .venv/bin/python bench/ack.py [--events 500] [--rate 50] [--warmup 20]

Slack retries any event not acknowledged within 3 seconds, so the service must answer at
once and leave the work (starting a Temporal workflow, replying) to a background task.

Everything is real and local: a Temporal dev server (in a temporary directory), the Slack
Web API fake from tests/support/slack_fake.py, and `honk chat` as its own process (uvicorn on
127.0.0.1). The script fires `events` signed `app_mention` events — each a new request in
its own thread — at `rate` per second, timing each from sending the request to receiving
the response, then waits until the service has started every request. Prints JSON:

    {"events": 500, "rate_per_s": 50, "ack_ms": {"p50": ..., "p90": ..., "p99": ..., "max": ...},
     "non_200": 0, "requests_started": 500, "all_started_after_s": ..., "p99_under_100ms": true,
     "chat_cpu_ms_per_event": ..., "load_average_1m": ...}

`chat_cpu_ms_per_event` is the service's CPU time (acknowledging plus the background work)
per event; `load_average_1m` says how busy the machine was, since other processes on a small
machine show up in the tail.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout
sys.path.insert(0, str(ROOT / "tests" / "support"))  # the Slack fake lives with the tests

from slack_fake import (  # noqa: E402
    APP_TOKEN,
    BOT_TOKEN,
    SIGNING_SECRET,
    SlackFake,
    mention,
    signed_headers,
)

from honk.cli.devstack import DevServer  # noqa: E402
from honk.config.settings import load_settings  # noqa: E402
from honk.workers.temporal import connect  # noqa: E402

CHANNEL = "C0BENCH"
USER = "U0BENCH"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


async def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")
            await asyncio.sleep(0.2)


async def fire(url: str, count: int, rate: float, prefix: int) -> tuple[list[float], int]:
    """`count` signed mentions at `rate` per second; latencies in ms and non-200 answers."""
    latencies: list[float] = []
    failures = 0
    base = int(time.time())

    async def send(http: aiohttp.ClientSession, i: int) -> None:
        nonlocal failures
        payload = mention(
            "make the greeting friendlier",
            user=USER,
            channel=CHANNEL,
            ts=f"{base}.{prefix + i:06d}",
            event_id=f"EvBENCH{prefix + i:08d}",
        )
        body = json.dumps(payload).encode()
        headers = signed_headers(body)
        started = time.perf_counter()
        async with http.post(url, data=body, headers=headers) as response:
            await response.read()
            latencies.append((time.perf_counter() - started) * 1000)
            failures += response.status != 200

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as http:
        t0 = time.perf_counter()
        tasks = []
        for i in range(count):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(http, i)))
        await asyncio.gather(*tasks)
    return latencies, failures


async def count_started(settings) -> int:
    client = await connect(settings)
    return (await client.count_workflows("WorkflowType = 'ChangeRequestWorkflow'")).count


async def main(events: int, rate: float, warmup: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="honk-bench-ack-") as tmp_name, SlackFake() as fake:
        tmp = Path(tmp_name)
        settings = load_settings(
            data_dir=tmp / "data",
            temporal_address=f"127.0.0.1:{free_port()}",
            ui_port=free_port(),
            registry=tmp / "honk.toml",
        )
        settings.registry.write_text(
            f'[repos.hello-android]\nremote = "{tmp / "remote.git"}"\nchannels = ["{CHANNEL}"]\n'
            f'approvers = ["{USER}"]\n'
        )
        server = DevServer(settings)
        server.start()
        port = free_port()
        env = {
            **os.environ,
            "HONK_TEMPORAL_ADDRESS": settings.temporal_address,
            "HONK_DATA_DIR": str(settings.data_dir),
            "HONK_REGISTRY": str(settings.registry),
            "HONK_SLACK_BOT_TOKEN": BOT_TOKEN,
            "HONK_SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "HONK_SLACK_APP_TOKEN": APP_TOKEN,
            "HONK_SLACK_API_URL": fake.api_url,
            "HONK_LOG_LEVEL": "INFO",
        }
        log_path = tmp / "chat.log"
        with log_path.open("wb") as log:
            chat = subprocess.Popen(
                [sys.executable, "-m", "honk.cli", "chat", "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            base = f"http://127.0.0.1:{port}"
            await wait_http(base + "/healthz")
            await fire(base + "/slack/events", warmup, rate, prefix=900_000)  # not counted
            await asyncio.sleep(1)
            cpu_before = cpu_seconds(chat.pid)
            latencies, failures = await fire(base + "/slack/events", events, rate, prefix=0)
            finished = time.perf_counter()
            started = 0
            while time.perf_counter() - finished < 120:
                started = await count_started(settings) - warmup
                if started >= events:
                    break
                await asyncio.sleep(0.25)
            all_started_after = time.perf_counter() - finished
            cpu_per_event_ms = (cpu_seconds(chat.pid) - cpu_before) / events * 1000
            load = os.getloadavg()[0]
        finally:
            chat.send_signal(signal.SIGTERM)
            try:
                chat.wait(timeout=30)
            except subprocess.TimeoutExpired:
                chat.kill()
            server.stop()
    p99 = percentile(latencies, 99)
    return {
        "events": events,
        "rate_per_s": rate,
        "warmup_events": warmup,
        "ack_ms": {
            "p50": round(statistics.median(latencies), 2),
            "p90": round(percentile(latencies, 90), 2),
            "p99": round(p99, 2),
            "max": round(max(latencies), 2),
        },
        "non_200": failures,
        "requests_started": started,
        "all_started_after_s": round(all_started_after, 2),
        "p99_under_100ms": p99 < 100,
        "chat_cpu_ms_per_event": round(cpu_per_event_ms, 2),
        "cpus": os.cpu_count(),
        "load_average_1m": round(load, 2),
        "chat_exit_code": chat.returncode,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.events, args.rate, args.warmup)), indent=2))
