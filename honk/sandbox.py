"""The box around every command Honk runs from a repository (checks, builds).

With bubblewrap the command runs in new user, PID, IPC, UTS, cgroup and network namespaces
as an unprivileged uid with every capability dropped, in its own session. Its filesystem is
built from an allowlist: the system toolchain and a few files of /etc read-only, configured
tool directories read-only, a private /tmp, the command's scratch HOME and the workspace
writable, `.git` read-only. The worker's HOME, /root, /home and the data directory are never
shown (only the workspace itself, inside it). Without bubblewrap Honk refuses to run
repository code unless HONK_SANDBOX=none says so on purpose, and then warns every time.
"""

from __future__ import annotations

import functools
import glob
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from honk.errors import HonkError
from honk.process_limits import Limits

log = logging.getLogger(__name__)

Mode = Literal["auto", "bwrap", "none"]

# Read-only system directories; where one is a symlink (merged /usr) it stays a symlink.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What of /etc a toolchain needs: users, name resolution, the dynamic linker, certificates,
# the alternatives links (java, python3), and Java's and Python's own configuration.
ETC_FILES = (
    "/etc/passwd",
    "/etc/group",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/mime.types",
    "/etc/alternatives",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/java*",
    "/etc/python3*",
)


class SandboxUnavailable(HonkError):
    def __init__(self, message: str) -> None:
        super().__init__(message, kind="SandboxUnavailable", retryable=False)


def _probe_argv(binary: str) -> list[str]:
    return [binary, "--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534", "--cap-drop", "ALL"] + [
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--",
        "true",
    ]


