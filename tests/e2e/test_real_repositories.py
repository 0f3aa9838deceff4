"""Honk on repositories that are not its sample app and have no `.honk.toml`: a Python
library with a src layout and a Node app, whose checks need dependencies from the package
registries. The whole pipeline runs on the real dev server, the environment setup reaches
PyPI / npm from inside the sandbox (setup only), the scripted model fixes a failing test."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
from pathlib import Path

import git
import pytest
from honkstack import Stack

from honk.changes import get_status
from honk.workflows.contract import RequestStatus, Stage

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")

PY_BUGGY = "def add(a, b):\n    return a - b\n"
# A check that, like many real ones, leaves a virtualenv and build outputs in the workspace.
PY_CONFTEST = """
import pathlib

def pytest_sessionstart(session):
    root = pathlib.Path(__file__).parent
    (root / ".venv" / "bin").mkdir(parents=True, exist_ok=True)
    (root / ".venv" / "pyvenv.cfg").write_text("home = /usr/bin\\n")
    (root / ".venv" / "bin" / "python").write_text("#!/bin/sh\\n")
    (root / "build" / "lib").mkdir(parents=True, exist_ok=True)
    (root / "build" / "lib" / "tinycalc.so").write_bytes(b"\\0" * 64)
    (root / "dist").mkdir(exist_ok=True)
    (root / "dist" / "tinycalc-0.1.tar.gz").write_bytes(b"tar")
"""
PY_TEST = "import attr  # the real third-party test dependency (attrs)\n\nfrom tinycalc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"

SCRIPT = {
    "replies": [
        {
            "when": "Fix add",
            "summary": "add() subtracted instead of adding; it adds now.",
            "edits": [{"path": "src/tinycalc/__init__.py", "replace": "a - b", "with": "a + b"}],
        },
        {
            "when": "docstring",
            "summary": "Documented add().",
            "edits": [{"path": "src/tinycalc/__init__.py", "replace": "):\n", "with": '):\n    """Sum."""\n'}],
        },
        {
            "when": "Fix the sum",
            "summary": "sum() adds now.",
            "edits": [{"path": "index.js", "replace": "a - b", "with": "a + b"}],
        },
    ]
}


def python_project(extras: str) -> object:
    def edit(app: Path) -> None:
        shutil.rmtree(app)
        (app / "src" / "tinycalc").mkdir(parents=True)
        (app / "tests").mkdir()
        (app / "pyproject.toml").write_text(
            f'[project]\nname = "tinycalc"\nversion = "0.1"\n\n[project.optional-dependencies]\ntest = [{extras}]\n'
        )
        (app / "src" / "tinycalc" / "__init__.py").write_text(PY_BUGGY)
        (app / "tests" / "test_calc.py").write_text(PY_TEST)
        (app / "conftest.py").write_text(PY_CONFTEST)

    return edit


def node_project(app: Path) -> None:
    shutil.rmtree(app)
    app.mkdir()
    (app / "package.json").write_text(
        '{"name": "tinysum", "version": "1.0.0", "private": true,\n'
        ' "scripts": {"test": "node test.js"},\n "devDependencies": {"is-number": "7.0.0"}}\n'
    )
    (app / "index.js").write_text("module.exports = (a, b) => a - b;\n")
    (app / "test.js").write_text(
        "const isNumber = require('is-number');\nconst sum = require('./index');\n"
        "if (!isNumber(sum(2, 3)) || sum(2, 3) !== 5) { console.error('sum(2, 3) should be 5'); process.exit(1); }\n"
    )
    lock = subprocess.run(
        ["npm", "install", "--package-lock-only", "--no-audit", "--no-fund"], cwd=app, capture_output=True, text=True
    )
    assert lock.returncode == 0, lock.stderr


@pytest.fixture
def stacks(dev_env, tmp_path, task_queue):
    def make(edit_app) -> Stack:
        stack = Stack(dev_env, tmp_path / "stack", task_queue, script=SCRIPT, edit_app=edit_app)
        stack.start_worker()
        return stack

    return make


async def ended(stack: Stack, request_id: str, timeout: float = 240) -> RequestStatus:
    """The final status; on a timeout, the status so far (what it is stuck on)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status = await get_status(stack.client, request_id)
        if status.stage.terminal:
            return status
        assert asyncio.get_running_loop().time() < deadline, status.model_dump_json(indent=1)
        await asyncio.sleep(0.5)


