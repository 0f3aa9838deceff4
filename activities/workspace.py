"""Per-request git workspaces, rebuilt from the remote on whichever worker runs the step.

Layout on a host::

    <data_dir>/mirrors/<repo>.git        bare cache of the remote's branches and tags
    <data_dir>/mirrors/<repo>.git.lock   flock guarding that cache
    <data_dir>/workspaces/<request>      shared clone of the cache, `origin` = the real remote
    <data_dir>/locks/<request>.lock      flock guarding one workspace

The remote is the source of truth: every `ensure` resets the workspace to the pushed work
branch (or creates it from the base), so a worker that crashed mid-step leaves nothing that
matters behind, and any worker can continue the request.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import git
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import liveness
from activities.repo_config import RepoConfigError, load_repo_config
from honk.settings import Settings
from workflows.contract import (
    ACTIVITY_CLEANUP,
    ACTIVITY_PREPARE,
    BuildTargetRef,
    CleanupTask,
    PreparedWorkspace,
    WorkspaceRef,
)

log = logging.getLogger(__name__)

HONK_NAME = "Honk"
HONK_EMAIL = "honk@localhost"

# A hung clone/fetch/push would otherwise keep heartbeating forever from the helper thread.
NETWORK_TIMEOUT_S = 15 * 60

# Applied to every git invocation. The agent can write inside the workspace, so nothing in
# it may make git run programs (hooks, fsmonitor); commits must not depend on a signing key.
_SAFE_CONFIG = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
)

# Identity through the environment: it beats any GIT_AUTHOR_* a worker inherited and never
# touches global config. No prompts: a worker has no terminal to answer them.
_GIT_ENV = {
    "GIT_AUTHOR_NAME": HONK_NAME,
    "GIT_AUTHOR_EMAIL": HONK_EMAIL,
    "GIT_COMMITTER_NAME": HONK_NAME,
    "GIT_COMMITTER_EMAIL": HONK_EMAIL,
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_EDITOR": "true",
}

# stderr fragments that mean "this remote will not work until someone fixes the request or
# the registry" (as opposed to a network blip, which the activity retry handles).
_PERMANENT_REMOTE_ERRORS = (
    "does not appear to be a git repository",
    "repository not found",
    "not found",
    "does not exist",
    "authentication failed",
    "permission denied",
    "could not read username",
    "unsupported protocol",
    "transport '",  # "transport 'x' not allowed"
)

_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")


# --------------------------------------------------------------------------- helpers


def redact(text: str) -> str:
    """Strip `user:password@` from every URL in `text` (messages, logs, failures)."""
    return _URL_USERINFO.sub(r"\g<scheme>", text)


def safe_name(value: str) -> str:
    """A file name derived from `value`; unsafe or altered names get a hash to stay unique."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", value).strip(".-")[:80]
    if cleaned == value:
        return cleaned
    digest = hashlib.sha256(value.encode()).hexdigest()[:10]
    return f"{cleaned or 'x'}-{digest}"


class GitError(RuntimeError):
    """A git command failed. Retryable; the message and stderr carry no credentials."""

    def __init__(self, command: str, exc: git.GitCommandError) -> None:
        self.command = command
        self.status = exc.status
        # GitPython pre-formats these as "\n  stderr: '...'"; keep only git's own words.
        self.stderr = redact(_text(exc.stderr).removeprefix("\n  stderr: '").removesuffix("'"))
        self.stdout = redact(_text(exc.stdout).removeprefix("\n  stdout: '").removesuffix("'"))
        detail = self.stderr.strip() or self.stdout.strip() or f"exit status {exc.status}"
        super().__init__(f"git {command} failed: {detail}")


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value or "")


def run_git(
    target: git.Repo | git.Git,
    command: str,
    *args: str,
    network: bool = False,
    strip: bool = True,
) -> str:
    """Run `git <command> <args...>` as an argv (never a shell) with the safety settings.

    Raises GitError. `network` commands are killed after NETWORK_TIMEOUT_S.
    """
    cmd = target.git if isinstance(target, git.Repo) else target
    runner = getattr(cmd(c=list(_SAFE_CONFIG)), command.replace("-", "_"))
    try:
        output = runner(
            *args,
            env=_GIT_ENV,
            kill_after_timeout=NETWORK_TIMEOUT_S if network else None,
            strip_newline_in_stdout=strip,
        )
    except git.GitCommandError as exc:
        raise GitError(command, exc) from None
    return str(output)


