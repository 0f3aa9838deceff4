"""The host's bare cache of a remote: fetched incrementally once per step, and the object
store every workspace of that repository borrows (`clone --shared`)."""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import git

from honk import liveness
from honk.git.credentials import GitCredentials
from honk.git.runner import GitError, is_permanent_remote_error, open_repo, rev, run_git
from honk.workflows.contract import WorkspaceRef
from honk.workspace.hygiene import verify_repository
from honk.workspace.locks import file_lock
from honk.workspace.paths import delete_tree
from honk.workspace.request import log_fields, remote_error

log = logging.getLogger(__name__)


def refresh_mirror(mirror: Path, ref: WorkspaceRef, url: str, credentials: GitCredentials | None) -> Path:
    """Create or incrementally fetch the host's cache of the remote at `url`; check the base."""
    with file_lock(mirror.with_name(mirror.name + ".lock"), what=f"mirror {ref.repo}"):
        if not (mirror / "HEAD").exists():
            _create_mirror(mirror)
        # The cache is shared by every request of the repository: nothing but what Honk
        # wrote may stay in its config (a URL rewrite would redirect every later push).
        verify_repository(mirror)
        with open_repo(mirror) as repo:
            try:
                with liveness.heartbeating("git fetch", ref.repo):
                    run_git(
                        repo,
                        "fetch",
                        "--prune",
                        "--quiet",
                        url,
                        "+refs/heads/*:refs/heads/*",
                        "+refs/tags/*:refs/tags/*",
                        network=True,
                        credentials=credentials,
                    )
            except GitError as exc:
                if is_permanent_remote_error(exc):
                    raise remote_error(ref, f"cannot fetch: {exc.stderr}") from None
                log.warning("fetch failed", extra=log_fields(ref, error=str(exc)))
                raise
            if rev(repo, f"refs/heads/{ref.base_branch}") is None:
                raise remote_error(ref, f"has no branch {ref.base_branch!r}")
            # Clones of the mirror start from the base rather than whatever HEAD names.
            head = f"refs/heads/{ref.base_branch}"
            if _read_head(mirror) != f"ref: {head}":
                run_git(repo, "symbolic-ref", "HEAD", head)
    return mirror


def _read_head(mirror: Path) -> str:
    try:
        return (mirror / "HEAD").read_text(errors="replace").strip()
    except OSError:
        return ""


def _create_mirror(mirror: Path) -> None:
    """An empty bare repository, created aside and renamed so a crash leaves no half."""
    mirror.parent.mkdir(parents=True, exist_ok=True)
    for stale in mirror.parent.glob(f".{mirror.name}.tmp-*"):
        delete_tree(stale)
    tmp = mirror.with_name(f".{mirror.name}.tmp-{uuid.uuid4().hex[:8]}")
    run_git(git.Git(), "init", "--quiet", "--bare", str(tmp))
    with open_repo(tmp) as repo:
        # Workspaces borrow this object store (clone --shared): objects must never be
        # pruned from under them, so no automatic gc/maintenance here.
        for key, value in (
            ("gc.auto", "0"),
            ("maintenance.auto", "false"),
            ("gc.pruneExpire", "never"),
            ("core.logAllRefUpdates", "false"),
        ):
            run_git(repo, "config", key, value)
    os.rename(tmp, mirror)


def fetch_from_mirror(repo: git.Repo, mirror: Path) -> None:
    """Update `origin/*` from the just-fetched mirror: a local fetch that moves no objects
    (they are shared), instead of a second round trip to the remote."""
    # No FETCH_HEAD and no auto-maintenance child: nothing uses them here, and on the warm
    # path every process counts.
    run_git(
        repo,
        "fetch",
        "--prune",
        "--quiet",
        "--no-write-fetch-head",
        "--no-auto-maintenance",
        str(mirror),
        "+refs/heads/*:refs/remotes/origin/*",
        "+refs/tags/*:refs/tags/*",
    )
