"""Real git repositories for the tests: plain git as a test user, and bare remotes on disk
seeded with one commit of the given files."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import git


def sh(cwd: Path, *args: str, when: float | None = None) -> str:
    """Plain git for setting up and inspecting repositories (tests only); `when` (a Unix
    time) dates the commit it makes."""
    env = dict(os.environ)
    if when is not None:
        env["GIT_COMMITTER_DATE"] = env["GIT_AUTHOR_DATE"] = f"{int(when)} +0000"
    done = subprocess.run(
        ["git", "-c", "user.name=Tester", "-c", "user.email=tester@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return done.stdout.strip()


def make_remote(
    directory: Path,
    files: dict[str, str],
    *,
    name: str = "remote",
    message: str = "initial",
    when: float | None = None,
) -> Path:
    """A bare remote `directory/<name>.git` whose `main` holds `files` in one commit (made
    in the working copy `directory/<name>-seed`)."""
    seed = directory / f"{name}-seed"
    seed.mkdir(parents=True)
    sh(seed, "init", "-q", "-b", "main")
    for rel, text in files.items():
        (seed / rel).parent.mkdir(parents=True, exist_ok=True)
        (seed / rel).write_text(text)
    sh(seed, "add", "-A")
    sh(seed, "commit", "-q", "-m", message, when=when)
    remote = directory / f"{name}.git"
    sh(directory, "clone", "-q", "--bare", str(seed), str(remote))
    return remote


def remote_sha(remote: Path, branch: str) -> str | None:
    """The commit `branch` points at in a (bare) repository, or None when it has no such branch."""
    done = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
        cwd=remote,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or None


def remote_file(remote: Path, rev: str, path: str) -> str:
    """A file's text at `rev` in a (bare) repository, without its last newline (as git shows it)."""
    return git.Repo(remote).git.show(f"{rev}:{path}")
