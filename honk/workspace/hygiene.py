"""Keep repository-controlled content out of what Honk's own git reads.

Git runs programs named in configuration: filter (clean/smudge/process), diff (external,
textconv, command), merge drivers, ssh/pager/editor commands, credential helpers, URL
rewrites, includes. Attributes in the tree only *name* drivers; only configuration defines
them. The runner pins hooks, fsmonitor, attributes files and submodules with `-c` and reads
no system or global config, so what is left is the repository's own config, nested
repositories (whose config applies inside them) and `.gitmodules`.

Before Honk's git touches a work tree that repository code or the agent may have written:
- `verify_git_dir`: the workspace's `.git` holds exactly what Honk made: a real directory, a
  config of allowlisted keys only (rebuilt otherwise), no `info/attributes`, no hooks, no
  foreign alternates;
- `remove_nested_repositories`: every nested `.git` (directory, gitfile or symlink) below
  the top is deleted, so no embedded repository is staged or recursed into;
- `revert_gitmodules`: a changed `.gitmodules` is put back as the base had it.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import git

from honk.errors import permanent
from honk.git.runner import GitError, run_git
from honk.workspace.paths import delete_tree

log = logging.getLogger(__name__)

# What `git clone`, `git init` and Honk itself write (as `git config --list` spells keys:
# section and name lower-cased, subsection as written).
_ALLOWED_KEYS = (
    re.compile(r"core\.(repositoryformatversion|filemode|bare|logallrefupdates|symlinks|ignorecase|precomposeunicode)"),
    re.compile(r"remote\.origin\.(url|fetch)"),
    re.compile(r"branch\.[^\n]+\.(remote|merge)"),
    re.compile(r"gc\.(auto|pruneexpire)"),
    re.compile(r"maintenance\.auto"),
)


def _allowed(key: str) -> bool:
    return any(pattern.fullmatch(key) for pattern in _ALLOWED_KEYS)


# Parsed config files by content: every step verifies `.git/config` before Honk's git reads
# the workspace, and it is almost always exactly what Honk wrote last time.
_PARSED: dict[bytes, list[tuple[str, str]]] = {}
_PARSED_MAX = 512


def read_config(config: Path) -> list[tuple[str, str]]:
    """The entries of one config file, includes not followed (git config --file --list)."""
    try:
        content = config.read_bytes()
    except OSError:
        content = None
    if content is not None and content in _PARSED:
        return list(_PARSED[content])
    out = run_git(git.Git(), "config", "--file", str(config), "--no-includes", "--list", "--null", strip=False)
    entries = []
    for record in out.split("\0"):
        if record:
            key, _, value = record.partition("\n")
            entries.append((key, value))
    if content is not None and config.read_bytes() == content:  # unchanged while git read it
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[content] = list(entries)
    return entries


def foreign_config(config: Path) -> list[str]:
    """Keys in `config` Honk did not write (empty when the file is clean)."""
    return [key for key, _ in read_config(config) if not _allowed(key)]


def rebuild_config(config: Path) -> list[str]:
    """Rewrite `config` with only its allowlisted entries; the keys dropped."""
    try:
        entries = read_config(config)
    except GitError:  # unparseable: start from the bare minimum
        entries = [("core.repositoryformatversion", "0")]
    dropped = [key for key, _ in entries if not _allowed(key)]
    fresh = config.with_name(config.name + ".honk-new")
    fresh.unlink(missing_ok=True)
    fresh.touch()
    for key, value in entries:
        if _allowed(key):
            run_git(git.Git(), "config", "--file", str(fresh), "--add", key, value)
    os.replace(fresh, config)
    return dropped


def verify_git_dir(work_tree: Path, alternates: Path | None = None) -> list[str]:
    """Make `work_tree/.git` exactly what Honk made; what was wrong (empty when clean).

    A `.git` that is not a plain directory is refused (the caller rebuilds the workspace).
    """
    dot_git = work_tree / ".git"
    if dot_git.is_symlink() or not dot_git.is_dir():
        raise permanent(f"{dot_git} is not a git directory Honk made", "UnsafeWorkspace")
    return verify_repository(dot_git, alternates)


def verify_repository(git_dir: Path, alternates: Path | None = None) -> list[str]:
    """Same for a git directory (a workspace's `.git` or a bare mirror)."""
    problems: list[str] = []
    config = git_dir / "config"
    if config.is_symlink() or not config.is_file():
        config.unlink(missing_ok=True)
        problems.append("config replaced")
        config.write_text("[core]\n\trepositoryformatversion = 0\n", encoding="utf-8")
    try:
        dropped = foreign_config(config)
    except GitError:
        dropped = ["(unreadable config)"]
    if dropped:
        problems.append("config keys removed: " + ", ".join(sorted(set(rebuild_config(config)))))
    for name in ("info/attributes", "config.worktree", "commondir"):
        path = git_dir / name
        if path.exists() or path.is_symlink():
            delete_tree(path)
            problems.append(f"{name} removed")
    hooks = git_dir / "hooks"
    if hooks.exists() and any(not p.name.endswith(".sample") for p in hooks.iterdir()):
        delete_tree(hooks)
        problems.append("hooks removed")
    if alternates is not None:
        file = git_dir / "objects" / "info" / "alternates"
        expected = f"{alternates}\n"
        if file.is_symlink() or (file.exists() and file.read_text(encoding="utf-8", errors="replace") != expected):
            file.unlink(missing_ok=True)
            file.write_text(expected, encoding="utf-8")
            problems.append("alternates reset")
    if problems:
        log.warning(
            "repaired a git directory Honk did not leave that way",
            extra={"git_dir": str(git_dir), "problems": problems},
        )
    return problems


def remove_nested_repositories(work_tree: Path) -> list[str]:
    """Delete every `.git` below the top of `work_tree` (directories, gitfiles, symlinks):
    Honk never stages or recurses into an embedded repository. The paths removed."""
    removed = []
    for root, dirs, files in os.walk(work_tree):
        here = Path(root)
        if here == work_tree:
            dirs[:] = [d for d in dirs if d != ".git"]
            continue
        for name in [*dirs, *files]:
            if name == ".git":
                target = here / name
                delete_tree(target)
                removed.append(str(target.relative_to(work_tree)))
        dirs[:] = [d for d in dirs if d != ".git" and not (here / d).is_symlink()]
    if removed:
        log.warning("removed nested git repositories", extra={"paths": removed})
    return removed


def revert_gitmodules(repo: git.Repo) -> bool:
    """Put `.gitmodules` back as HEAD has it (or remove it): Honk never commits changes to
    submodule definitions. True when something was reverted."""
    tracked = bool(run_git(repo, "ls-tree", "--name-only", "HEAD", "--", ".gitmodules"))
    path = Path(repo.working_tree_dir or ".") / ".gitmodules"
    if tracked:
        if not run_git(repo, "status", "--porcelain", "--ignore-submodules=all", "--", ".gitmodules"):
            return False
        run_git(repo, "checkout", "--quiet", "HEAD", "--", ".gitmodules")
    elif path.exists() or path.is_symlink():
        delete_tree(path)
    else:
        return False
    log.warning("refused a change to .gitmodules")
    return True
