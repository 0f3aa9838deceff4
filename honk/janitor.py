"""Remove what finished requests left behind: local workspaces and remote `honk/*` branches,
and (honk/retention.py) their artifacts, logs, published copies and chat state after
configurable ages; repack the mirrors.

A request cleans up after itself when it ends (cleanup_workspace); this catches the rest — a
worker that died for good, a host that went away, a request terminated from the Temporal
UI. Something is removed only when *both* hold:

- its request is not running (asked through `is_running(request_id)`, which the CLI answers
  from Temporal: closed or unknown workflow = not running; any doubt = running), and
- it is older than `older_than`: for a workspace, the newest mtime of the directory, its
  `.git` and its index (every git step touches one of them); for a branch, the committer
  date of its tip.

Branches are deleted with a lease on the tip that was judged, so a push that lands between
the look and the deletion survives. A workspace is deleted only while holding its request's
lock, so no step of a (restarted) request can be using it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import git

from honk.config.registry import Registry, RepoEntry
from honk.config.settings import Settings
from honk.git.branches import delete_remote_branch
from honk.git.credentials import GitCredentials
from honk.git.runner import GitError, open_repo, rev, run_git
from honk.redact import redact
from honk.retention import expired, remove, repack_mirrors, retention_ages, tree_size
from honk.workflows.contract import WorkspaceRef
from honk.workspace import Workspaces
from honk.workspace.locks import LockBusy
from honk.workspace.paths import delete_tree, safe_name

log = logging.getLogger(__name__)

BRANCH_PREFIX = "honk/"
REQUEST_PREFIX = "honk-"  # workflow id `honk-<x>` works on branch `honk/<x>`
# Half-made or half-scrubbed directories a crash can leave (see honk/workspace/pool.py).
_LEFTOVER_PREFIXES = (".recycle-", ".git-")

IsRunning = Callable[[str], bool]


@dataclass
class Removal:
    kind: str  # "workspace", "branch", "leftover", or a retention kind (honk/retention.py)
    name: str  # the path, or `<repo>:<branch>`
    request_id: str | None
    age_s: int
    sha: str | None = None
    size_bytes: int | None = None  # on this host's disk (None for remote branches)


@dataclass
class Report:
    dry_run: bool
    older_than_s: int
    removed: list[Removal] = field(default_factory=list)  # or, in a dry run, would be
    kept_running: int = 0
    kept_recent: int = 0
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. a retention raised to the link expiry
    repacked: list[dict[str, Any]] = field(default_factory=list)  # mirror, bytes_before, bytes_after

    @property
    def removed_bytes(self) -> int:
        return sum(r.size_bytes or 0 for r in self.removed)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "removed_bytes": self.removed_bytes}


_DURATION = re.compile(r"(\d+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    """`90m`, `12h`, `3d`, `1w`, or a sum such as `1d12h`."""
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"invalid duration {text!r}: use e.g. 90m, 12h, 3d or 1d12h")
    return timedelta(seconds=sum(int(n) * _UNIT_SECONDS[u] for n, u in parts))


def request_for_branch(branch: str) -> str | None:
    """`honk/<x>` → `honk-<x>`, the id of the request that works on it."""
    if not branch.startswith(BRANCH_PREFIX) or branch == BRANCH_PREFIX:
        return None
    return REQUEST_PREFIX + branch.removeprefix(BRANCH_PREFIX)


def request_for_workspace(path: Path) -> str:
    """The request a workspace directory belongs to.

    The directory is named `safe_name(request_id)`, which is the id itself for every id
    Honk makes; for an id that needed escaping, the checked-out work branch recovers it, as
    long as it maps back to this very directory."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        head = (path / ".git" / "HEAD").read_text(encoding="utf-8").strip()
        candidate = request_for_branch(head.removeprefix("ref: refs/heads/"))
        if head.startswith("ref: refs/heads/") and candidate and safe_name(candidate) == path.name:
            return candidate
    return path.name


