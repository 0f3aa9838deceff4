"""The install page's "what changed" numbers: `git diff --stat` of the tested commit against
where the request's work began, read from the request's workspace on this host.

Best effort: a publish on a host without the workspace (a separate build machine), or any git
trouble, gives None and the page simply shows no stat."""

from __future__ import annotations

import subprocess
from pathlib import Path

from honk.workspace.paths import safe_name

MAX_STAT = 4000  # characters; a huge change is summarised by git's last line anyway


def _git(workspace: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(workspace), *args], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def diff_stat(workspaces_dir: Path, request_id: str, commit: str) -> str | None:
    """The stat of `commit` against the newest commit it shares with the remote's other
    branches (its base), or None when it cannot be told here."""
    workspace = workspaces_dir / safe_name(request_id)
    if not (workspace / ".git").exists() or not commit:
        return None
    # Commits of the work only: not on any remote branch except Honk's own work branches.
    own = _git(workspace, "rev-list", commit, "--not", "--exclude=refs/remotes/origin/honk/*", "--remotes=origin")
    if not own or not own.split():
        return None
    oldest = own.split()[-1]
    stat = _git(workspace, "diff", "--stat=72", "--no-color", f"{oldest}^", commit)
    if not stat or not stat.strip():
        return None
    return stat.rstrip()[:MAX_STAT]
