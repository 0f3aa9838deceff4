"""The request's configuration, read from the base branch through Honk's git.

Checks, builds, agent settings and protected paths come from `origin/<base>` as last
fetched, never from the work tree: the agent (or a check) can edit `.honk.toml` and the
scripts in the tree, but not the branch the team owns.
"""

from __future__ import annotations

import git

from honk.config.protect import ProtectedPaths, protected_paths
from honk.config.repository import MAX_CONFIG_BYTES, RepoConfig, RepoConfigError, repo_config_from
from honk.git.runner import GitError, run_git


def base_ref(base_branch: str) -> str:
    return f"refs/remotes/origin/{base_branch}"


def _exists(repo: git.Repo, rev: str, rel: str) -> bool:
    try:
        run_git(repo, "cat-file", "-e", f"{rev}:{rel}")
    except GitError:
        return False
    return True


def _read(repo: git.Repo, rev: str, rel: str) -> str | None:
    try:
        kind = run_git(repo, "cat-file", "-t", f"{rev}:{rel}")
    except GitError:
        return None
    if kind != "blob":
        return None
    if int(run_git(repo, "cat-file", "-s", f"{rev}:{rel}")) > MAX_CONFIG_BYTES:
        raise RepoConfigError(f"{rel} is larger than {MAX_CONFIG_BYTES} bytes")
    return run_git(repo, "cat-file", "blob", f"{rev}:{rel}", strip=False)


def base_repo_config(repo: git.Repo, base_branch: str) -> tuple[RepoConfig, ProtectedPaths]:
    """`.honk.toml` of the base branch (or what its content suggests) and the paths it
    protects. Raises RepoConfigError with what to fix."""
    rev = base_ref(base_branch)
    config = repo_config_from(lambda rel: _exists(repo, rev, rel), lambda rel: _read(repo, rev, rel))
    return config, protected_paths(config, lambda rel: _exists(repo, rev, rel))
