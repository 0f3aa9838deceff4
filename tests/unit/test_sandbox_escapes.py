"""A hostile command in the real sandbox (bubblewrap, the worker as root here): no
capabilities, no remount, nothing of the host's secrets, no network, bounded resources."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from honk.commands import run_command
from honk.process_limits import Limits
from honk.sandbox import Sandbox, SandboxUnavailable, bwrap_works

pytestmark = pytest.mark.skipif(not bwrap_works(), reason="bubblewrap is installed by `make test`")

# The interpreter of this suite, shown read-only as an operator would configure it.
TOOLS = (Path(sys.prefix), Path(sys.base_prefix))


def box(data: Path, **overrides) -> Sandbox:
    small = Limits(processes=64, memory_mb=512, file_size_mb=8, open_files=128)
    return Sandbox("bwrap", **{"tools": TOOLS, "data_dir": data, "limits": small, **overrides})


def run(tmp_path: Path, script: str, *args: str, timeout_s: float = 30, **overrides):
    ws = tmp_path / "data" / "workspaces" / "req-1"
    (ws / ".git").mkdir(parents=True, exist_ok=True)
    log_path = tmp_path / "logs" / f"run-{time.monotonic_ns()}.log"
    result = run_command(
        [sys.executable, "-c", script, *args],
        ws,
        timeout_s=timeout_s,
        log_path=log_path,
        kill_grace_s=1,
        sandbox=box(tmp_path / "data", **overrides),
    )
    return result, log_path.read_text()


def test_no_capabilities_and_no_remount(tmp_path: Path) -> None:
    script = (
        "import subprocess\n"
        "print([l for l in open('/proc/self/status') if l.startswith('CapEff')][0].strip())\n"
        "r = subprocess.run(['mount', '-o', 'remount,rw', '.git'], capture_output=True, text=True)\n"
        "print('remount exit', r.returncode)\n"
        "try:\n    open('.git/config', 'w').write('[core]\\n')\n    print('git writable')\n"
        "except OSError as e:\n    print('git read-only', e.errno)\n"
    )
    result, log = run(tmp_path, script)
    assert result.ok, log
    assert "CapEff:\t0000000000000000" in log
    assert "remount exit 0" not in log and "git read-only" in log
    assert not (tmp_path / "data" / "workspaces" / "req-1" / ".git" / "config").exists()


def test_host_secrets_and_other_workspaces_are_invisible(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "workspaces" / "other").mkdir(parents=True)
    (data / "workspaces" / "other" / "secret.txt").write_text("other request")
    (data / "secrets").mkdir()
    (data / "secrets" / "link-key").write_text("signing key")
    probes = [str(Path.home()), "/root", "/home", str(data / "secrets"), str(data / "workspaces" / "other")]
    script = (
        "import json, os, sys\n"
        "seen = {p: (os.listdir(p) if os.path.isdir(p) else None) for p in sys.argv[1:]}\n"
        "print(json.dumps(seen))\n"
    )
    result, log = run(tmp_path, script, *probes)
    assert result.ok, log
    seen = json.loads(log.strip().splitlines()[-1])
    # Only the path leading to a configured tool directory (this interpreter) may show.
    leading = {part for tool in TOOLS for part in tool.parts}
    for path in probes:
        assert not set(seen[path] or ()) - leading, f"{path} is visible: {seen[path]}"


def test_writes_outside_the_workspace_fail(tmp_path: Path) -> None:
    targets = [str(tmp_path / "outside.txt"), "/usr/honk-probe", "/etc/honk-probe", str(Path.home() / "honk-probe")]
    script = (
        "import sys\n"
        "for t in sys.argv[1:]:\n"
        "    try:\n        open(t, 'w').write('x'); print('wrote', t)\n"
        "    except OSError as e:\n        print('blocked', t, e.errno)\n"
        "open('inside.txt', 'w').write('fine')\n"
    )
    result, log = run(tmp_path, script, *targets)
    assert result.ok, log
    # The box's /tmp is its own (the first target lands there); nothing else is writable.
    assert [line for line in log.splitlines() if line.startswith("wrote")] == [f"wrote {targets[0]}"]
    for target in targets:
        assert not Path(target).exists()
    assert (tmp_path / "data" / "workspaces" / "req-1" / "inside.txt").read_text() == "fine"


def test_network_only_when_configured(tmp_path: Path, listener) -> None:
    port, accepted = listener
    script = (
        "import socket, sys\n"
        "try:\n    socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=3).close(); print('reached')\n"
        "except OSError as e:\n    print('blocked', type(e).__name__)\n"
    )
    result, log = run(tmp_path, script, str(port))
    assert "blocked" in log and accepted == []
    result, log = run(tmp_path, script, str(port), network=True)
    assert "reached" in log and len(accepted) == 1


def test_fork_bomb_is_bounded(tmp_path: Path) -> None:
    script = (
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    for _ in range(500):\n"
        "        if os.fork() == 0:\n            time.sleep(30); os._exit(0)\n"
        "        n += 1\n"
        "except OSError as e:\n    print('fork refused after', n, e.errno)\n"
        "else:\n    print('forked', n)\n"
    )
    started = time.monotonic()
    result, log = run(tmp_path, script, timeout_s=20)
    assert "fork refused after" in log, log
    assert int(log.split("fork refused after")[1].split()[0]) < 64
    assert time.monotonic() - started < 15


def test_memory_hog_huge_file_and_hang_are_stopped(tmp_path: Path) -> None:
    result, log = run(tmp_path, "b = bytearray(2 * 1024**3); print('allocated')")
    assert not result.ok and "allocated" not in log and "MemoryError" in log
    result, log = run(tmp_path, "open('big', 'wb').write(b'x' * (64 * 1024**2)); print('written')")
    assert not result.ok and "written" not in log
    assert (tmp_path / "data" / "workspaces" / "req-1" / "big").stat().st_size <= 8 * 1024**2
    started = time.monotonic()
    result, _ = run(tmp_path, "import time; time.sleep(60)", timeout_s=1)
    assert result.timed_out and time.monotonic() - started < 10


def test_worker_environment_is_not_inherited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_DEPLOY_TOKEN", "deploy-token-canary")
    result, log = run(tmp_path, "import os; print(sorted(os.environ))")
    assert result.ok and "MY_DEPLOY_TOKEN" not in log and "deploy-token-canary" not in log


def test_path_entries_in_home_or_data_dir_are_not_shown(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "bin").mkdir(parents=True)
    search_path = os.pathsep.join([str(Path.home() / ".local" / "bin"), str(data / "bin"), "/usr/bin"])
    argv = box(data).wrap(["true"], tmp_path, tmp_path, search_path)
    shown = [argv[i + 1] for i, arg in enumerate(argv) if arg in ("--ro-bind", "--bind")]
    assert str(data / "bin") not in shown and str(Path.home() / ".local" / "bin") not in shown


def test_refuses_to_run_unboxed_unless_told(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("honk.sandbox.bwrap_works", lambda: False)  # a host without user namespaces
    with pytest.raises(SandboxUnavailable, match="HONK_SANDBOX=none"):
        Sandbox("auto").wrap(["true"], tmp_path, tmp_path)
    assert Sandbox("none").wrap(["true"], tmp_path, tmp_path)[-1] == "true"


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root to switch user")
def test_unprivileged_worker_gets_the_same_box(tmp_path: Path) -> None:
    """The box as a uid-65534 worker would build it (bwrap needs unprivileged user namespaces)."""
    ws = Path(tempfile.mkdtemp(prefix="honk-unprivileged-"))  # pytest's tmp is root-only
    try:
        ws.chmod(0o777)
        script = "grep CapEff /proc/self/status; ls -A /root; touch inside; touch /usr/x || echo usr-blocked"
        argv = box(tmp_path / "data", tools=()).wrap(["sh", "-c", script], ws, ws)
        done = subprocess.run(
            ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", *argv],
            cwd=ws,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.stdout.splitlines() == ["CapEff:\t0000000000000000", "usr-blocked"], done.stderr
        assert (ws / "inside").exists()
    finally:
        shutil.rmtree(ws)
