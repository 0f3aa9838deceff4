"""Run the fault-injection suite alone and print its summary.

    .venv/bin/python bench/faults.py [--slow]

Runs `pytest -m faults tests/e2e/test_faults.py` (with --slow also the heavier cases, such as
the git remote unreachable for a minute during merge) in a subprocess, then prints the JSON
the suite wrote:

    {"faults_injected": 15, "requests": 2, "requests_lost": 0, "duplicate_merges": 0,
     "duplicate_messages": 0, "duplicate_uploads": 0, "pytest_exit_code": 0, "seconds": ...,
     "goal_met": true, ...}

Goal: faults_injected >= 15 and zero requests_lost, duplicate_merges, duplicate_messages and
duplicate_uploads. Exits non-zero when the goal is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", action="store_true", help="also the slow fault cases")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        summary_path = Path(tmp) / "fault-summary.json"
        marker = "faults" if args.slow else "faults and not slow"
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", marker, "tests/e2e/test_faults.py"],
            cwd=ROOT,
            env={**os.environ, "HONK_FAULT_SUMMARY": str(summary_path)},
            stdout=sys.stderr,  # pytest's report goes to stderr; stdout carries only the JSON
            check=False,
        )
        if not summary_path.exists():
            print(json.dumps({"error": "the suite wrote no summary", "pytest_exit_code": done.returncode}))
            return 1
        summary = json.loads(summary_path.read_text())
    summary["pytest_exit_code"] = done.returncode
    summary["seconds"] = round(time.monotonic() - started, 1)
    summary["goal_met"] = (
        summary["faults_injected"] >= 15
        and summary["requests_lost"] == 0
        and summary["duplicate_merges"] == 0
        and summary["duplicate_messages"] == 0
        and summary["duplicate_uploads"] == 0
    )
    print(json.dumps(summary))
    return 0 if summary["goal_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
