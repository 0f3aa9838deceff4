"""Many requests at once: do they all reach AWAITING_APPROVAL?

    .venv/bin/python bench/throughput.py [--requests 100] [--activities 8] [--timeout 600]

Submits `requests` requests for the tiny repository of bench/loadstack.py at once (real
workflow, `honk worker` as its own process, Temporal dev server and scripted model started
here) and waits until every one waits for approval or fails. Each request's time runs from
its submission to its AWAITING_APPROVAL timeline entry. Prints JSON:

    {"requests": 100, "completed": 100, "failures": 0, "wall_s": ..., "p50_s": ..., "p99_s": ...,
     "worker_rss_mb": ..., "load_average_1m": ...}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadstack import LoadStack, percentile, rss_mb, stage_at  # noqa: E402


async def main(requests: int, activities: int, timeout: float) -> dict:
    async with LoadStack(activities=activities) as stack:
        started = time.perf_counter()
        submitted = await asyncio.gather(*(stack.submit() for _ in range(requests)))
        counts = await stack.wait_for(requests, timeout)
        wall = time.perf_counter() - started
        worker_rss = rss_mb(stack.worker.pid) if stack.worker else 0.0
        took, failures = [], 0
        for request_id, at in submitted:
            status = await stack.status(request_id)
            ready = stage_at(status, "AWAITING_APPROVAL")
            if ready is None or status.stage.value != "AWAITING_APPROVAL":
                failures += 1
            else:
                took.append(ready - at)
        log_tail = stack.worker_log_tail() if failures else ""
    return {
        "requests": requests,
        "completed": len(took),
        "failures": failures,
        "failed_stage": counts["failed"],
        "wall_s": round(wall, 2),
        "p50_s": round(statistics.median(took), 2) if took else None,
        "p99_s": round(percentile(took, 99), 2) if took else None,
        "max_concurrent_activities": activities,
        "worker_rss_mb": round(worker_rss, 1),
        "worker_start_s": round(stack.worker_start_s, 2),
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        **({"worker_log_tail": log_tail} if log_tail else {}),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--activities", type=int, default=8, help="the worker's max concurrent activities")
    parser.add_argument("--timeout", type=float, default=600, help="seconds all requests may take")
    args = parser.parse_args()
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    print(json.dumps(asyncio.run(main(args.requests, args.activities, args.timeout)), indent=2))
