"""A workspace's work branch against the remote: reset to what was pushed, commit the
agent's changes, push them, and compare with the base."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import git

from honk import liveness
from honk.git.credentials import GitCredentials
from honk.git.runner import GitError, git_failure, is_permanent_remote_error, revs, run_git
from honk.workflows.contract import WorkspaceRef
from honk.workspace.request import log_fields, remote_error

log = logging.getLogger(__name__)


def reset_work_branch(
    repo: git.Repo, ref: WorkspaceRef, start: str, *, fresh: bool = False, empty: bool = False
) -> str:
    """Point the work branch at commit `start` (a full object id) and make the tree exactly
    that commit; returns `start`.

    `fresh`: the `.git` is brand-new (pool or clone), so there is no merge, rebase or
    cherry-pick state to drop and the forced checkout alone gives the exact tree; the reset
    (another pass over every file, ~40% of a warm workspace's time on a large repository)
    only matters for a workspace a previous step of the request used. `empty`: a brand-new
    clone with no work tree yet, so nothing untracked can be there to clean either."""
    git_dir = Path(repo.git_dir)
    if (git_dir / "rebase-merge").exists() or (git_dir / "rebase-apply").exists():
        run_git(repo, "rebase", "--quit")  # a crash mid-merge left a rebase behind
    run_git(repo, "checkout", "--quiet", "--force", "--no-track", "-B", ref.work_branch, start, "--")
    if not (fresh or empty):
        run_git(repo, "reset", "--quiet", "--hard", start)  # also drops MERGE_HEAD & co
    if not empty:
        run_git(repo, "clean", "-ffdxq")
    return start


def reset_to(repo: git.Repo, ref: WorkspaceRef, sha: str) -> None:
    """`reset_work_branch` for a workspace whose work branch already points at `sha`: when it
    is checked out and nothing is half-done, resetting the tree and cleaning is all it takes."""
    git_dir = Path(repo.git_dir)
    checked_out = (git_dir / "HEAD").read_text(errors="replace").strip() == f"ref: refs/heads/{ref.work_branch}"
    unfinished = ("rebase-merge", "rebase-apply", "MERGE_HEAD", "CHERRY_PICK_HEAD", "REVERT_HEAD")
    if not checked_out or any((git_dir / name).exists() for name in unfinished):
        reset_work_branch(repo, ref, sha)
        return
    run_git(repo, "reset", "--quiet", "--hard", sha)
    run_git(repo, "clean", "-ffdxq")


def _nested_repository(root: Path, path: str) -> bool:
    """`path` lies in a repository embedded in the workspace (its own `.git`)."""
    parent = (root / path).parent
    while parent != root and parent.is_relative_to(root):
        if (parent / ".git").exists():
            return True
        parent = parent.parent
    return False


def _ignored(repo: git.Repo, paths: list[str]) -> set[str]:
    """The untracked ones of `paths` that `.gitignore` excludes (tracked files never are)."""
    if not paths:
        return set()
    try:
        out = run_git(repo, "check-ignore", "--", *paths, strip=False)
    except GitError as exc:  # exit 1: none of them is ignored
        if "fatal" in str(exc):
            raise
        return set()
    return {name for name in out.splitlines() if name}


def commit_paths(repo: git.Repo, paths: Iterable[str], message: str) -> str | None:
    """Commit exactly `paths` (what the agent's tools changed) as Honk; None when nothing
    changed. Never stages anything else: a check's virtualenv, build outputs, files
    `.gitignore` excludes and nested repositories stay out of every commit. A merge in
    progress (conflicts the agent resolved) is concluded by this commit."""
    root = Path(repo.working_tree_dir or ".")
    wanted = sorted({p for p in paths if p and p != "." and not _nested_repository(root, p)})
    present = [p for p in wanted if (root / p).exists() or (root / p).is_symlink()]
    gone = [p for p in wanted if p not in present]
    ignored = _ignored(repo, present)
    staged = [p for p in present if p not in ignored]
    for chunk in _chunks(staged):
        run_git(repo, "add", "--", *chunk)
    for chunk in _chunks(gone):
        run_git(repo, "rm", "--cached", "--quiet", "--ignore-unmatch", "--", *chunk)
    merging = (Path(repo.git_dir) / "MERGE_HEAD").exists()
    if not merging and not run_git(repo, "diff", "--cached", "--name-only"):
        return None
    run_git(repo, "commit", "--quiet", "--no-verify", "-m", message.strip() or "Honk: update workspace")
    return run_git(repo, "rev-parse", "HEAD")


def _chunks(paths: list[str], size: int = 500) -> Iterator[list[str]]:
    for start in range(0, len(paths), size):
        yield paths[start : start + size]


def push_work_branch(repo: git.Repo, ref: WorkspaceRef, credentials: GitCredentials | None) -> str:
    """Push the work branch to `origin` and return its sha. Idempotent.

    The lease is the remote work branch as last fetched: a duplicate attempt on another
    worker that pushed meanwhile is refused rather than overwritten. The refspec names only
    the work branch, so the base is never touched.
    """
    work = f"refs/heads/{ref.work_branch}"
    sha, lease = revs(repo, f"{work}^{{commit}}", f"refs/remotes/origin/{ref.work_branch}^{{commit}}")
    if sha is None:
        raise git_failure("push", f"no branch {ref.work_branch} to push")
    lease = lease or ""
    try:
        with liveness.heartbeating("git push", ref.work_branch):
            run_git(
                repo,
                "push",
                "--quiet",
                f"--force-with-lease={work}:{lease}",
                "origin",
                f"{work}:{work}",
                network=True,
                credentials=credentials,
            )
    except GitError as exc:
        if is_permanent_remote_error(exc):
            raise remote_error(ref, f"cannot push: {exc.stderr}") from None
        log.warning("push failed", extra=log_fields(ref, error=str(exc)))
        raise
    return sha


def diff_is_empty(repo: git.Repo, ref: WorkspaceRef) -> bool:
    """True when the committed work branch has the same tree as `origin/<base>`."""
    work, base = revs(repo, f"refs/heads/{ref.work_branch}^{{tree}}", f"refs/remotes/origin/{ref.base_branch}^{{tree}}")
    if work is None or base is None:
        raise git_failure("rev-parse", f"{ref.work_branch} or origin/{ref.base_branch} is missing")
    return work == base


def changed_files(repo: git.Repo, ref: WorkspaceRef) -> list[str]:
    """Paths the work branch changed since its merge-base with the base (renames count as
    both paths)."""
    out = run_git(
        repo,
        "diff",
        "--name-only",
        "--no-renames",
        "-z",
        f"refs/remotes/origin/{ref.base_branch}...refs/heads/{ref.work_branch}",
        strip=False,
    )
    return [name for name in out.split("\0") if name]


STAT_LIMIT = 4000  # characters; git's last line sums up a bigger change


def diff_stat(repo: git.Repo, ref: WorkspaceRef) -> str:
    """`git diff --stat` of the work branch since its merge-base with the base: what the
    approver reviews (the same range as `changed_files`)."""
    out = run_git(
        repo,
        "diff",
        "--stat=72",
        "--no-color",
        "--no-renames",
        f"refs/remotes/origin/{ref.base_branch}...refs/heads/{ref.work_branch}",
    )
    if len(out) <= STAT_LIMIT:
        return out
    lines = out.splitlines()
    return "\n".join(lines[:40] + [" ...", lines[-1]])