def merged_files(stack: Stack, sha: str) -> list[str]:
    return git.Repo(stack.remote).git.show("--name-only", "--format=", sha).split()


def check_logs(stack: Stack, request_id: str) -> list[str]:
    logs = stack.settings.artifacts_dir / request_id / "logs"
    return sorted(p.name for p in logs.glob("check-*.log"))


async def test_python_src_layout_without_honk_toml(stacks, caplog):
    caplog.set_level(logging.INFO, logger="honk.environments")
    stack = stacks(python_project('"pytest", "attrs"'))
    try:
        first = await stack.request("Fix add so the test passes")
        waiting = await stack.wait_stage(first.id, Stage.AWAITING_APPROVAL, timeout=240)
        assert [m for m in caplog.messages if m == "environment built"] == ["environment built"]
        envs = list((stack.settings.data_dir / "envs" / "hello-android").iterdir())
        assert len([e for e in envs if not e.name.startswith(".")]) == 1, envs

        # One check run in the attempt: the agent's own verifier run passed on this very tree.
        assert check_logs(stack, first.id) == ["check-pytest-agent1-1.log"]
        assert waiting.agent_runs == 1
        assert any("not run again" in e.message for e in waiting.timeline), "the timeline says so"

        # The work branch holds the change only, not the check's .venv, build/ or dist/.
        branch = waiting.links.work_branch
        tree = git.Repo(stack.remote).git.ls_tree("-r", "--name-only", branch).split()
        assert not [p for p in tree if p.startswith((".venv", "build/", "dist/"))], tree

        await first.signal("approve", {"by": "alice"})
        result = await asyncio.wait_for(first.result(), 120)
        assert result.stage == Stage.MERGED, result.last_error
        assert merged_files(stack, result.links.merged_commit) == ["src/tinycalc/__init__.py"]
        assert "a + b" in stack.remote_file("src/tinycalc/__init__.py")

        # The next request reuses the environment.
        second = await stack.request("Add a docstring to add")
        await stack.wait_stage(second.id, Stage.AWAITING_APPROVAL, timeout=180)
        assert "environment cache hit" in caplog.messages
        assert caplog.messages.count("environment built") == 1
        await second.signal("cancel", {"by": "bob"})
    finally:
        await stack.close()


async def test_missing_test_dependency_fails_at_once_with_snippet(stacks):
    stack = stacks(python_project('"pytest"'))  # attrs is imported but not declared
    try:
        handle = await stack.request("Fix add so the test passes")
        result = await ended(stack, handle.id)
        assert result.stage == Stage.FAILED
        error = result.last_error or ""
        assert "`attr`" in error and "ModuleNotFoundError" in error, error
        assert "[environment]" in error and "[[checks]]" in error, "the .honk.toml snippet"
        assert result.agent_runs == 1, "no repair attempt"
        assert len(check_logs(stack, handle.id)) == 1, "one check run"
    finally:
        await stack.close()


@pytest.mark.skipif(shutil.which("npm") is None, reason="needs npm")
async def test_node_project_with_package_lock(stacks, caplog):
    caplog.set_level(logging.INFO, logger="honk.environments")
    stack = stacks(node_project)
    try:
        handle = await stack.request("Fix the sum function")
        await stack.wait_stage(handle.id, Stage.AWAITING_APPROVAL, timeout=240)
        assert caplog.messages.count("environment built") == 1
        assert check_logs(stack, handle.id) == ["check-test-agent1-1.log"]
        await handle.signal("approve", {"by": "alice"})
        result = await asyncio.wait_for(handle.result(), 120)
        assert result.stage == Stage.MERGED, result.last_error
        assert merged_files(stack, result.links.merged_commit) == ["index.js"], "no node_modules"
    finally:
        await stack.close()