def last_touched(path: Path) -> float:
    times = []
    for item in (path, path / ".git", path / ".git" / "index"):
        with contextlib.suppress(OSError):
            times.append(item.stat().st_mtime)
    return max(times, default=0.0)


def registry_credentials(registry: Registry) -> dict[str, GitCredentials]:
    """Credentials that registry remotes carried, keyed by the clean remote URL."""
    found = {}
    for entry in registry.repos.values():
        if entry.credentials:
            username, password = entry.credentials
            found[entry.remote] = GitCredentials(username or "", password)
    return found


def sweep(
    settings: Settings,
    registry: Registry,
    is_running: IsRunning,
    older_than: timedelta,
    dry_run: bool = False,
    *,
    now: float | None = None,
) -> Report:
    """Remove orphaned workspaces on this host and orphaned `honk/*` branches of every
    repository in the registry. With `dry_run`, report what would go and remove nothing."""
    now = time.time() if now is None else now
    report = Report(dry_run=dry_run, older_than_s=int(older_than.total_seconds()))
    cutoff = now - older_than.total_seconds()
    workspaces = Workspaces(settings, credentials=registry_credentials(registry))
    running = _cached(is_running, report)

    _sweep_workspaces(workspaces, running, cutoff, now, report)
    _sweep_leftovers(settings, cutoff, now, report)
    _sweep_retention(settings, running, now, report)
    for entry in registry.repos.values():
        try:
            _sweep_branches(workspaces, entry, running, cutoff, now, report)
        except Exception as exc:  # noqa: BLE001 - one bad remote must not stop the others
            report.errors.append(f"{entry.name}: {redact(str(exc))}")
            log.warning("janitor: repository skipped", extra={"repo": entry.name, "error": redact(str(exc))})
    log.info(
        "janitor done",
        extra={
            "dry_run": dry_run,
            "removed": len(report.removed),
            "kept_running": report.kept_running,
            "kept_recent": report.kept_recent,
            "errors": len(report.errors),
        },
    )
    return report


def _sweep_retention(settings: Settings, running: Callable[[str], bool], now: float, report: Report) -> None:
    ages, notes = retention_ages(settings)
    report.notes += notes
    for note in notes:
        log.warning("janitor: %s", note)
    items, kept_running, kept_recent = expired(settings, running, now, ages)
    report.kept_running += kept_running
    report.kept_recent += kept_recent
    for item in items:
        if not report.dry_run:
            try:
                remove(item)
            except OSError as exc:
                report.errors.append(f"{item.path}: {exc}")
                continue
        report.removed.append(Removal(item.kind, str(item.path), item.request_id, item.age_s, None, item.size_bytes))
    repacked, errors = repack_mirrors(settings, report.dry_run)
    report.errors += errors
    report.repacked += [{"mirror": m, "bytes_before": b, "bytes_after": a} for m, b, a in repacked]


def _cached(is_running: IsRunning, report: Report) -> Callable[[str], bool]:
    """`is_running` asked once per request; a failure to answer counts as running."""
    answers: dict[str, bool] = {}

    def ask(request_id: str) -> bool:
        if request_id not in answers:
            try:
                answers[request_id] = bool(is_running(request_id))
            except Exception as exc:  # noqa: BLE001 - any doubt means "keep it"
                report.errors.append(f"could not tell whether {request_id} runs: {redact(str(exc))}")
                answers[request_id] = True
        return answers[request_id]

    return ask


