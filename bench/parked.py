"""Many requests waiting for approval: what do they cost, and do they survive a worker restart?

    .venv/bin/python bench/parked.py [--count 1000] [--in-flight 50] [--activities 8] [--timeout 1800]

Parks `count` requests at AWAITING_APPROVAL (`in_flight` on their way at a time) through the
real workflow on the cheap path (the tiny repository of bench/loadstack.py without build
targets: prepare, one scripted edit, a `test -f` check), with `honk worker` as its own process. Then it reads the worker's resident
memory (/proc/<pid>/status VmRSS) and the size of the dev server's database file, restarts
the worker, asks every request for its `status` (a query the new worker must answer by
replaying the history), sends each a decision through the validated `decide` update — a
cancel, so the decision is accepted and also ends the request — and times how long it takes
until every request is CANCELLED. Prints JSON:

    {"count": 1000, "park_s": ..., "worker_rss_mb": ..., "worker_rss_after_restart_mb": ...,
     "db_mb": ..., "answered": 1000, "accepted": 1000, "cancel_all_s": ..., "cancelled": 1000}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadstack import REQUESTER, LoadStack, rss_mb  # noqa: E402

from honk.changes import RequestError, decide  # noqa: E402

SUBMITTERS = 50  # requests submitted or asked at once


async def bounded(items: list[str], fn) -> list:
    gate = asyncio.Semaphore(SUBMITTERS)

    async def one(item: str):
        async with gate:
            try:
                return await fn(item)
            except (RequestError, Exception) as exc:  # counted, not fatal: the figure says how many
                return exc

    return await asyncio.gather(*(one(i) for i in items))


def db_mb(data_dir: Path) -> float:
    return sum(p.stat().st_size for p in data_dir.glob("temporal.db*")) / 1024 / 1024


async def park(stack: LoadStack, count: int, in_flight: int, timeout: float) -> tuple[list[str], dict[str, int]]:
    """Submit `count` requests, at most `in_flight` of them on their way to approval at once
    (requests arrive over time; a worker caches only so many running ones); their ids and
    how many reached AWAITING_APPROVAL or failed."""
    ids: list[str] = []
    reached = {"reached": 0, "failed": 0}
    deadline = time.monotonic() + timeout
    while len(ids) < count or sum(reached.values()) < len(ids):
        room = min(count - len(ids), in_flight - (len(ids) - sum(reached.values())))
        if room > 0:
            ids += [s[0] for s in await bounded(list(range(room)), lambda _: stack.submit()) if isinstance(s, tuple)]
        await asyncio.sleep(0.2)
        reached = {"reached": await stack.count("AWAITING_APPROVAL"), "failed": await stack.count("FAILED")}
        if time.monotonic() > deadline:
            break
    return ids, reached


async def main(count: int, in_flight: int, activities: int, timeout: float) -> dict:
    async with LoadStack(build=False, activities=activities) as stack:
        started = time.perf_counter()
        ids, counts = await park(stack, count, in_flight, timeout)
        park_s = time.perf_counter() - started
        await asyncio.sleep(2)  # let the last workflow tasks settle before reading memory
        worker_rss = rss_mb(stack.worker.pid) if stack.worker else 0.0
        db = db_mb(stack.settings.data_dir)

        stack.stop_worker()
        stack.start_worker()
        restart = time.perf_counter()
        worker_restart_s = await stack.wait_worker_ready()
        statuses = await bounded(ids, lambda i: stack.status(i, timeout=60))
        answered = sum(not isinstance(s, BaseException) and s.stage.value == "AWAITING_APPROVAL" for s in statuses)
        answer_all_s = time.perf_counter() - restart
        worker_rss_after = rss_mb(stack.worker.pid) if stack.worker else 0.0

        cancel_started = time.perf_counter()
        outcomes = await bounded(
            ids, lambda i: decide(stack.client, i, "cancel", REQUESTER, "bench done", answer_within=60)
        )
        accepted = sum(not isinstance(o, BaseException) and o.accepted for o in outcomes)
        ended = await stack.wait_for(len(ids), timeout, stage="CANCELLED")
        cancel_all_s = time.perf_counter() - cancel_started
        errors = sorted({repr(o)[:200] for o in [*statuses, *outcomes] if isinstance(o, BaseException)})[:5]
    return {
        "count": count,
        "in_flight": in_flight,
        "parked": counts["reached"],
        "failed_before_parking": counts["failed"],
        "park_s": round(park_s, 1),
        "worker_rss_mb": round(worker_rss, 1),
        "worker_rss_after_restart_mb": round(worker_rss_after, 1),
        "db_mb": round(db, 1),
        "worker_restart_s": round(worker_restart_s, 2),
        "answered": answered,
        "answer_all_after_restart_s": round(answer_all_s, 1),
        "accepted": accepted,
        "cancelled": ended["reached"],
        "cancel_all_s": round(cancel_all_s, 1),
        "max_concurrent_activities": activities,
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        **({"errors": errors} if errors else {}),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="requests to park")
    parser.add_argument("--in-flight", type=int, default=50, help="requests on their way to approval at once")
    parser.add_argument("--activities", type=int, default=8, help="the worker's max concurrent activities")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds each phase may take")
    args = parser.parse_args()
    if args.count < 1 or args.in_flight < 1:
        parser.error("--count and --in-flight must be at least 1")
    print(json.dumps(asyncio.run(main(args.count, args.in_flight, args.activities, args.timeout)), indent=2))