def rev(repo: git.Repo, name: str) -> str | None:
    """The commit `name` points to, or None when it does not exist."""
    try:
        return run_git(repo, "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}")
    except GitError:
        return None


@contextlib.contextmanager
def open_repo(path: Path) -> Iterator[git.Repo]:
    """A Repo for one thread's use; closed afterwards (it keeps cat-file processes)."""
    repo = git.Repo(path)
    try:
        yield repo
    finally:
        repo.close()


def remote_error(ref: WorkspaceRef, problem: str) -> ApplicationError:
    return ApplicationError(
        f"remote {redact(ref.remote)} (base branch {ref.base_branch!r}, work branch "
        f"{ref.work_branch!r}): {problem}",
        type="RemoteError",
        non_retryable=True,
    )


def is_permanent_remote_error(exc: GitError) -> bool:
    lowered = exc.stderr.lower()
    return any(fragment in lowered for fragment in _PERMANENT_REMOTE_ERRORS)


def _log_extra(ref: WorkspaceRef, **more: Any) -> dict[str, Any]:
    return {
        "request_id": ref.request_id,
        "repo": ref.repo,
        "remote": redact(ref.remote),
        "work_branch": ref.work_branch,
        **more,
    }


def _validate(ref: WorkspaceRef) -> None:
    """Values become git arguments: refuse anything git could read as an option or that
    would point the work branch at the base."""
    problems = []
    if not ref.remote or ref.remote.startswith("-"):
        problems.append(f"invalid remote {redact(ref.remote)!r}")
    for label, branch in (("base", ref.base_branch), ("work", ref.work_branch)):
        if not _valid_branch(branch):
            problems.append(f"invalid {label} branch name {branch!r}")
    if ref.work_branch == ref.base_branch:
        problems.append(f"work branch must differ from base branch {ref.base_branch!r}")
    if problems:
        raise ApplicationError("; ".join(problems), type="InvalidWorkspace", non_retryable=True)


@functools.lru_cache(maxsize=1024)
def _valid_branch(name: str) -> bool:
    if not name or name.startswith("-"):
        return False
    try:  # purely syntactic: no repository is consulted
        run_git(git.Git(), "check-ref-format", f"refs/heads/{name}")
    except GitError:
        return False
    return True


def _rmtree(path: Path) -> None:
    """Delete a tree even when a build left read-only directories in it."""

    def make_writable_and_retry(func: Any, failed: str, _exc: Any) -> None:
        parent = os.path.dirname(failed)
        os.chmod(parent, os.stat(parent).st_mode | stat.S_IWUSR | stat.S_IXUSR)
        with contextlib.suppress(FileNotFoundError):
            func(failed)

    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path, onerror=make_writable_and_retry)


# --------------------------------------------------------------------------- locks

_held_locks = threading.local()


@contextlib.contextmanager
def file_lock(path: Path, what: str = "lock") -> Iterator[None]:
    """Exclusive flock on `path`.

    Excludes other processes *and* other threads (each acquisition opens its own file
    description). Re-entrant within a thread, so a caller holding a workspace may call
    methods that lock it again. Heartbeats while waiting for another holder.
    """
    held: dict[str, int] = _held_locks.__dict__.setdefault("paths", {})
    key = str(path)
    if key in held:
        held[key] += 1
        try:
            yield
        finally:
            held[key] -= 1
        return

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            with liveness.heartbeating(f"waiting for {what}"):
                fcntl.flock(fd, fcntl.LOCK_EX)
        held[key] = 1
        try:
            yield
        finally:
            del held[key]
    finally:
        os.close(fd)  # releases the flock


# --------------------------------------------------------------------------- workspaces


@dataclass(frozen=True)
class WorkspaceState:
    path: Path
    base_sha: str
    head_sha: str
    resumed: bool  # the remote work branch already existed


