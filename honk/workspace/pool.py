"""Idle, checked-out workspaces waiting for the next request of their repository.

Writing the files of a large checkout dominates the cost of a workspace (tens of thousands
of files take seconds even from a local clone). So a finished request's workspace is
scrubbed and parked here, and the next request of that repository takes it over: only the
files that differ between the two commits are written.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import git

from honk.git.runner import GitError, open_repo, run_git
from honk.redact import redact
from honk.workflows.contract import WorkspaceRef
from honk.workspace.locks import file_lock
from honk.workspace.paths import delete_tree, safe_name
from honk.workspace.request import log_fields

log = logging.getLogger(__name__)


class WorkspacePool:
    """`<root>/<repo>/<slot>` holds parked workspaces; `<root>/<repo>.lock` guards them."""

    def __init__(self, root: Path, size: int) -> None:
        self.root = root
        self.size = size

    def path(self, repo: str) -> Path:
        return self.root / safe_name(repo)

    @contextlib.contextmanager
    def _locked(self, repo: str) -> Iterator[None]:
        with file_lock(self.root / f"{safe_name(repo)}.lock", what=f"workspace pool {repo}"):
            yield

    @staticmethod
    def _idle_slots(pool: Path) -> list[Path]:
        """Parked workspaces, most recently parked first (its files are likeliest to be
        in the page cache). Dot names are slots being scrubbed, not yet available."""
        if not pool.is_dir():
            return []
        slots = []
        for slot in pool.iterdir():
            if slot.name.startswith("."):
                continue
            try:  # a slot may be taken between the listing and the stat
                slots.append((slot.stat().st_mtime, slot))
            except FileNotFoundError:
                continue
        return [slot for _, slot in sorted(slots, reverse=True)]

    def take(self, repo: str, path: Path) -> bool:
        """Move an idle workspace of `repo` to `path` (the caller holds the request's lock).
        The rename is atomic and happens under the pool's lock, so one slot goes to exactly
        one request."""
        pool = self.path(repo)
        if not pool.is_dir():
            return False
        with self._locked(repo):
            for slot in self._idle_slots(pool):
                try:
                    os.rename(slot, path)
                except FileNotFoundError:  # removed by hand or by the janitor meanwhile
                    continue
                return True
        return False

    def _has_room(self, repo: str) -> bool:
        return len(self._idle_slots(self.path(repo))) < self.size

    def recycle(self, ref: WorkspaceRef, path: Path, mirror: Path) -> bool:
        """Park the request's workspace in the pool, scrubbed; delete it instead when the
        pool is full or the workspace cannot be made pristine. True when parked."""
        if not self._has_room(ref.repo) or not (mirror / "HEAD").exists() or path.is_symlink():
            delete_tree(path)
            return False
        pool = self.path(ref.repo)
        pool.mkdir(parents=True, exist_ok=True)
        staging = pool / f".recycle-{uuid.uuid4().hex[:12]}"
        # From here on the request no longer owns the directory: nothing it runs later
        # (a retried activity) can reach it under `workspaces/<request>`.
        os.rename(path, staging)
        parked = False
        try:
            _scrub(staging, mirror)
            with self._locked(ref.repo):
                if self._has_room(ref.repo):
                    slot = pool / uuid.uuid4().hex[:12]
                    os.rename(staging, slot)
                    os.utime(slot)  # `_idle_slots` hands out the freshest first
                    parked = True
        except (GitError, git.GitError, OSError) as exc:
            log.warning("could not recycle workspace; deleting it", extra=log_fields(ref, error=redact(str(exc))))
        finally:
            if not parked:
                delete_tree(staging)
        return parked


def _scrub(slot: Path, mirror: Path) -> None:
    """Make a finished request's workspace indistinguishable from a fresh checkout of the
    mirror's base, without rewriting the files that are already right.

    The request's code (checks, builds) could write anywhere in the workspace, `.git`
    included: config (filters, URL rewrites), hooks, alternates, refs, stashes, reflogs,
    objects, and the index with its stat cache (which could make git skip a file it should
    rewrite). So `.git` is replaced by a brand-new shared clone of the mirror, the new index
    starts without stat data, and `update-index --refresh` compares every file's *content*
    with the commit: only files that differ get rewritten by the reset, and `clean` removes
    everything git does not track, ignored files included.
    """
    fresh = slot.parent / f".git-{uuid.uuid4().hex[:12]}"
    try:
        run_git(git.Git(), "clone", "--quiet", "--shared", "--no-checkout", str(mirror), str(fresh))
        delete_tree(slot / ".git")
        os.rename(fresh / ".git", slot / ".git")
    finally:
        delete_tree(fresh)
    with open_repo(slot) as repo:
        head = run_git(repo, "rev-parse", "HEAD")
        run_git(repo, "update-ref", "--no-deref", "HEAD", head)  # detached, no branch
        for name in run_git(repo, "for-each-ref", "--format=%(refname)", "refs/heads").split():
            run_git(repo, "update-ref", "-d", name)
        run_git(repo, "read-tree", head)
        try:
            run_git(repo, "update-index", "-q", "--refresh")
        except GitError:
            pass  # some files differ ("needs update"): the reset below rewrites them
        run_git(repo, "reset", "--quiet", "--hard", head)
        run_git(repo, "clean", "-ffdxq")