def _sweep_workspaces(
    workspaces: Workspaces,
    running: Callable[[str], bool],
    cutoff: float,
    now: float,
    report: Report,
) -> None:
    root = workspaces.settings.workspaces_dir
    if not root.is_dir():
        return
    for path in sorted(root.iterdir()):
        if path.name.startswith("."):  # a clone in the making (`.<name>.tmp-*`): leftovers
            _leftover(path, cutoff, now, report)
            continue
        touched = last_touched(path)
        request_id = request_for_workspace(path)
        if touched > cutoff:
            report.kept_recent += 1
            continue
        if running(request_id):
            report.kept_running += 1
            continue
        removal = Removal("workspace", str(path), request_id, int(now - touched), size_bytes=tree_size(path))
        if report.dry_run:
            report.removed.append(removal)
            continue
        try:
            with workspaces.lock_workspace_dir(path.name, blocking=False):
                delete_tree(path)
        except LockBusy:  # a step is using it after all
            report.kept_running += 1
            continue
        report.removed.append(removal)
        log.info("janitor removed workspace", extra={"path": str(path), "request_id": request_id})


def _sweep_leftovers(settings: Settings, cutoff: float, now: float, report: Report) -> None:
    pool = settings.pool_dir
    if pool.is_dir():
        for repo_pool in pool.iterdir():
            if repo_pool.is_dir():
                for path in repo_pool.iterdir():
                    if path.name.startswith(_LEFTOVER_PREFIXES):
                        _leftover(path, cutoff, now, report)


def _leftover(path: Path, cutoff: float, now: float, report: Report) -> None:
    touched = last_touched(path)
    if touched > cutoff:  # maybe still being made or scrubbed
        report.kept_recent += 1
        return
    report.removed.append(Removal("leftover", str(path), None, int(now - touched), size_bytes=tree_size(path)))
    if not report.dry_run:
        delete_tree(path)


def _sweep_branches(
    workspaces: Workspaces,
    entry: RepoEntry,
    running: Callable[[str], bool],
    cutoff: float,
    now: float,
    report: Report,
) -> None:
    # A stand-in request: it only names the repository for the mirror and the credentials.
    ref = WorkspaceRef(
        request_id="janitor",
        repo=entry.name,
        remote=entry.remote,
        base_branch=entry.base_branch,
        work_branch=f"{BRANCH_PREFIX}janitor",
    )
    url, credentials = workspaces.remote_url(ref), workspaces.credentials_for(ref)
    out = run_git(
        git.Git(), "ls-remote", "--heads", url, f"refs/heads/{BRANCH_PREFIX}*", network=True, credentials=credentials
    )
    candidates = []
    for line in out.splitlines():
        sha, _, name = line.partition("\t")
        branch = name.removeprefix("refs/heads/")
        request_id = request_for_branch(branch)
        if request_id is None or branch == entry.base_branch:
            continue
        if running(request_id):
            report.kept_running += 1
            continue
        candidates.append((branch, sha, request_id))
    if not candidates:
        return

    # The tip's date comes from the host's mirror cache (fetched incrementally if a tip is
    # not in it yet), not from a clone of its own.
    mirror = workspaces.mirror_path(ref)
    if not (mirror / "HEAD").exists() or any(_commit_time(mirror, sha) is None for _, sha, _ in candidates):
        mirror = workspaces.refresh_mirror(ref)
    for branch, sha, request_id in candidates:
        committed = _commit_time(mirror, sha)
        if committed is None:  # pushed a moment ago
            report.kept_recent += 1
            continue
        if committed > cutoff:
            report.kept_recent += 1
            continue
        removal = Removal("branch", f"{entry.name}:{branch}", request_id, int(now - committed), sha)
        if not report.dry_run:
            try:
                delete_remote_branch(url, branch, credentials, expect_sha=sha)
            except GitError as exc:  # moved since we looked (lease), or the remote said no
                report.errors.append(f"{entry.name}:{branch}: {exc}")
                continue
            log.info(
                "janitor deleted branch",
                extra={"repo": entry.name, "branch": branch, "sha": sha, "request_id": request_id},
            )
        report.removed.append(removal)


def _commit_time(mirror: Path, sha: str) -> float | None:
    with open_repo(mirror) as repo:
        if rev(repo, sha) is None:
            return None
        return float(run_git(repo, "show", "-s", "--format=%ct", sha))
