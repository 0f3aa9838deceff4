"""The box around every command Honk runs from a repository (checks, builds).

With bubblewrap: a read-only view of the system, no network, fresh /tmp, and only the
workspace and the command's scratch HOME writable. Without it, commands still get a scrubbed
environment and their own process group, and Honk says loudly that they are not boxed.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

Mode = Literal["auto", "bwrap", "none"]


class SandboxUnavailable(RuntimeError):
    pass


@functools.cache
def bwrap_works() -> bool:
    """bubblewrap is installed and may create namespaces here (containers can forbid it)."""
    binary = shutil.which("bwrap")
    if not binary:
        return False
    try:
        probe = subprocess.run(
            [binary, "--unshare-all", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--", "true"],
            capture_output=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


@functools.cache
def _warn_unboxed(reason: str) -> None:
    log.warning(
        "REPOSITORY COMMANDS ARE NOT SANDBOXED: checks and builds run with a scrubbed "
        "environment but can reach the network and write outside the workspace",
        extra={"reason": reason},
    )


@dataclass(frozen=True)
class Sandbox:
    mode: Mode = "auto"
    network: bool = False
    writable: tuple[Path, ...] = field(default_factory=tuple)

    @classmethod
    def from_settings(cls, settings) -> Sandbox:
        return cls(settings.sandbox, settings.sandbox_network, tuple(settings.sandbox_writable))

    @property
    def active(self) -> bool:
        if self.mode == "none":
            _warn_unboxed("HONK_SANDBOX=none")
            return False
        if bwrap_works():
            return True
        if self.mode == "bwrap":
            raise SandboxUnavailable(
                "HONK_SANDBOX=bwrap but bubblewrap is missing or cannot create namespaces here "
                "(apt-get install bubblewrap, or set HONK_SANDBOX=auto)"
            )
        _warn_unboxed("bubblewrap is not available")
        return False

    def wrap(self, argv: list[str], cwd: Path, home: Path, search_path: str = "") -> list[str]:
        """`argv` as run inside the box, or unchanged when there is no box."""
        if not self.active:
            return argv
        box = [
            shutil.which("bwrap") or "bwrap",
            "--die-with-parent",
            "--unshare-all",
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--tmpfs",
            "/tmp",
        ]
        # The fresh /tmp must not hide the tools themselves (a virtualenv or PATH entry that
        # happens to live under /tmp): show those read-only.
        for tool_dir in _tool_dirs(search_path):
            box += ["--ro-bind", str(tool_dir), str(tool_dir)]
        if self.network:
            box.append("--share-net")
        # Later binds win: these re-expose the few writable places over the read-only root
        # (and over the fresh /tmp, where a workspace may live).
        for path in (cwd, home, *self.writable):
            box += ["--bind", str(path), str(path)]
        # A check must not rewrite .git (hooks, remotes, pushurl): Honk pushes from it later.
        git_dir = cwd / ".git"
        if git_dir.is_dir():
            box += ["--ro-bind", str(git_dir), str(git_dir)]
        return [*box, "--chdir", str(cwd), "--", *argv]


def _tool_dirs(search_path: str) -> list[Path]:
    """Interpreter and PATH directories under /tmp, outermost first, without duplicates."""
    candidates = [Path(sys.prefix), Path(sys.base_prefix), *(Path(p) for p in search_path.split(os.pathsep) if p)]
    under_tmp = sorted(
        {p.resolve() for p in candidates if p.is_absolute() and p.exists() and p.resolve().is_relative_to("/tmp")},
        key=lambda p: len(p.parts),
    )
    kept: list[Path] = []
    for path in under_tmp:
        if not any(path.is_relative_to(k) for k in kept):
            kept.append(path)
    return kept
