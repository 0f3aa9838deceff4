"""What does Honk add to a request whose steps cost nothing?

    .venv/bin/python bench/overhead.py [--requests 20] [--concurrency 20] [--activities 8]

The tiny repository of bench/loadstack.py (one file, `test -f` as its check, a `command`
build copying one file, the scripted model making one edit) goes through the real workflow
and `honk worker` on a Temporal dev server started here, and through a plain sequential
script doing the same git operations, check and build (clone, edit, check, build, commit,
push a branch). Both run in this one process, alternately, so machine load hits both alike.

At concurrency 1 each request's time runs from RECEIVED to AWAITING_APPROVAL (its timeline),
paired with one plain run; the overhead is the difference. Then `requests` requests run with
at most `concurrency` in flight; their wall time is compared with the plain script's time for
the same number one after another (`ratio`). `steps_ms` is the median time per step at
concurrency 1, from the workflow histories. Prints JSON:

    {"requests": 20, "honk_ms": [...], "plain_ms": [...], "overhead_p50_ms": ..., "overhead_p99_ms": ...,
     "concurrent_wall_s": ..., "plain_sequential_s": ..., "ratio": ..., "failures": 0, "steps_ms": {...}}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadstack import BUILD, CHECK, EDIT, LoadStack, percentile, stage_at  # noqa: E402

from honk.workflows.contract import SA_STAGE  # noqa: E402

GIT = ["git", "-c", "user.name=Plain", "-c", "user.email=plain@example.com", "-c", "core.hooksPath=/dev/null"]


def plain_run(remote: Path, work: Path, number: int) -> float:
    """The same steps as one request, as a plain script: seconds taken."""
    start = time.perf_counter()

    def run(*argv: str, cwd: Path = work) -> None:
        subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    run(*GIT, "clone", "--quiet", str(remote), str(work), cwd=remote.parent)
    run(*GIT, "checkout", "--quiet", "-b", f"plain/{number}")
    target = work / EDIT["path"]
    target.write_text(target.read_text().replace(EDIT["replace"], EDIT["with"], 1))
    run(*CHECK)
    run(*BUILD)
    run(*GIT, "add", EDIT["path"])
    run(*GIT, "commit", "--quiet", "-m", "Made the greeting friendlier.")
    run(*GIT, "push", "--quiet", "origin", f"plain/{number}")
    return time.perf_counter() - start


async def reach_approval(stack: LoadStack, timeout: float) -> tuple[str, float | None]:
    """Submit one request and wait (watching its search attribute) until it waits for approval."""
    request_id, _ = await stack.submit()
    handle = stack.client.get_workflow_handle(request_id)  # type: ignore[union-attr]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stage = (await handle.describe()).typed_search_attributes.get(SA_STAGE)
        if stage == "AWAITING_APPROVAL":
            status = await stack.status(request_id)
            received, ready = stage_at(status, "RECEIVED"), stage_at(status, "AWAITING_APPROVAL")
            return request_id, (ready - received) if received and ready else None
        if stage in ("FAILED", "CANCELLED", "EXPIRED"):
            break
        await asyncio.sleep(0.05)
    return request_id, None


async def run_concurrently(stack: LoadStack, requests: int, concurrency: int, timeout: float) -> tuple[float, int]:
    """Keep `concurrency` requests in flight until `requests` reached AWAITING_APPROVAL (or
    failed): the wall time and how many reached it. Progress is one visibility count per
    poll, not a describe per request, so watching costs the server next to nothing."""
    before = await stack.count("AWAITING_APPROVAL")
    failed_before = await stack.count("FAILED")
    started = time.perf_counter()
    submitted = done = 0
    while done < requests and time.perf_counter() - started < timeout:
        while submitted - done < concurrency and submitted < requests:
            await stack.submit()
            submitted += 1
        await asyncio.sleep(0.02)
        done = await stack.count("AWAITING_APPROVAL") - before + await stack.count("FAILED") - failed_before
    wall = time.perf_counter() - started
    return wall, min(requests, await stack.count("AWAITING_APPROVAL") - before)


async def main(requests: int, concurrency: int, activities: int, timeout: float) -> dict:
    async with LoadStack(activities=activities) as stack:
        plain_dir = Path(tempfile.mkdtemp(prefix="plain-", dir=stack.tmp))
        # Warm both sides (first clone into the mirror cache, first sandbox, imports): untimed.
        await reach_approval(stack, timeout)
        plain_run(stack.remote, plain_dir / "warm", -1)

        honk_s, plain_s, failures = [], [], 0
        sequential_ids = []
        for number in range(requests):
            request_id, took = await reach_approval(stack, timeout)
            sequential_ids.append(request_id)
            plain_s.append(await asyncio.to_thread(plain_run, stack.remote, plain_dir / f"seq-{number}", number))
            if took is None:
                failures += 1
            else:
                honk_s.append(took)
        steps = await stack.step_breakdown(sequential_ids)

        batch_timeout = timeout * max(1.0, requests / concurrency)
        concurrent_wall, reached = await run_concurrently(stack, requests, concurrency, batch_timeout)
        failures += requests - reached
        log_tail = stack.worker_log_tail() if failures else ""

    overheads = [(h - p) * 1000 for h, p in zip(honk_s, plain_s, strict=False)]
    plain_sequential = sum(plain_s)
    return {
        "requests": requests,
        "concurrency": concurrency,
        "max_concurrent_activities": activities,
        "honk_ms": [round(t * 1000, 1) for t in honk_s],
        "plain_ms": [round(t * 1000, 1) for t in plain_s],
        "honk_p50_ms": round(statistics.median(honk_s) * 1000, 1) if honk_s else None,
        "plain_p50_ms": round(statistics.median(plain_s) * 1000, 1),
        "overhead_p50_ms": round(statistics.median(overheads), 1) if overheads else None,
        "overhead_p99_ms": round(percentile(overheads, 99), 1) if overheads else None,
        "concurrent_wall_s": round(concurrent_wall, 2),
        "plain_sequential_s": round(plain_sequential, 2),
        "ratio": round(concurrent_wall / plain_sequential, 2),
        "failures": failures,
        "steps_ms": steps,
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        **({"worker_log_tail": log_tail} if log_tail else {}),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20, help="N: requests at concurrency 1, then at --concurrency")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--activities", type=int, default=8, help="the worker's max concurrent activities")
    parser.add_argument("--timeout", type=float, default=120, help="seconds one request may take")
    args = parser.parse_args()
    if args.requests < 1 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be at least 1")
    print(json.dumps(asyncio.run(main(args.requests, args.concurrency, args.activities, args.timeout)), indent=2))