@functools.cache
def bwrap_works() -> bool:
    """bubblewrap is installed and may create the namespaces it needs here (containers can
    forbid user namespaces)."""
    binary = shutil.which("bwrap")
    if not binary:
        return False
    try:
        probe = subprocess.run(_probe_argv(binary), capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def _warn_unboxed() -> None:
    log.warning(
        "REPOSITORY COMMANDS ARE NOT SANDBOXED (HONK_SANDBOX=none): this check or build runs "
        "with the worker's privileges, can read its files, reach the network and write outside "
        "the workspace",
    )


@functools.cache
def _say_skipped(path: str, why: str) -> None:
    log.info(f"{path} is not shown in the sandbox: {why}", extra={"path": path})


def _protected(data_dir: Path | None) -> tuple[Path, ...]:
    """What a sandboxed command must never see, whatever PATH or the settings say."""
    places = [Path("/root"), Path("/home"), Path.home()]
    if data_dir is not None:
        places.append(data_dir)
    return tuple(p.resolve() for p in places)


@dataclass(frozen=True)
class Sandbox:
    mode: Mode = "auto"
    network: bool = False
    writable: tuple[Path, ...] = field(default_factory=tuple)
    tools: tuple[Path, ...] = field(default_factory=tuple)
    uid: int = 65534
    limits: Limits = field(default_factory=Limits)
    data_dir: Path | None = None
    max_log_bytes: int | None = None  # None: the command runner's default
    # (source, destination, writable): a check environment, its mounts into the workspace.
    binds: tuple[tuple[Path, Path, bool], ...] = ()
    chdir: Path | None = None  # where the command starts inside the box (default: cwd)

    @classmethod
    def from_settings(cls, settings) -> Sandbox:
        return cls(
            mode=settings.sandbox,
            network=settings.sandbox_network,
            writable=tuple(settings.sandbox_writable),
            tools=tuple(settings.sandbox_tools),
            uid=settings.sandbox_uid,
            limits=Limits.from_settings(settings),
            data_dir=Path(settings.data_dir),
            max_log_bytes=settings.check_log_max_mb * 1024 * 1024,
        )

    @property
    def active(self) -> bool:
        """True: commands run in bubblewrap. False only when HONK_SANDBOX=none says so."""
        if self.mode == "none":
            _warn_unboxed()
            return False
        if bwrap_works():
            return True
        raise SandboxUnavailable(
            f"HONK_SANDBOX={self.mode} but bubblewrap is missing or cannot create user namespaces "
            "here, and Honk does not run repository code unsandboxed by accident: install "
            "bubblewrap (apt-get install bubblewrap) and allow user namespaces, or set "
            "HONK_SANDBOX=none to run checks and builds without a box on purpose"
        )

    def wrap(
        self, argv: list[str], cwd: Path, home: Path, search_path: str = "", cgroup: Path | None = None
    ) -> list[str]:
        """`argv` as run under the limits, inside the box unless HONK_SANDBOX=none."""
        limited = self.limits.prefix(cgroup)
        if not self.active:
            return [*limited, *argv]
        return [*limited, *self.bwrap_argv(cwd, home, search_path), "--", *argv]

    def bwrap_argv(self, cwd: Path, home: Path, search_path: str = "") -> list[str]:
        box = [shutil.which("bwrap") or "bwrap", "--die-with-parent", "--new-session"]
        box += ["--unshare-user", "--uid", str(self.uid), "--gid", str(self.uid), "--cap-drop", "ALL"]
        box += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--hostname", "honk"]
        if not self.network:
            box.append("--unshare-net")
        box += _system_view()
        box += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/var/tmp"]
        for tool_dir in self._tool_dirs(search_path):
            box += ["--ro-bind", str(tool_dir), str(tool_dir)]
        # Later binds win: the writable places go over the fresh /tmp (a workspace may live there).
        for path in (home, *self._configured(self.writable, "HONK_SANDBOX_WRITABLE"), cwd):
            box += ["--bind", str(path), str(path)]
        # A check must not rewrite .git (hooks, config, objects): Honk's git reads it later.
        git_dir = cwd / ".git"
        if git_dir.exists():
            box += ["--ro-bind", str(git_dir), str(git_dir)]
        for source, target, writable in self.binds:
            box += ["--bind" if writable else "--ro-bind", str(source), str(target)]
        # The root bwrap builds is a tmpfs: freeze it, so only the binds above stay writable.
        return [*box, "--remount-ro", "/", "--chdir", str(self.chdir or cwd)]

    def _configured(self, paths: tuple[Path, ...], setting: str) -> list[Path]:
        """Operator-configured paths, except ones that would reveal HOME, /root or /home whole."""
        kept = []
        secret_homes = _protected(None)
        for raw in paths:
            path = Path(raw).resolve()
            if not path.exists():
                continue
            if any(home.is_relative_to(path) for home in secret_homes):
                log.warning(f"{setting} entry {path} would show the worker's home directories: skipped")
                continue
            kept.append(path)
        return kept

    def _tool_dirs(self, search_path: str) -> list[Path]:
        """Configured tool directories plus the PATH entries the system view lacks, read-only.

        A PATH entry inside the worker's HOME, /root, /home or the data directory is skipped
        (and logged): PATH must not be a way to show them. A virtualenv's `bin` brings the
        virtualenv with it (its interpreter needs its `lib`).
        """
        hidden = _protected(self.data_dir)
        found = self._configured(self.tools, "HONK_SANDBOX_TOOLS")
        for entry in search_path.split(os.pathsep):
            if not entry or not os.path.isabs(entry) or not os.path.isdir(entry):
                continue
            path = Path(entry).resolve()
            if any(path.is_relative_to(system) for system in map(Path, SYSTEM_DIRS)):
                continue
            if any(path.is_relative_to(h) for h in hidden):
                _say_skipped(str(path), "PATH entry inside HOME, /root, /home or the data directory")
                continue
            if path.name == "bin" and (path.parent / "pyvenv.cfg").exists():
                path = path.parent
            found.append(path)
        kept: list[Path] = []
        for path in sorted(set(found), key=lambda p: len(p.parts)):  # outermost first, once
            if not any(path.is_relative_to(k) for k in kept):
                kept.append(path)
        return kept


@functools.cache
def _system_view() -> tuple[str, ...]:
    """bwrap arguments showing the system toolchain and the allowed part of /etc, read-only."""
    args: list[str] = []
    for name in SYSTEM_DIRS:
        path = Path(name)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), name]
        elif path.is_dir():
            args += ["--ro-bind", name, name]
    for pattern in ETC_FILES:
        for name in sorted(p for p in glob.glob(pattern) if os.path.exists(p)):
            args += ["--ro-bind", name, name]
    return tuple(args)
