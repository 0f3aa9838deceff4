"""Run one of the target repository's commands (a check, a build) safely.

The command is the repository's code, so it is treated as untrusted: it gets an argv (never a
shell string), a scrubbed environment without the worker's secrets, its own process group so
a timeout or a cancelled request kills everything it started, and its output goes straight to
a log file on disk (a 1 GB log never sits in the worker's memory). `trim_output` (honk/log_trim.py)
then reduces that log to the few kilobytes that matter for fixing a failure.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from temporalio.exceptions import CancelledError

from honk import telemetry
from honk.liveness import beat, cancelled, shielded
from honk.log_trim import trim_output
from honk.process_limits import pids_cgroup
from honk.sandbox import Sandbox

log = logging.getLogger(__name__)

# Exit codes a shell would use, so a missing tool reads like it does in a terminal.
EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126

DEFAULT_KILL_GRACE_S = 5.0
# A runaway command must not fill the worker's disk; no one reads more than this of a log.
DEFAULT_MAX_LOG_BYTES = 20 * 1024**2
_POLL_S = 0.1


@dataclass(frozen=True)
class CommandResult:
    exit_code: int | None  # None: killed (timeout, log limit) before it exited by itself
    duration_s: float
    timed_out: bool
    log_path: Path
    output_tail: str  # `trim_output` of the log
    error: str | None = None  # why it did not run to completion, in words

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


# --------------------------------------------------------------------------- environment

# Only these are taken from the worker's environment; everything else (HONK_*, API keys,
# tokens, cloud credentials) stays out of reach of the repository's code.
_PASSED_THROUGH = ("PATH",)
_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def command_env(env_extra: Mapping[str, str] | None, home: Path) -> dict[str, str]:
    """The environment a repository command sees: a minimal base plus what the caller adds.

    `env_extra` comes from the caller (the repository's `.honk.toml`, HONK_BUILD_NUMBER), so it
    is applied as given; the scrubbing is about what leaks from the worker.
    """
    env = {name: os.environ[name] for name in _PASSED_THROUGH if name in os.environ}
    env.setdefault("PATH", _DEFAULT_PATH)
    tmp = home / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(home),
        TMPDIR=str(tmp),
        LANG="C.UTF-8",
        LC_ALL="C.UTF-8",
        TERM="dumb",  # no colours or progress bars in logs
        CI="true",  # tools that would prompt or draw progress behave as in CI
        # A same-size edit within the same second would otherwise run stale bytecode.
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update({str(k): str(v) for k, v in (env_extra or {}).items()})
    return env


# --------------------------------------------------------------------------- running


@telemetry.traced(
    "command",
    attrs=lambda argv, cwd, **k: {
        "program": os.path.basename(str(argv[0])) if argv else "",
        "timeout_s": k.get("timeout_s"),
        "log": Path(k["log_path"]).name,
    },
    result=lambda r: {"exit_code": r.exit_code, "timed_out": r.timed_out, "duration_s": r.duration_s},
)
def run_command(
    argv: Sequence[str],
    cwd: Path,
    *,
    timeout_s: float,
    env_extra: Mapping[str, str] | None = None,
    log_path: Path,
    heartbeat_every: float = 5,
    kill_grace_s: float = DEFAULT_KILL_GRACE_S,
    max_log_bytes: int | None = None,
    tail_limit: int = 4000,
    sandbox: Sandbox | None = None,
) -> CommandResult:
    """Run `argv` in `cwd`, output merged into `log_path` (overwritten), and wait for it.

    Heartbeats every `heartbeat_every` seconds while inside an activity. When the activity is
    cancelled the whole process tree is killed and `CancelledError` is raised; a timeout kills
    the tree too and is reported as `timed_out`, not raised. With a `sandbox` the command runs
    boxed and under its resource limits. The log is cut at `max_log_bytes` (default: the
    sandbox's configured cap, else `DEFAULT_MAX_LOG_BYTES`) and the command stopped there.
    """
    if max_log_bytes is None:
        max_log_bytes = (sandbox.max_log_bytes if sandbox else None) or DEFAULT_MAX_LOG_BYTES
    argv = [str(a) for a in argv]
    if not argv:
        raise ValueError("empty command")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    fields = {"command": argv, "cwd": str(cwd), "log_path": str(log_path)}

    pids = pids_cgroup(sandbox.limits.processes) if sandbox is not None else contextlib.nullcontext()
    with pids as cgroup, _scratch_home() as home, _open_log(log_path) as log_file:
        proc: subprocess.Popen[bytes] | None = None
        try:
            # Shielded: a cancellation arriving while the process starts is raised only once
            # `proc` is known, so the except clause below can kill it.
            env = command_env(env_extra, home)
            boxed = argv
            if sandbox is not None:
                _require_executable(argv[0], cwd, env)  # the box would hide "not found"
                boxed = sandbox.wrap(argv, cwd, home, env.get("PATH", ""), cgroup)
            with shielded():
                proc = _start(boxed, cwd, env, log_file)
            log.info("command started", extra={**fields, "pid": proc.pid})
            exit_code, stop = _wait(proc, log_file, timeout_s, heartbeat_every, max_log_bytes, argv)
            if stop is not None:
                _kill_tree(proc, kill_grace_s)
                _cut(log_file, max_log_bytes)
                log_file.write(f"\n[honk: {stop.message}, process tree killed]\n".encode())
            else:
                _reap_leftovers(proc.pid)
        except BaseException as exc:
            if proc is None and isinstance(exc, OSError):
                return _not_started(argv, cwd, exc, log_file, log_path, started)
            # Cancellation (raised by us or injected into this thread by the SDK) or a bug:
            # never leave the tree running behind us.
            if proc is not None:
                with shielded():
                    _kill_tree(proc, kill_grace_s)
                    note = f"\n[honk: stopped ({type(exc).__name__}), process tree killed]\n"
                    log_file.write(note.encode())
            log.warning("command interrupted", extra={**fields, "error": repr(exc)})
            raise

    duration = round(time.monotonic() - started, 3)
    timed_out = stop is not None and stop.timed_out
    log.info(
        "command finished",
        extra={**fields, "exit_code": exit_code, "duration_s": duration, "timed_out": timed_out},
    )
    return CommandResult(
        exit_code=exit_code,
        duration_s=duration,
        timed_out=timed_out,
        log_path=log_path,
        output_tail=trim_output(log_path, tail_limit),
        error=stop.message if stop else None,
    )


def _cut(log_file: BinaryIO, max_bytes: int | None) -> None:
    """Drop what a fast writer got in past the cap (it is checked every poll), and say so."""
    if max_bytes is not None and os.fstat(log_file.fileno()).st_size > max_bytes:
        os.ftruncate(log_file.fileno(), max_bytes)
        log_file.write(f"\n[honk: log truncated at {max_bytes} bytes]".encode())


def _require_executable(program: str, cwd: Path, env: Mapping[str, str]) -> None:
    found = (cwd / program).exists() if "/" in program else shutil.which(program, path=env.get("PATH"))
    if not found:
        raise FileNotFoundError(2, "No such file or directory", program)


def _start(argv: list[str], cwd: Path, env: dict[str, str], log_file: BinaryIO) -> subprocess.Popen[bytes]:
    # The child writes into the log file itself: nothing is buffered in this process.
    return subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # own session and process group: the tree can be killed
        close_fds=True,
    )


@dataclass(frozen=True)
class _Stop:
    """Why a still-running command has to be killed."""

    message: str
    timed_out: bool = False


def _open_log(path: Path) -> BinaryIO:
    # Append mode: the child and our own notes share one file offset without clobbering each
    # other; truncation makes a retried attempt start a fresh log.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    return open(fd, "ab", buffering=0)


def _wait(
    proc: subprocess.Popen[bytes],
    log_file: BinaryIO,
    timeout_s: float,
    heartbeat_every: float,
    max_log_bytes: int | None,
    argv: list[str],
) -> tuple[int | None, _Stop | None]:
    """Wait for the process: (exit code, None), or (None, why it must be killed)."""
    started = time.monotonic()
    deadline = started + timeout_s
    next_beat = started
    with _exit_signal(proc) as exited:
        while True:
            try:
                return exited(), None
            except subprocess.TimeoutExpired:
                pass
            stop = _check_on(log_file, deadline, timeout_s, max_log_bytes, argv)
            if stop is not None:
                return None, stop
            now = time.monotonic()
            if now >= next_beat:
                beat({"command": argv[0], "elapsed_s": round(now - started)})
                next_beat = now + heartbeat_every


@contextlib.contextmanager
def _exit_signal(proc: subprocess.Popen[bytes]) -> Iterator[Callable[[], int]]:
    """A wait of at most _POLL_S that returns the moment the process exits: through a pidfd
    where the kernel has them (`Popen.wait(timeout)` sleeps in growing steps and adds up to
    half a short command's time again), else `Popen.wait`."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        yield lambda: proc.wait(timeout=_POLL_S)
        return

    def exited() -> int:
        if not select.select([fd], [], [], _POLL_S)[0]:
            raise subprocess.TimeoutExpired(proc.args, _POLL_S)
        return proc.wait()

    try:
        yield exited
    finally:
        os.close(fd)


def _check_on(
    log_file: BinaryIO, deadline: float, timeout_s: float, max_log_bytes: int | None, argv: list[str]
) -> _Stop | None:
    """Why a still-running command must stop now, if it must."""
    if cancelled():
        raise CancelledError(f"cancelled while running {argv[0]}")
    if time.monotonic() >= deadline:
        return _Stop(f"timed out after {timeout_s:g}s", timed_out=True)
    if max_log_bytes is not None and os.fstat(log_file.fileno()).st_size > max_log_bytes:
        return _Stop(f"output exceeded {max_log_bytes} bytes")
    return None


def _not_started(
    argv: list[str],
    cwd: Path,
    exc: OSError,
    log_file: BinaryIO,
    log_path: Path,
    started: float,
) -> CommandResult:
    """A command that could not start is a clear failed result, not a crash."""
    if isinstance(exc, FileNotFoundError) and not Path(cwd).is_dir():
        code, message = EXIT_NOT_FOUND, f"working directory not found: {cwd}"
    elif isinstance(exc, FileNotFoundError):
        code, message = EXIT_NOT_FOUND, f"command not found: {argv[0]}"
    else:  # permission denied, exec format error (a script without #!), ...
        reason = exc.strerror or type(exc).__name__
        code, message = EXIT_NOT_EXECUTABLE, f"command not executable: {argv[0]} ({reason})"
    log_file.write((message + "\n").encode())
    log.warning(message, extra={"command": argv, "cwd": str(cwd)})
    return CommandResult(
        exit_code=code,
        duration_s=round(time.monotonic() - started, 3),
        timed_out=False,
        log_path=log_path,
        output_tail=message,
        error=message,
    )


@contextlib.contextmanager
def _scratch_home() -> Iterator[Path]:
    """A fresh HOME per command, so tools cannot read the worker's dotfiles (~/.netrc,
    ~/.aws) nor carry state from one request to the next."""
    home = Path(tempfile.mkdtemp(prefix="honk-home-"))
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


# --------------------------------------------------------------------------- killing


def _signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to the group (0: only probe); False when no process is left in it."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:  # only possible if the pgid was reused by someone else's group
        return False


def _kill_tree(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM the whole process group, then SIGKILL what is still there after `grace_s`."""
    pgid = proc.pid  # start_new_session: the leader's pid is the group id
    if _signal_group(pgid, signal.SIGTERM):
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            # Reap the leader first: an un-reaped zombie still counts as a group member.
            if proc.poll() is not None and not _signal_group(pgid, 0):
                break
            time.sleep(0.05)
    # Whatever ignored SIGTERM (or was forked meanwhile) gets no second chance.
    _signal_group(pgid, signal.SIGKILL)
    proc.wait()


def _reap_leftovers(pgid: int) -> None:
    """Background processes a command left behind (a daemon a test started) die with it."""
    if _signal_group(pgid, signal.SIGKILL):
        log.info("killed processes left behind by a command", extra={"pgid": pgid})
