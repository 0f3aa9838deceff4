"""The load benchmarks still run end to end and say what they promise (tiny sizes; the
figures themselves are not asserted: speed goals live in bench/, never in timed tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def bench(script: str, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.mark.timeout(180)
def test_overhead_bench_compares_honk_with_the_plain_script():
    result = bench("overhead.py", "--requests", "2", "--concurrency", "2")
    assert result["failures"] == 0, result.get("worker_log_tail")
    assert len(result["honk_ms"]) == len(result["plain_ms"]) == 2
    for key in ("overhead_p50_ms", "overhead_p99_ms", "ratio", "concurrent_wall_s", "plain_sequential_s"):
        assert isinstance(result[key], float), key
    assert "run_agent ran" in result["steps_ms"]


@pytest.mark.timeout(180)
def test_parked_requests_answer_after_a_worker_restart_and_cancel():
    result = bench("parked.py", "--count", "5")
    assert result["parked"] == result["answered"] == result["accepted"] == result["cancelled"] == 5, result
    assert result["worker_rss_mb"] > 0 and result["db_mb"] > 0
    assert result["cancel_all_s"] >= 0


@pytest.mark.timeout(180)
def test_throughput_bench_brings_every_request_to_approval():
    result = bench("throughput.py", "--requests", "3")
    assert result["completed"] == 3 and result["failures"] == 0, result.get("worker_log_tail")
    assert result["p50_s"] <= result["p99_s"] <= result["wall_s"] + 1