class Workspaces:
    """Git workspaces of requests on this host. Thread-safe; no Temporal dependency."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # ----------------------------------------------------------------- locations

    def path(self, ref: WorkspaceRef) -> Path:
        return self.settings.workspaces_dir / safe_name(ref.request_id)

    def mirror_path(self, ref: WorkspaceRef) -> Path:
        return self.settings.data_dir / "mirrors" / f"{safe_name(ref.repo)}.git"

    @contextlib.contextmanager
    def locked(self, ref: WorkspaceRef) -> Iterator[None]:
        """Hold the request's workspace (re-entrant): git in one workspace is one at a time."""
        lock = self.settings.data_dir / "locks" / f"{safe_name(ref.request_id)}.lock"
        with file_lock(lock, what=f"workspace {ref.request_id}"):
            yield

    # ----------------------------------------------------------------- sync with the remote

    def ensure(self, ref: WorkspaceRef) -> Path:
        """The request's workspace on this host, reset to the pushed state (see `sync`)."""
        return self.sync(ref).path

    def sync(self, ref: WorkspaceRef) -> WorkspaceState:
        """Create or refresh the workspace and reset it to the remote.

        The work branch is checked out at the remote work branch when it exists, otherwise
        created from `origin/<base>`; untracked and ignored files are removed.
        """
        _validate(ref)
        with self.locked(ref):
            mirror = self._refresh_mirror(ref)
            path = self._materialize(ref, mirror)
            with open_repo(path) as repo:
                self._fetch_from_mirror(repo, mirror)
                remote_work = rev(repo, f"refs/remotes/origin/{ref.work_branch}")
                base_sha = rev(repo, f"refs/remotes/origin/{ref.base_branch}")
                if base_sha is None:  # the mirror had it a moment ago; treat as transient
                    raise RuntimeError(f"origin/{ref.base_branch} missing after fetch")
                head = self._reset_work_branch(repo, ref, remote_work or base_sha)
        state = WorkspaceState(path, base_sha, head, resumed=remote_work is not None)
        log.info(
            "workspace ready",
            extra=_log_extra(ref, head_sha=head, base_sha=base_sha, resumed=state.resumed),
        )
        return state

    def fetch(self, ref: WorkspaceRef) -> None:
        """Refresh the remote-tracking branches of an existing workspace; the work tree and
        the local work branch are left alone."""
        _validate(ref)
        with self.locked(ref):
            mirror = self._refresh_mirror(ref)
            with open_repo(self.path(ref)) as repo:
                self._fetch_from_mirror(repo, mirror)

    def _refresh_mirror(self, ref: WorkspaceRef) -> Path:
        """Create or incrementally fetch the host's cache of the remote; check the base."""
        mirror = self.mirror_path(ref)
        with file_lock(mirror.with_name(mirror.name + ".lock"), what=f"mirror {ref.repo}"):
            if not (mirror / "HEAD").exists():
                self._create_mirror(mirror)
            with open_repo(mirror) as repo:
                try:
                    with liveness.heartbeating("git fetch", ref.repo):
                        run_git(
                            repo, "fetch", "--prune", "--quiet", ref.remote,
                            "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*",
                            network=True,
                        )
                except GitError as exc:
                    if is_permanent_remote_error(exc):
                        raise remote_error(ref, f"cannot fetch: {exc.stderr}") from None
                    log.warning("fetch failed", extra=_log_extra(ref, error=str(exc)))
                    raise
                if rev(repo, f"refs/heads/{ref.base_branch}") is None:
                    raise remote_error(ref, f"has no branch {ref.base_branch!r}")
                # Clones of the mirror start from the base rather than whatever HEAD names.
                run_git(repo, "symbolic-ref", "HEAD", f"refs/heads/{ref.base_branch}")
        return mirror

    def _create_mirror(self, mirror: Path) -> None:
        """An empty bare repository, created aside and renamed so a crash leaves no half."""
        mirror.parent.mkdir(parents=True, exist_ok=True)
        for stale in mirror.parent.glob(f".{mirror.name}.tmp-*"):
            _rmtree(stale)
        tmp = mirror.with_name(f".{mirror.name}.tmp-{uuid.uuid4().hex[:8]}")
        run_git(git.Git(), "init", "--quiet", "--bare", str(tmp))
        with open_repo(tmp) as repo:
            # Workspaces borrow this object store (clone --shared): objects must never be
            # pruned from under them, so no automatic gc/maintenance here.
            for key, value in (("gc.auto", "0"), ("maintenance.auto", "false"),
                               ("gc.pruneExpire", "never"), ("core.logAllRefUpdates", "false")):
                run_git(repo, "config", key, value)
        os.rename(tmp, mirror)

    def _materialize(self, ref: WorkspaceRef, mirror: Path) -> Path:
        """Make sure a usable clone exists at `path(ref)`; rebuild it when it is broken."""
        path = self.path(ref)
        if path.exists() and not self._healthy(path):
            log.warning("rebuilding broken workspace", extra=_log_extra(ref, path=str(path)))
            _rmtree(path)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
            try:
                # --shared borrows the mirror's objects: no copy, near-instant on any size.
                run_git(git.Git(), "clone", "--quiet", "--shared", "--no-checkout",
                        str(mirror), str(tmp))
                os.rename(tmp, path)
            finally:
                _rmtree(tmp)
            log.info("workspace created", extra=_log_extra(ref, path=str(path)))
        with open_repo(path) as repo:
            # Pushes go to the real remote, never through the host cache.
            run_git(repo, "remote", "set-url", "origin", ref.remote)
        return path

    @staticmethod
    def _healthy(path: Path) -> bool:
        if not (path / ".git").is_dir():
            return False
        try:
            with open_repo(path) as repo:
                run_git(repo, "rev-parse", "--verify", "--quiet", "HEAD^{tree}")
        except (GitError, git.GitError):
            return False
        return True

    @staticmethod
    def _fetch_from_mirror(repo: git.Repo, mirror: Path) -> None:
        """Update `origin/*` from the just-fetched mirror: a local fetch that moves no
        objects (they are shared), instead of a second round trip to the remote."""
        run_git(repo, "fetch", "--prune", "--quiet", str(mirror),
                "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*")

    @staticmethod
    def _reset_work_branch(repo: git.Repo, ref: WorkspaceRef, start: str) -> str:
        """Point the work branch at `start` and make the tree exactly that commit."""
        git_dir = Path(repo.git_dir)
        if (git_dir / "rebase-merge").exists() or (git_dir / "rebase-apply").exists():
            run_git(repo, "rebase", "--quit")  # a crash mid-merge left a rebase behind
        run_git(repo, "checkout", "--quiet", "--force", "--no-track", "-B", ref.work_branch, start,
                "--")
        run_git(repo, "reset", "--quiet", "--hard", start)  # also drops MERGE_HEAD & co
        run_git(repo, "clean", "-ffdxq")
        return run_git(repo, "rev-parse", "HEAD")

    # ----------------------------------------------------------------- changes

    def commit_all(self, ref: WorkspaceRef, message: str) -> str | None:
        """Commit every change in the workspace as Honk; None when nothing changed."""
        with self.locked(ref), open_repo(self.path(ref)) as repo:
            run_git(repo, "add", "--all")
            if not run_git(repo, "status", "--porcelain"):
                return None
            run_git(repo, "commit", "--quiet", "--no-verify", "-m",
                    message.strip() or "Honk: update workspace")
            sha = run_git(repo, "rev-parse", "HEAD")
        log.info("committed", extra=_log_extra(ref, head_sha=sha))
        return sha

    def push(self, ref: WorkspaceRef) -> str:
        """Push the work branch to the remote and return its sha. Idempotent.

        The lease is the remote work branch as last fetched: a duplicate attempt on another
        worker that pushed meanwhile is refused rather than overwritten. The refspec names
        only the work branch, so the base is never touched.
        """
        _validate(ref)
        work = f"refs/heads/{ref.work_branch}"
        with self.locked(ref), open_repo(self.path(ref)) as repo:
            sha = run_git(repo, "rev-parse", work)
            lease = rev(repo, f"refs/remotes/origin/{ref.work_branch}") or ""
            try:
                with liveness.heartbeating("git push", ref.work_branch):
                    run_git(repo, "push", "--quiet", f"--force-with-lease={work}:{lease}",
                            "origin", f"{work}:{work}", network=True)
            except GitError as exc:
                if is_permanent_remote_error(exc):
                    raise remote_error(ref, f"cannot push: {exc.stderr}") from None
                log.warning("push failed", extra=_log_extra(ref, error=str(exc)))
                raise
        log.info("pushed work branch", extra=_log_extra(ref, head_sha=sha))
        return sha

    def head(self, ref: WorkspaceRef) -> str:
        with self.locked(ref), open_repo(self.path(ref)) as repo:
            return run_git(repo, "rev-parse", "HEAD")

    def diff_is_empty(self, ref: WorkspaceRef) -> bool:
        """True when the committed work branch has the same tree as `origin/<base>`."""
        with self.locked(ref), open_repo(self.path(ref)) as repo:
            work = run_git(repo, "rev-parse", f"refs/heads/{ref.work_branch}^{{tree}}")
            base = run_git(repo, "rev-parse", f"refs/remotes/origin/{ref.base_branch}^{{tree}}")
        return work == base

    def changed_files(self, ref: WorkspaceRef) -> list[str]:
        """Paths the work branch changed since its merge-base with the base (renames count
        as both paths)."""
        with self.locked(ref), open_repo(self.path(ref)) as repo:
            out = run_git(
                repo, "diff", "--name-only", "--no-renames", "-z",
                f"refs/remotes/origin/{ref.base_branch}...refs/heads/{ref.work_branch}",
                strip=False,
            )
        return [name for name in out.split("\0") if name]

    # ----------------------------------------------------------------- cleanup

    def remove(self, ref: WorkspaceRef, delete_remote_branch: bool) -> None:
        """Delete the local workspace and optionally the remote work branch. Harmless when
        either is already gone."""
        _validate(ref)
        with self.locked(ref):
            if delete_remote_branch:
                self._delete_remote_branch(ref)
            _rmtree(self.path(ref))
        log.info("workspace removed", extra=_log_extra(ref, remote_deleted=delete_remote_branch))

    def _delete_remote_branch(self, ref: WorkspaceRef) -> None:
        # `git push` needs a repository to run in; an empty one will do for a deletion, so a
        # host that never had this repository does not clone it just to clean up.
        with tempfile.TemporaryDirectory(prefix="honk-push-") as scratch:
            run_git(git.Git(), "init", "--quiet", "--bare", scratch)
            with open_repo(Path(scratch)) as repo:
                try:
                    with liveness.heartbeating("git push --delete", ref.work_branch):
                        run_git(repo, "push", "--quiet", ref.remote,
                                f":refs/heads/{ref.work_branch}", network=True)
                except GitError as exc:
                    if "remote ref does not exist" in exc.stderr:
                        return
                    if is_permanent_remote_error(exc):
                        log.warning("remote gone; nothing to delete",
                                    extra=_log_extra(ref, error=str(exc)))
                        return
                    raise


# --------------------------------------------------------------------------- activities


class WorkspaceActivities:
    """`prepare_workspace` and `cleanup_workspace`; sync, run on the worker's thread pool."""

    def __init__(self, settings: Settings) -> None:
        self.workspaces = Workspaces(settings)

    @activity.defn(name=ACTIVITY_PREPARE)
    def prepare(self, ref: WorkspaceRef) -> PreparedWorkspace:
        with self.workspaces.locked(ref):
            state = self.workspaces.sync(ref)
            # Publish the branch at once: the request is visible and resumable remotely.
            head = self.workspaces.push(ref)
            try:
                config = load_repo_config(state.path)
            except RepoConfigError as exc:
                raise ApplicationError(str(exc), type="ConfigError", non_retryable=True) from None
        return PreparedWorkspace(
            base_sha=state.base_sha,
            head_sha=head,
            resumed=state.resumed,
            targets=[BuildTargetRef(name=b.name, task_queue=b.task_queue) for b in config.build],
            checks=[c.name for c in config.checks],
        )

    @activity.defn(name=ACTIVITY_CLEANUP)
    def cleanup(self, task: CleanupTask) -> None:
        self.workspaces.remove(task.workspace, delete_remote_branch=task.delete_remote_branch)
