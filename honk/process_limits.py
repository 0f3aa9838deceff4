"""Resource limits for one repository command: processes, memory, file size, open files.

Rlimits (set by util-linux `prlimit` before the command starts) bound every process of the
command. The kernel does not count processes of uid 0 against RLIMIT_NPROC, and a root
worker's sandboxed uid maps back to uid 0, so where the pids cgroup controller is writable
each command also gets its own pids cgroup: a fork bomb then stops at the same number.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MIB = 1024 * 1024
# cgroup v1 (pids hierarchy) or v2 (unified, with the pids controller enabled).
_PIDS_ROOTS = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup"))


@dataclass(frozen=True)
class Limits:
    processes: int = 1024
    memory_mb: int = 8192
    file_size_mb: int = 2048
    open_files: int = 4096

    @classmethod
    def from_settings(cls, settings) -> Limits:
        return cls(
            settings.limit_processes, settings.limit_memory_mb, settings.limit_file_size_mb, settings.limit_open_files
        )

    def prefix(self, cgroup: Path | None = None) -> list[str]:
        """The argv that starts a command under these limits (prepend it to the command)."""
        prlimit = shutil.which("prlimit")
        if prlimit is None:
            raise FileNotFoundError(2, "prlimit (util-linux) is needed to limit repository commands", "prlimit")
        argv = [
            prlimit,
            f"--nproc={self.processes}",
            f"--as={self.memory_mb * MIB}",
            f"--fsize={self.file_size_mb * MIB}",
            f"--nofile={self.open_files}",
            "--",
        ]
        if cgroup is not None:
            # Join the cgroup first, then become the limited command: every descendant is in it.
            join = 'echo $$ > "$0" || echo "[honk: no pids cgroup, only rlimits]"; exec "$@"'
            argv = ["/bin/sh", "-c", join, str(cgroup / "cgroup.procs"), *argv]
        return argv


def _pids_root() -> Path | None:
    for root in _PIDS_ROOTS:
        if (root / "cgroup.procs").exists() and os.access(root, os.W_OK):
            if root.name == "pids" or "pids" in _read(root / "cgroup.subtree_control").split():
                return root
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


@contextlib.contextmanager
def pids_cgroup(max_processes: int) -> Iterator[Path | None]:
    """A fresh pids cgroup capped at `max_processes` (None where cgroups are not writable).

    On exit every process still in it is killed and the cgroup removed.
    """
    root = _pids_root()
    group = None
    if root is not None:
        candidate = root / f"honk-{uuid.uuid4().hex[:12]}"
        try:
            candidate.mkdir()
            (candidate / "pids.max").write_text(str(max_processes))
            group = candidate
        except OSError as exc:
            log.info("no pids cgroup for this command", extra={"error": str(exc)})
            with contextlib.suppress(OSError):
                candidate.rmdir()
    try:
        yield group
    finally:
        if group is not None:
            _kill_all(group)


def _kill_all(group: Path) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        pids = [int(p) for p in _read(group / "cgroup.procs").split()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        try:
            group.rmdir()
            return
        except OSError:  # busy until the killed processes are reaped
            time.sleep(0.05)
    log.warning("could not remove a command's pids cgroup", extra={"cgroup": str(group)})
