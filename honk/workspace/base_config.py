"""The request's configuration, read from the base branch through Honk's git.

Checks, builds, agent settings and protected paths come from `origin/<base>` as last
fetched, never from the work tree: the agent (or a check) can edit `.honk.toml` and the
scripts in the tree, but not the branch the team owns.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import git

from honk.config.detection import detect_repo_config
from honk.config.protect import ProtectedPaths, protected_paths
from honk.config.repository import MAX_CONFIG_BYTES, RepoConfig, RepoConfigError, repo_config_from
from honk.git.runner import GitError, rev, run_git


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


# By base commit: a commit names its content, so what it configures never changes, and
# every step of a request reads the same base several times.
_BY_COMMIT: dict[str, tuple[RepoConfig, ProtectedPaths]] = {}
_BY_COMMIT_MAX = 256


def cached_base_config(commit: str) -> tuple[RepoConfig, ProtectedPaths] | None:
    """What `base_repo_config` found at base commit `commit`, if it has read that commit."""
    if commit not in _BY_COMMIT:
        return None
    config, protected = _BY_COMMIT[commit]
    return config.model_copy(deep=True), protected


def base_repo_config(repo: git.Repo, base_branch: str) -> tuple[RepoConfig, ProtectedPaths]:
    """`.honk.toml` of the base branch (or what its content suggests) and the paths it
    protects. Raises RepoConfigError with what to fix."""
    commit = rev(repo, base_ref(base_branch))
    at = commit or base_ref(base_branch)  # missing: the reads below say so
    if commit is not None and (known := cached_base_config(commit)) is not None:
        return known
    config = repo_config_from(lambda rel: _read(repo, at, rel), lambda: _detect(repo, at))
    found = config, protected_paths(config, lambda rel: _exists(repo, at, rel))
    if commit is not None:
        if len(_BY_COMMIT) >= _BY_COMMIT_MAX:
            _BY_COMMIT.clear()
        _BY_COMMIT[commit] = (found[0].model_copy(deep=True), found[1])
    return found


# Detection reads the top level and a requirements folder; nothing deeper.
_DETECTION_FOLDERS = ("requirements",)


def _detect(repo: git.Repo, rev: str) -> RepoConfig:
    """What the base branch's content suggests, when it has no `.honk.toml`: its top-level
    files (and requirement folders) are exported to a scratch directory and detected there,
    so the work tree the agent edits never decides which checks run."""
    with tempfile.TemporaryDirectory(prefix="honk-detect-") as scratch:
        root = Path(scratch)
        _export(repo, rev, "", root)
        return detect_repo_config(root)


def _export(repo: git.Repo, rev: str, folder: str, root: Path) -> None:
    listing = run_git(repo, "ls-tree", f"{rev}:{folder}" if folder else rev, strip=False)
    for line in listing.splitlines():
        meta, _, name = line.partition("\t")
        kind = meta.split()[1] if len(meta.split()) > 1 else ""
        rel = f"{folder}/{name}" if folder else name
        if "/" in name or name in (".", "..") or name.startswith(".git"):
            continue
        if kind == "tree":
            (root / rel).mkdir(exist_ok=True)
            if not folder and name in _DETECTION_FOLDERS:
                _export(repo, rev, rel, root)
        elif kind == "blob" and meta.split()[0] in ("100644", "100755"):
            try:
                text = _read(repo, rev, rel)
            except RepoConfigError:  # a large lock file: detection only needs to know it exists
                text = ""
            if text is not None:
                (root / rel).write_text(text, encoding="utf-8")
                if meta.split()[0] == "100755":
                    (root / rel).chmod(0o755)
