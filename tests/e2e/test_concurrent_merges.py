"""Merging safely on a real dev server with real activities: concurrent requests on one
repository, a base that moves while a request waits, real conflicts, and a worker killed
between the push of the base and the activity's completion."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import git
import pytest
from faultstack import WorkerProcess
from honkstack import SCRIPT, Stack, needs_android

from honk.workflows.contract import QUERY_STATUS, RequestStatus, Stage

pytestmark = needs_android

GREETING = '<string name="greeting">Hello from Honk!</string>'


async def approve_each_build(handle, timeout: float) -> RequestStatus:
    """Approve every commit offered for approval until the request ends: a change the agent
    repaired at merge time asks for approval again."""

    async def approver() -> None:
        approved = None
        while True:
            try:
                status = await handle.query(QUERY_STATUS, result_type=RequestStatus)
            except Exception:  # no worker answered yet
                status = None
            if status and status.stage == Stage.AWAITING_APPROVAL and status.tested_sha != approved:
                await handle.signal("approve", {"by": "alice", "commit": status.tested_sha or ""})
                approved = status.tested_sha
            await asyncio.sleep(0.5)

    task = asyncio.create_task(approver())
    try:
        return await asyncio.wait_for(handle.result(), timeout)
    finally:
        task.cancel()


def record_tree_check(log: Path):
    """Adds a check that records the tree it ran on, outside the workspace."""

    def edit(app: Path) -> None:
        with (app / ".honk.toml").open("a") as f:
            f.write(
                '\n[[checks]]\nname = "record-tree"\n'
                'run = ["python3", "-c", "import os, subprocess; '
                "tree = subprocess.check_output(['git', 'rev-parse', 'HEAD^{tree}'], text=True); "
                "open(os.environ['TREE_LOG'], 'a').write(tree)\"]\n"
                f'env = {{ TREE_LOG = "{log}" }}\n'
            )

    return edit


async def test_eight_concurrent_requests_each_merge_once_on_checked_trees(dev_env, tmp_path, task_queue):
    tree_log = tmp_path / "checked-trees.txt"
    script = {
        "replies": [
            {
                "when": f"add note {n}$",
                "summary": f"Note {n} added.",
                "edits": [{"path": f"notes/note-{n}.txt", "write": f"note {n}\n"}],
            }
            for n in range(8)
        ]
    }
    stack = Stack(dev_env, tmp_path, task_queue, script=script, edit_app=record_tree_check(tree_log))
    stack.start_worker()
    try:
        handles = await asyncio.gather(*(stack.request(f"add note {n}") for n in range(8)))
        await asyncio.gather(*(stack.wait_stage(h.id, Stage.AWAITING_APPROVAL, timeout=240) for h in handles))
        results = await asyncio.gather(*(approve_each_build(h, 300) for h in handles))
    finally:
        await stack.close()

    assert [r.stage for r in results] == [Stage.MERGED] * 8, [r.last_error for r in results]
    merged = stack.honk_commits()
    assert len(merged) == 8 and set(merged) == {r.links.merged_commit for r in results}
    repo = git.Repo(stack.remote)
    trailers = [repo.git.log("-1", "--format=%B", sha) for sha in merged]
    assert sorted(t.count("Honk-Request:") for t in trailers) == [1] * 8
    assert {next(line for line in t.splitlines() if line.startswith("Honk-Request:")) for t in trailers} == {
        f"Honk-Request: {h.id}" for h in handles
    }
    checked = set(tree_log.read_text().split())
    for sha in merged:
        assert repo.git.rev_parse(f"{sha}^{{tree}}") in checked, f"{sha} was pushed without its tree being checked"
    for n in range(8):
        assert repo.git.show(f"main:notes/note-{n}.txt") == f"note {n}"
    assert any(r for r in results if any("checks passed again on the combined tree" in e.message for e in r.timeline))


def extra_layout_script(fix: bool) -> dict:
    replies = [
        {
            "when": "extra screen",
            "round": 1,
            "summary": "Added an extra screen showing the subtitle.",
            "edits": [
                {
                    "path": "res/layout/extra.xml",
                    "write": '<?xml version="1.0" encoding="utf-8"?>\n<TextView xmlns:android='
                    '"http://schemas.android.com/apk/res/android" android:layout_width="match_parent" '
                    'android:layout_height="wrap_content" android:text="@string/subtitle" />\n',
                }
            ],
        },
    ]
    if fix:
        replies.insert(
            0,
            {
                "when": "extra screen",
                "feedback": "subtitle",
                "summary": "The subtitle is gone on main; show the greeting.",
                "edits": [{"path": "res/layout/extra.xml", "replace": "@string/subtitle", "with": "@string/greeting"}],
            },
        )
    return {"replies": replies}


def remove_subtitle(stack: Stack) -> None:
    """A base commit that is fine alone but breaks the change once combined."""
    stack.push_to_base(
        "res/layout/activity_main.xml", "@string/subtitle", "@string/greeting", "Drop the subtitle (1/2)"
    )
    stack.push_to_base(
        "res/values/strings.xml",
        '    <string name="subtitle">Built by Honk from a chat message.</string>\n',
        "",
        "Drop the subtitle (2/2)",
    )


@pytest.mark.parametrize("fix", [False, True], ids=["fails-closed", "agent-repairs"])
async def test_base_moved_combined_tree_rechecked_before_push(dev_env, tmp_path, task_queue, fix):
    stack = Stack(dev_env, tmp_path, task_queue, script=extra_layout_script(fix))
    stack.start_worker()
    try:
        handle = await stack.request("Add an extra screen", max_merge_repairs=1 if fix else 0)
        await stack.wait_stage(handle.id, Stage.AWAITING_APPROVAL)
        remove_subtitle(stack)
        moved = stack.base_log()[0]
        result = await approve_each_build(handle, 120)
    finally:
        await stack.close()

    blocked = [e.message for e in result.timeline if "nothing was pushed" in e.message]
    assert blocked and "@string/subtitle is used but not defined" in blocked[0]
    if not fix:
        assert result.stage == Stage.FAILED
        assert stack.base_log()[0] == moved and stack.honk_commits() == [], "nothing reached main"
        assert "nothing was pushed" in result.last_error
    else:
        assert result.stage == Stage.MERGED, result.last_error
        assert stack.honk_commits() == [result.links.merged_commit]
        assert "@string/greeting" in stack.remote_file("res/layout/extra.xml")
        assert "subtitle" not in stack.remote_file("res/values/strings.xml")


async def test_conflict_goes_back_to_agent_with_hunks_then_merges(dev_env, tmp_path, task_queue):
    resolved = (Path(__file__).resolve().parents[2] / "examples/hello-android/res/values/strings.xml").read_text()
    resolved = resolved.replace("Hello from Honk!", "Hello from the bus and the office!")
    script = {
        "replies": [
            {
                "when": "greeting",
                "feedback": "conflict",
                "summary": "Resolved the greeting conflict.",
                "edits": [{"path": "res/values/strings.xml", "write": resolved}],
            },
            *SCRIPT["replies"],
        ]
    }
    stack = Stack(dev_env, tmp_path, task_queue, script=script)
    stack.start_worker()
    try:
        handle = await stack.request("Change the greeting to say 'Hello from the bus!'")
        await stack.wait_stage(handle.id, Stage.AWAITING_APPROVAL)
        stack.push_to_base("res/values/strings.xml", "Hello from Honk!", "Hello from the office!", "Office greeting")
        result = await approve_each_build(handle, 120)
    finally:
        await stack.close()

    assert result.stage == Stage.MERGED, result.last_error
    blocked = next(e.message for e in result.timeline if "Merge blocked" in e.message)
    assert "conflicts in: res/values/strings.xml" in blocked
    assert "<<<<<<<" in blocked or "Hello from the office!" in blocked, "the hunks are described"
    assert result.round == 2
    assert "Hello from the bus and the office!" in stack.remote_file("res/values/strings.xml")
    assert stack.honk_commits() == [result.links.merged_commit]


async def test_worker_killed_after_pushing_base_does_not_merge_twice(dev_env, tmp_path, task_queue):
    stack = Stack(dev_env, tmp_path, task_queue)
    pidfile = tmp_path / "worker.pid"
    # The worker's git: the real one, then — right after a successful push of the base —
    # a SIGKILL to the worker's whole process group, before the activity can complete.
    wrapper = tmp_path / "git-then-die"
    wrapper.write_text(
        f'#!/bin/sh\n{shutil.which("git")} "$@"; rc=$?\n'
        # The subcommand as a word: this test's own paths contain "push".
        'case " $* " in *" push "*refs/heads/main*)\n'
        f"  if [ $rc -eq 0 ] && [ -f {pidfile} ]; then pid=$(cat {pidfile}); rm -f {pidfile}; "
        f'{sys.executable} -c "import os, sys; os.killpg(int(sys.argv[1]), 9)" $pid; fi;;\n'
        "esac\nexit $rc\n"
    )
    wrapper.chmod(0o755)
    env = {**stack.cli_env(), "GIT_PYTHON_GIT_EXECUTABLE": str(wrapper)}

    def spawn() -> subprocess.Popen:
        return WorkerProcess(env, tmp_path / "worker.log").process

    first = spawn()
    second = None
    try:
        handle = await stack.request(
            "Change the greeting to say 'Hello from the bus!'", heartbeat_timeout=timedelta(seconds=5)
        )
        await stack.wait_stage(handle.id, Stage.AWAITING_APPROVAL)
        pidfile.write_text(str(first.pid))
        await handle.signal("approve", {"by": "alice"})
        await asyncio.to_thread(first.wait, 60)
        assert first.returncode == -signal.SIGKILL, "the hook killed the worker mid-merge"
        assert len(stack.honk_commits()) == 1, "the base was pushed before the kill"
        second = spawn()
        result = await asyncio.wait_for(handle.result(), 120)
    finally:
        for proc in (first, second):
            if proc and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert result.stage == Stage.MERGED
    assert stack.honk_commits() == [result.links.merged_commit], "no second commit"
    assert any("already on the base" in e.message for e in result.timeline)
