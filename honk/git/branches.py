"""Branches on a remote, without a local clone of it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import git

from honk import liveness
from honk.git.credentials import GitCredentials
from honk.git.runner import GitError, open_repo, run_git


def delete_remote_branch(
    remote: str,
    branch: str,
    credentials: GitCredentials | None = None,
    *,
    expect_sha: str | None = None,
) -> None:
    """Delete `refs/heads/<branch>` on `remote` (a URL without credentials); harmless when
    it does not exist. With `expect_sha`, only if it still points there (a lease), so a
    branch someone pushed to meanwhile survives (GitError)."""
    # `git push` needs a repository to run in; an empty one will do for a deletion, so a
    # host that never had this repository does not clone it just to clean up.
    lease = [f"--force-with-lease=refs/heads/{branch}:{expect_sha}"] if expect_sha else []
    with tempfile.TemporaryDirectory(prefix="honk-push-") as scratch:
        run_git(git.Git(), "init", "--quiet", "--bare", scratch)
        with open_repo(Path(scratch)) as repo:
            try:
                with liveness.heartbeating("git push --delete", branch):
                    run_git(
                        repo,
                        "push",
                        "--quiet",
                        *lease,
                        remote,
                        f":refs/heads/{branch}",
                        network=True,
                        credentials=credentials,
                    )
            except GitError as exc:
                if "remote ref does not exist" in exc.stderr:
                    return
                raise
