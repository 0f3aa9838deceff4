"""The `honk` command as users run it: the demo, and the dev stack resuming a request."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import git
import pytest
from conftest import ROOT, free_port

from honk.cli.demo import SAMPLE_APP, create_remote

needs_android = pytest.mark.skipif(
    not all(__import__("shutil").which(t) for t in ("aapt", "zipalign", "apksigner", "java")),
    reason="Android build tools are installed by `make test`",
)


def honk_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HONK_")}
    env.update(
        {
            "HONK_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
            "HONK_UI_PORT": str(free_port()),
            "HONK_DATA_DIR": str(tmp_path / "data"),
            "HONK_REGISTRY": str(ROOT / "examples" / "honk.toml"),
            **extra,
        }
    )
    return env


def honk(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "honk.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


@needs_android
def test_demo_merges_and_says_the_model_is_scripted(tmp_path):
    env = honk_env(tmp_path)
    result = honk(env, "demo", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    out = " ".join(result.stdout.split())
    assert "The model is SCRIPTED" in out
    assert "apksigner verify: OK" in out
    remote = git.Repo(tmp_path / "data" / "remotes" / "hello-android.git")
    message = remote.git.log("-1", "--format=%B", "main")
    for trailer in ("Honk-Request: honk-hello-android-", "Requested-by:", "Approved-by: alice"):
        assert trailer in message
    assert "Hello from the bus!" in remote.git.show("main:res/values/strings.xml")


@needs_android
def test_dev_stack_resumes_a_waiting_request_after_restart(tmp_path):
    env = honk_env(tmp_path, HONK_USER="bob")
    create_remote(SAMPLE_APP, tmp_path / "data" / "remotes" / "hello-android.git")

    def start_dev() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "honk.cli", "dev"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "dev.log").open("ab"),
        )

    def wait_ready() -> None:
        deadline = time.monotonic() + 60
        while honk(env, "list", "--json").returncode != 0:
            assert time.monotonic() < deadline, (tmp_path / "dev.log").read_text()[-2000:]
            time.sleep(0.5)

    dev = start_dev()
    try:
        wait_ready()
        started = honk(
            env,
            "request",
            "--repo",
            "hello-android",
            "--wait",
            "--json",
            "Change the greeting to say 'Hello from the bus!'",
        )
        assert started.returncode == 0, started.stderr
        request_id = json.loads(started.stdout)["request_id"]
        assert json.loads(started.stdout)["stage"] == "AWAITING_APPROVAL"
    finally:
        dev.send_signal(signal.SIGINT)
        assert dev.wait(timeout=60) == 0, "Ctrl-C stops the stack cleanly"

    down = honk(env, "status", request_id)
    assert down.returncode == 2 and "cannot reach the Temporal server" in down.stderr

    dev = start_dev()
    try:
        wait_ready()
        refused = honk({**env, "HONK_USER": "mallory"}, "approve", request_id)
        assert refused.returncode == 2 and "mallory is not an approver" in refused.stderr
        approved = honk({**env, "HONK_USER": "alice"}, "approve", request_id)
        assert approved.returncode == 0, approved.stderr
        watched = honk(env, "watch", request_id)
        assert watched.returncode == 0 and "MERGED" in watched.stdout
        status = json.loads(honk(env, "status", request_id, "--json").stdout)
        assert status["stage"] == "MERGED" and status["approved_by"] == "alice"
    finally:
        dev.send_signal(signal.SIGINT)
        dev.wait(timeout=60)


def test_request_changes_is_the_command_and_revise_a_hidden_alias(tmp_path):
    env = honk_env(tmp_path)
    listed = honk(env, "--help")
    assert "request-changes" in listed.stdout and "revise" not in listed.stdout
    for name in ("request-changes", "revise"):
        shown = honk(env, name, "--help")
        assert shown.returncode == 0 and "Request changes" in shown.stdout, shown.stdout + shown.stderr
