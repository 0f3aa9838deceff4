"""Repository commands in the box: no network, nothing writable but the workspace."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from repos import make_remote

from honk.activities.checks import CheckActivities
from honk.config.settings import load_settings
from honk.sandbox import Sandbox, bwrap_works
from honk.workflows.contract import ChecksTask, WorkspaceRef

pytestmark = pytest.mark.skipif(not bwrap_works(), reason="bubblewrap is installed by `make test`")

PROBE = """\
import pathlib, socket, sys
port, outside = int(sys.argv[1]), sys.argv[2]
results = []
try:
    socket.create_connection(("127.0.0.1", port), timeout=3).close()
    results.append("network: reached")
except OSError as exc:
    results.append(f"network: blocked ({exc.__class__.__name__})")
for target in (outside, "/usr/local/honk-probe", str(pathlib.Path.home().parent / "honk-probe"), ".git/honk-probe"):
    try:
        pathlib.Path(target).write_text("escaped")
        results.append(f"write {target}: done")
    except OSError as exc:
        results.append(f"write {target}: blocked ({exc.errno})")
pathlib.Path("inside.txt").write_text("fine")
print("\\n".join(results))
"""


def repo_with_probe(tmp_path: Path, port: int, outside: Path) -> WorkspaceRef:
    honk_toml = f'[[checks]]\nname = "probe"\nrun = ["python3", "probe.py", "{port}", "{outside}"]\n'
    remote = make_remote(tmp_path, {"probe.py": PROBE, ".honk.toml": honk_toml}, message="probe")
    return WorkspaceRef(
        request_id="honk-probe-1", repo="probe", remote=str(remote), base_branch="main", work_branch="honk/probe-1"
    )


def test_check_cannot_reach_network_or_write_outside(tmp_path, listener):
    port, accepted = listener
    for leftover in ("/usr/local/honk-probe", "/tmp/honk-probe"):
        Path(leftover).unlink(missing_ok=True)
    outside = tmp_path / "outside.txt"
    checks = CheckActivities(load_settings(data_dir=tmp_path / "data"))
    outcome = checks.run_checks(ChecksTask(workspace=repo_with_probe(tmp_path, port, outside), attempt=1))
    run = outcome.runs[0]
    assert outcome.passed, run.output
    assert "network: blocked" in run.output
    assert accepted == [], "no connection reached the host"
    # Writes to /tmp land in the box's own throwaway /tmp; nothing reaches the host.
    assert not outside.exists() and not Path("/usr/local/honk-probe").exists()
    assert not Path("/tmp/honk-probe").exists()
    workspace = tmp_path / "data" / "workspaces" / "honk-probe-1"
    assert (workspace / "inside.txt").read_text() == "fine", "the workspace stays writable"
    assert "write .git/honk-probe: blocked" in run.output and not (workspace / ".git" / "honk-probe").exists()


def test_without_sandbox_the_same_check_escapes_and_honk_warns(tmp_path, listener, caplog):
    port, accepted = listener
    outside = tmp_path / "outside.txt"
    checks = CheckActivities(load_settings(data_dir=tmp_path / "data", sandbox="none"))
    with caplog.at_level(logging.WARNING):
        outcome = checks.run_checks(ChecksTask(workspace=repo_with_probe(tmp_path, port, outside), attempt=1))
    assert "network: reached" in outcome.runs[0].output and len(accepted) == 1
    assert outside.read_text() == "escaped"
    assert any("NOT SANDBOXED" in r.getMessage() for r in caplog.records)
    for leftover in ("/usr/local/honk-probe", "/tmp/honk-probe"):
        Path(leftover).unlink(missing_ok=True)


def test_wrap_exposes_only_the_workspace_home_and_configured_paths(tmp_path):
    for name in ("ws", "home", "cache"):
        (tmp_path / name).mkdir()
    box = Sandbox("bwrap", writable=(tmp_path / "cache",)).wrap(["make", "test"], tmp_path / "ws", tmp_path / "home")
    binds = [box[i + 1] for i, arg in enumerate(box) if arg == "--bind"]
    assert binds == [str(tmp_path / "home"), str(tmp_path / "cache"), str(tmp_path / "ws")]
    for flag in ("--unshare-user", "--unshare-pid", "--unshare-net", "--new-session", "--die-with-parent"):
        assert flag in box
    assert box[box.index("--cap-drop") + 1] == "ALL" and box[box.index("--uid") + 1] == "65534"
    read_only = [box[i + 1] for i, arg in enumerate(box) if arg == "--ro-bind"]
    assert "/" not in read_only and "/usr" in read_only
    assert not [p for p in read_only if p.startswith(("/root", "/home"))]
    assert box[-3:] == ["--", "make", "test"]
