"""run_command and trim_output with real subprocesses and real files."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest
from temporalio.exceptions import CancelledError
from temporalio.testing import ActivityEnvironment

from honk.activities.adapter import adapting
from honk.commands import EXIT_NOT_FOUND, run_command
from honk.log_trim import trim_output

PY = sys.executable


def alive(pid: int) -> bool:
    """Running (zombies count as dead: a container's init may be slow to reap them)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_dead(pid: int, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_success_output_goes_to_log(tmp_path: Path) -> None:
    log_path = tmp_path / "logs" / "ok.log"
    result = run_command(
        [PY, "-c", "import sys; print('hello'); print('to stderr', file=sys.stderr)"],
        tmp_path,
        timeout_s=30,
        log_path=log_path,
    )
    assert result.exit_code == 0 and result.ok and not result.timed_out
    assert result.log_path == log_path
    text = log_path.read_text()
    assert "hello" in text and "to stderr" in text  # stdout and stderr merged
    assert "hello" in result.output_tail


def test_environment_is_scrubbed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret-xyz")
    monkeypatch.setenv("HONK_SLACK_TOKEN", "xoxb-secret-token")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-abc")
    monkeypatch.setenv("LD_PRELOAD", "")
    log_path = tmp_path / "env.log"
    result = run_command(
        [PY, "-c", "import os; [print(f'{k}={v}') for k, v in sorted(os.environ.items())]"],
        tmp_path,
        timeout_s=30,
        env_extra={"GREETING": "hi"},
        log_path=log_path,
    )
    assert result.ok
    env = dict(line.split("=", 1) for line in log_path.read_text().splitlines() if "=" in line)
    text = log_path.read_text()
    for secret in ("sk-ant-secret-xyz", "xoxb-secret-token", "aws-secret-abc"):
        assert secret not in text
    assert not [k for k in env if k.startswith("HONK_") or k.endswith(("_KEY", "_TOKEN"))]
    assert set(env) <= {"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "TERM", "CI", "PYTHONDONTWRITEBYTECODE", "GREETING"}
    assert env["GREETING"] == "hi" and env["TERM"] == "dumb"
    assert env["HOME"] != os.environ.get("HOME")
    assert env["TMPDIR"].startswith(env["HOME"])
    assert not Path(env["HOME"]).exists()  # the scratch home is removed afterwards


def test_command_not_found_is_a_clear_result(tmp_path: Path) -> None:
    result = run_command(["honk-no-such-tool", "--flag"], tmp_path, timeout_s=5, log_path=tmp_path / "nf.log")
    assert result.exit_code == EXIT_NOT_FOUND and not result.ok
    assert result.output_tail == "command not found: honk-no-such-tool"
    assert "command not found: honk-no-such-tool" in (tmp_path / "nf.log").read_text()


def test_not_executable_is_a_clear_result(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    result = run_command([str(script)], tmp_path, timeout_s=5, log_path=tmp_path / "nx.log")
    assert result.exit_code == 126
    assert "command not executable" in result.output_tail


def test_timeout_kills_the_process_tree(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    started = time.monotonic()
    result = run_command(
        ["sh", "-c", f"sleep 60 & echo $! > {pid_file}; echo started; wait"],
        tmp_path,
        timeout_s=1,
        log_path=tmp_path / "to.log",
    )
    assert result.timed_out and result.exit_code is None and not result.ok
    assert time.monotonic() - started < 10
    assert wait_dead(int(pid_file.read_text())), "the sleeping child survived the timeout"
    assert "timed out after 1s" in result.output_tail


def test_sigterm_ignored_gets_sigkill_after_grace(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    result = run_command(
        ["sh", "-c", f"trap '' TERM; sleep 60 & echo $! > {pid_file}; wait; wait"],
        tmp_path,
        timeout_s=0.5,
        kill_grace_s=0.5,
        log_path=tmp_path / "term.log",
    )
    assert result.timed_out
    assert wait_dead(int(pid_file.read_text()))


def test_background_leftovers_are_killed_after_exit(tmp_path: Path) -> None:
    pid_file = tmp_path / "daemon.pid"
    result = run_command(
        ["sh", "-c", f"sleep 60 > /dev/null 2>&1 & echo $! > {pid_file}; exit 0"],
        tmp_path,
        timeout_s=10,
        log_path=tmp_path / "bg.log",
    )
    assert result.ok
    assert wait_dead(int(pid_file.read_text()))


def test_cancellation_kills_the_tree_and_raises(tmp_path: Path) -> None:
    env = ActivityEnvironment()
    beats: list[object] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    pid_file = tmp_path / "child.pid"
    threading.Timer(1.0, env.cancel).start()
    started = time.monotonic()

    def in_activity(*args, **kwargs):  # as an activity adapter runs domain code
        with adapting():
            return run_command(*args, **kwargs)

    with pytest.raises(CancelledError):
        env.run(
            in_activity,
            ["sh", "-c", f"sleep 60 & echo $! > {pid_file}; wait"],
            tmp_path,
            timeout_s=60,
            log_path=tmp_path / "cancel.log",
            heartbeat_every=0.2,
        )
    assert time.monotonic() - started < 10
    assert wait_dead(int(pid_file.read_text()))
    assert beats, "no heartbeat while the command ran"
    assert "process tree killed" in (tmp_path / "cancel.log").read_text()


def test_large_output_is_streamed_and_trimmed(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "for i in range(40000): print(f'compiling module {i} ok')\n"
        "print('src/widget.c:12:5: error: expected ; before }')\n"
        "for i in range(40000): print(f'linking object {i}')\n"
        "print('BUILD FAILED in 3s')\n"
        "sys.exit(1)\n"
    )
    log_path = tmp_path / "big.log"
    result = run_command([PY, "-c", script], tmp_path, timeout_s=60, log_path=log_path)
    assert result.exit_code == 1
    assert log_path.stat().st_size > 1_000_000
    assert len(result.output_tail) <= 4000
    assert "src/widget.c:12:5: error: expected ; before }" in result.output_tail
    assert "BUILD FAILED in 3s" in result.output_tail
    assert "lines omitted …]" in result.output_tail


# --------------------------------------------------------------------------- trim_output


def test_trim_keeps_everything_when_short(tmp_path: Path) -> None:
    log_path = tmp_path / "short.log"
    log_path.write_text("one\ntwo\nthree\n")
    assert trim_output(log_path) == "one\ntwo\nthree"


def test_trim_keeps_errors_and_tail_with_markers(tmp_path: Path) -> None:
    lines = [f"noise {i}" for i in range(5000)]
    lines[100] = "Traceback (most recent call last):"
    lines[101] = '  File "app/queue.py", line 42, in pop'
    lines[102] = "IndexError: pop from empty list"
    lines[2000] = "E       assert 3 == 4"
    lines[3000] = "FAILED tests/test_queue.py::test_pop_empty - assert 3 == 4"
    log_path = tmp_path / "mixed.log"
    log_path.write_text("\n".join(lines) + "\n")
    out = trim_output(log_path, limit=1000)
    assert len(out) <= 1000
    for kept in (lines[100], lines[101], lines[2000], lines[3000], "noise 4999"):
        assert kept in out
    assert out.startswith("[… 100 lines omitted …]")
    assert "noise 50\n" not in out
    # Log order is preserved.
    assert out.index("Traceback") < out.index("E       assert") < out.index("FAILED")


def test_trim_bounds_a_gigantic_single_line(tmp_path: Path) -> None:
    log_path = tmp_path / "oneline.log"
    with open(log_path, "wb") as f:
        f.write(b"x" * 3_000_000 + b"\nerror: after the blob\n")
    out = trim_output(log_path, limit=4000)
    assert len(out) <= 4000
    assert "error: after the blob" in out


def test_trim_strips_ansi_and_progress(tmp_path: Path) -> None:
    log_path = tmp_path / "ansi.log"
    log_path.write_bytes(b"\x1b[31mFAILED\x1b[0m test_x\n 10%\r 50%\r100% done\n")
    assert trim_output(log_path) == "FAILED test_x\n100% done"


def test_trim_respects_small_limits_and_missing_files(tmp_path: Path) -> None:
    log_path = tmp_path / "many.log"
    log_path.write_text("".join(f"error: problem number {i}\n" for i in range(1000)))
    assert len(trim_output(log_path, limit=100)) <= 100
    assert trim_output(tmp_path / "absent.log") == ""


def test_script_without_interpreter_line_is_a_clear_result(tmp_path: Path) -> None:
    script = tmp_path / "no-shebang"
    script.write_bytes(b"\x7fELF not really a binary")
    script.chmod(0o755)
    result = run_command([str(script)], tmp_path, timeout_s=5, log_path=tmp_path / "nx.log")
    assert result.exit_code == 126 and "command not executable" in result.output_tail


def test_runaway_output_is_stopped_at_the_log_limit(tmp_path: Path) -> None:
    log_path = tmp_path / "runaway.log"
    result = run_command(
        [PY, "-c", "while True: print('spam ' * 100)"],
        tmp_path,
        timeout_s=60,
        log_path=log_path,
        max_log_bytes=2_000_000,
    )
    assert result.exit_code is None and not result.timed_out and not result.ok
    assert result.error == "output exceeded 2000000 bytes"
    # The size is checked every poll (0.1 s), so a fast writer overshoots by what it writes
    # in that time; the point is that it stops.
    assert log_path.stat().st_size < 1_000_000_000
    assert "output exceeded" in result.output_tail
