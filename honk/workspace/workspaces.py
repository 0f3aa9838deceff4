"""Per-request git workspaces, rebuilt from the remote on whichever worker runs the step.

Layout on a host::

    <data_dir>/mirrors/<repo>.git        bare cache of the remote's branches and tags (mirror.py)
    <data_dir>/mirrors/<repo>.git.lock   flock guarding that cache
    <data_dir>/workspaces/<request>      shared clone of the cache, `origin` = the real remote
    <data_dir>/locks/<request>.lock      flock guarding one workspace (locks.py)
    <data_dir>/pool/<repo>/<slot>        idle, checked-out workspaces waiting for a request (pool.py)
    <data_dir>/pool/<repo>.lock          flock guarding that pool

The remote is the source of truth: every `ensure` resets the workspace to the pushed work
branch (or creates it from the base), so a worker that crashed mid-step leaves nothing that
matters behind, and any worker can continue the request.

Credentials never touch the disk: remotes are stored and passed without userinfo, and a
network git command gets them in its own environment (`honk/git/credentials.py`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import git

from honk.config.protect import ProtectedPaths
from honk.config.repository import RepoConfig, RepoConfigError
from honk.config.settings import Settings
from honk.errors import HonkError, permanent
from honk.git.branches import delete_remote_branch
from honk.git.credentials import GitCredentials, split_credentials, url_host
from honk.git.runner import GitError, is_permanent_remote_error, open_repo, revs, run_git
from honk.workflows.contract import BuildTargetRef, PreparedWorkspace, WorkspaceRef
from honk.workspace import hygiene
from honk.workspace import sync as work_branch
from honk.workspace.base_config import base_repo_config, cached_base_config
from honk.workspace.locks import file_lock
from honk.workspace.mirror import fetch_from_mirror, refresh_mirror
from honk.workspace.paths import delete_tree, safe_name
from honk.workspace.pool import WorkspacePool
from honk.workspace.request import log_fields, validate_ref

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkspaceState:
    path: Path
    base_sha: str
    head_sha: str
    resumed: bool  # the remote work branch already existed


class Workspaces:
    """Git workspaces of requests on this host. Thread-safe; no Temporal dependency.

    `credentials` maps remote URLs (without userinfo) to credentials for them, e.g. from the
    registry; otherwise a remote authenticates with userinfo its URL still carries (requests
    started before remotes were cleaned), the HONK_GIT_* settings, or the worker's own git
    configuration.
    """

    def __init__(self, settings: Settings, credentials: Mapping[str, GitCredentials] | None = None) -> None:
        self.settings = settings
        self.default_credentials = GitCredentials.from_settings(settings)
        self.known_credentials = dict(credentials or {})
        self.pool = WorkspacePool(settings.pool_dir, settings.workspace_pool_size)

    # ----------------------------------------------------------------- locations

    def path(self, ref: WorkspaceRef) -> Path:
        return self.settings.workspaces_dir / safe_name(ref.request_id)

    def mirror_path(self, ref: WorkspaceRef) -> Path:
        return self.settings.data_dir / "mirrors" / f"{safe_name(ref.repo)}.git"

    def pool_path(self, ref: WorkspaceRef) -> Path:
        return self.pool.path(ref.repo)

    @contextlib.contextmanager
    def locked(self, ref: WorkspaceRef) -> Iterator[None]:
        """Hold the request's workspace (re-entrant): git in one workspace is one at a time."""
        with self.lock_workspace_dir(safe_name(ref.request_id), what=f"workspace {ref.request_id}"):
            yield

    def lock_workspace_dir(self, name: str, *, what: str = "", blocking: bool = True):
        """The lock of `workspaces_dir/<name>` (the janitor holds it without a WorkspaceRef)."""
        lock = self.settings.data_dir / "locks" / f"{name}.lock"
        return file_lock(lock, what=what or f"workspace {name}", blocking=blocking)

    # ----------------------------------------------------------------- remotes

    @staticmethod
    def remote_url(ref: WorkspaceRef) -> str:
        """The remote as git sees it: without credentials (they travel separately)."""
        return split_credentials(ref.remote)[0]

    def credentials_for(self, ref: WorkspaceRef) -> GitCredentials | None:
        clean, user, password = split_credentials(ref.remote)
        if password is not None or (user and clean.lower().startswith(("http://", "https://"))):
            # Only that host may be answered: a redirect elsewhere never sees them.
            return GitCredentials(user or "", password, host=url_host(clean))
        return self.known_credentials.get(clean) or self.default_credentials

    # ----------------------------------------------------------------- a request's steps

    def prepare(self, ref: WorkspaceRef) -> PreparedWorkspace:
        """The workspace of a new (or resumed) request, its work branch published at once so
        the request is visible and resumable remotely (and a remote that refuses Honk's pushes
        fails the request before the agent spends anything), and what `.honk.toml` declares."""
        with self.locked(ref):
            state = self.sync(ref)
            head = self.push(ref)
            try:
                config = self.repo_config(ref, base_sha=state.base_sha)
            except RepoConfigError as exc:
                raise permanent(str(exc), "ConfigError") from None
        return PreparedWorkspace(
            base_sha=state.base_sha,
            head_sha=head,
            resumed=state.resumed,
            targets=[
                BuildTargetRef(name=b.name, task_queue=b.task_queue, timeout_s=b.timeout_seconds) for b in config.build
            ],
            checks=[c.name for c in config.checks],
            checks_timeout_s=sum(c.timeout_seconds for c in config.checks),
        )

    def ensure(self, ref: WorkspaceRef) -> Path:
        """The request's workspace on this host, reset to the pushed state (see `sync`)."""
        return self.sync(ref).path

    def sync(self, ref: WorkspaceRef) -> WorkspaceState:
        """Create or refresh the workspace and reset it to the remote.

        The work branch is checked out at the remote work branch when it exists, otherwise
        created from `origin/<base>`; untracked and ignored files are removed.
        """
        validate_ref(ref)
        with self.locked(ref):
            if ref.head_sha is not None and (here := self._still_here(ref)) is not None:
                return here
            mirror = self._refresh_mirror(ref)
            path, how = self._materialize(ref, mirror)
            with open_repo(path) as repo:
                if how != "cloned":  # a clone of the just-fetched mirror has its branches already
                    fetch_from_mirror(repo, mirror)
                remote_work, base_sha = revs(
                    repo,
                    f"refs/remotes/origin/{ref.work_branch}^{{commit}}",
                    f"refs/remotes/origin/{ref.base_branch}^{{commit}}",
                )
                if base_sha is None:  # the mirror had it a moment ago; treat as transient
                    raise RuntimeError(f"origin/{ref.base_branch} missing after fetch")
                head = work_branch.reset_work_branch(
                    repo, ref, remote_work or base_sha, fresh=how != "kept", empty=how == "cloned"
                )
        state = WorkspaceState(path, base_sha, head, resumed=remote_work is not None)
        log.info("workspace ready", extra=log_fields(ref, head_sha=head, base_sha=base_sha, resumed=state.resumed))
        return state

    def _still_here(self, ref: WorkspaceRef) -> WorkspaceState | None:
        """The workspace on this host when its work branch is at `ref.head_sha` (the tip Honk
        last pushed), reset to it without asking the remote; None when it must be synced.

        Steps that follow each other on one host then share the workspace at no git cost;
        the base stays as last fetched (a step that needs the newest base passes no head)."""
        path = self.path(ref)
        if not path.exists() or (path / ".git").is_symlink() or not (path / ".git").is_dir():
            return None
        try:
            hygiene.verify_git_dir(path, self.mirror_path(ref) / "objects")
        except HonkError:
            return None  # the full sync rebuilds it
        with open_repo(path) as repo:
            work, base_sha = revs(
                repo, f"refs/heads/{ref.work_branch}^{{commit}}", f"refs/remotes/origin/{ref.base_branch}^{{commit}}"
            )
            if work != ref.head_sha or base_sha is None or ref.head_sha is None:
                return None
            work_branch.reset_to(repo, ref, ref.head_sha)
        log.info("workspace reused", extra=log_fields(ref, head_sha=ref.head_sha, base_sha=base_sha))
        return WorkspaceState(path, base_sha, ref.head_sha, resumed=True)

    def fetch(self, ref: WorkspaceRef) -> None:
        """Refresh the remote-tracking branches of an existing workspace; the work tree and
        the local work branch are left alone."""
        validate_ref(ref)
        with self.locked(ref):
            mirror = self._refresh_mirror(ref)
            with open_repo(self.verified(ref)) as repo:
                fetch_from_mirror(repo, mirror)

    def refresh_mirror(self, ref: WorkspaceRef) -> Path:
        """Fetch the host's cache of `ref`'s remote (creating it if needed); its path."""
        validate_ref(ref)
        return self._refresh_mirror(ref)

    def _refresh_mirror(self, ref: WorkspaceRef) -> Path:
        return refresh_mirror(self.mirror_path(ref), ref, self.remote_url(ref), self.credentials_for(ref))

    def _materialize(self, ref: WorkspaceRef, mirror: Path) -> tuple[Path, str]:
        """Make sure a usable clone exists at `path(ref)`: the one already there ("kept"), an
        idle one from the pool ("pooled"), or a new shared clone of the mirror ("cloned"), with
        no work tree yet. A broken one is rebuilt. Also says which of the three it is."""
        path = self.path(ref)
        how = "kept"
        if path.exists() and not self._trusted(path, mirror):
            log.warning("rebuilding broken workspace", extra=log_fields(ref, path=str(path)))
            delete_tree(path)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            if self.pool.take(ref.repo, path):
                how = "pooled"
                if self._trusted(path, mirror):
                    log.info("workspace taken from pool", extra=log_fields(ref, path=str(path)))
                else:  # e.g. its mirror was deleted and recreated meanwhile
                    log.warning("discarding broken pooled workspace", extra=log_fields(ref))
                    delete_tree(path)
        if not path.exists():
            tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
            try:
                # --shared borrows the mirror's objects: no copy, near-instant on any size.
                run_git(git.Git(), "clone", "--quiet", "--shared", "--no-checkout", str(mirror), str(tmp))
                os.rename(tmp, path)
            finally:
                delete_tree(tmp)
            how = "cloned"
            log.info("workspace created", extra=log_fields(ref, path=str(path)))
        # Pushes go to the real remote, never through the host cache; its URL carries no
        # credentials (they come with each command), so none lands in .git/config.
        url = self.remote_url(ref)
        if ("remote.origin.url", url) not in hygiene.read_config(path / ".git" / "config"):
            with open_repo(path) as repo:
                run_git(repo, "remote", "set-url", "origin", url)
        return path, how

    def _trusted(self, path: Path, mirror: Path) -> bool:
        """The workspace's `.git` is Honk's (repaired if need be) and usable."""
        try:
            hygiene.verify_git_dir(path, mirror / "objects")
        except HonkError:
            return False
        return self._healthy(path)

    def verified(self, ref: WorkspaceRef) -> Path:
        """The request's workspace, its `.git` checked (and repaired) before Honk's git
        reads it again: repository code or the agent ran there since Honk last looked."""
        path = self.path(ref)
        hygiene.verify_git_dir(path, self.mirror_path(ref) / "objects")
        return path

    @staticmethod
    def _healthy(path: Path) -> bool:
        if (path / ".git").is_symlink() or not (path / ".git").is_dir():
            return False
        try:
            with open_repo(path) as repo:
                run_git(repo, "rev-parse", "--verify", "--quiet", "HEAD^{tree}")
        except (GitError, git.GitError):
            return False
        return True

    # ----------------------------------------------------------------- changes

    def commit_paths(self, ref: WorkspaceRef, paths: Iterable[str], message: str) -> str | None:
        """Commit exactly `paths` (what the agent changed) as Honk; None when nothing changed.

        Repository code and the agent ran in the work tree: `.git` is verified first, nested
        repositories are removed and a changed `.gitmodules` is reverted, never committed."""
        with self.locked(ref):
            path = self.verified(ref)
            hygiene.remove_nested_repositories(path)
            with open_repo(path) as repo:
                hygiene.revert_gitmodules(repo)
                sha = work_branch.commit_paths(repo, paths, message)
        if sha is not None:
            log.info("committed", extra=log_fields(ref, head_sha=sha))
        return sha

    def commit_all(self, ref: WorkspaceRef, message: str) -> str | None:
        """Commit every change `git status` shows (not what `.gitignore` excludes). For callers
        that have no list of changes (tests, tools); the agent step uses `commit_paths`."""
        with self.locked(ref), open_repo(self.verified(ref)) as repo:
            out = run_git(
                repo,
                "status",
                "--porcelain",
                "-z",
                "--untracked-files=all",
                "--no-renames",
                "--ignore-submodules=all",
                strip=False,
            )
        paths = [entry[3:] for entry in out.split("\0") if len(entry) > 3]
        return self.commit_paths(ref, paths, message)

    def push(self, ref: WorkspaceRef) -> str:
        """Push the work branch to the remote and return its sha (see `sync.push_work_branch`)."""
        validate_ref(ref)
        with self.locked(ref), open_repo(self.verified(ref)) as repo:
            sha = work_branch.push_work_branch(repo, ref, self.credentials_for(ref))
        log.info("pushed work branch", extra=log_fields(ref, head_sha=sha))
        return sha

    def head(self, ref: WorkspaceRef) -> str:
        with self.locked(ref), open_repo(self.verified(ref)) as repo:
            return run_git(repo, "rev-parse", "HEAD")

    def tree(self, ref: WorkspaceRef) -> str:
        """The tree of the workspace's HEAD commit (what check results are keyed by)."""
        with self.locked(ref), open_repo(self.verified(ref)) as repo:
            return run_git(repo, "rev-parse", "HEAD^{tree}")

    def diff_is_empty(self, ref: WorkspaceRef) -> bool:
        """True when the committed work branch has the same tree as `origin/<base>`."""
        with self.locked(ref), open_repo(self.verified(ref)) as repo:
            return work_branch.diff_is_empty(repo, ref)

    def repo_config(self, ref: WorkspaceRef, base_sha: str | None = None) -> RepoConfig:
        """The request's checks, builds and agent settings: the base branch's `.honk.toml`
        (never the work tree's). Raises RepoConfigError."""
        return self.base_config(ref, base_sha)[0]

    def base_config(self, ref: WorkspaceRef, base_sha: str | None = None) -> tuple[RepoConfig, ProtectedPaths]:
        """The base branch's configuration and the paths it protects; `base_sha`: the commit
        `origin/<base>` is known to be at (a `sync` just said so), saving the lookup."""
        if base_sha is not None and (known := cached_base_config(base_sha)) is not None:
            return known
        with self.locked(ref), open_repo(self.verified(ref)) as repo:
            return base_repo_config(repo, ref.base_branch)

    def protected_changes(self, ref: WorkspaceRef) -> list[str]:
        """Protected paths the work branch changed (what the approver must be told)."""
        protected = self.base_config(ref)[1]
        return protected.among(self.changed_files(ref))

    def changed_files(self, ref: WorkspaceRef) -> list[str]:
        """Paths the work branch changed since its merge-base with the base."""
        with self.locked(ref), open_repo(self.verified(ref)) as repo:
            return work_branch.changed_files(repo, ref)

    def diff_stat(self, ref: WorkspaceRef) -> str:
        """`git diff --stat` of the work branch since its merge-base with the base."""
        with self.locked(ref), open_repo(self.verified(ref)) as repo:
            return work_branch.diff_stat(repo, ref)

    # ----------------------------------------------------------------- cleanup

    def remove(self, ref: WorkspaceRef, delete_remote_branch: bool, expect_sha: str | None = None) -> str | None:
        """Give up the request's local workspace (to the pool, or deleted) and optionally
        delete the remote work branch, with `expect_sha` only while its tip is that commit
        (someone else's commits on it are kept). Harmless when either is already gone.
        Returns what was kept and why, or None."""
        validate_ref(ref)
        pooled, kept = False, None
        with self.locked(ref):
            if delete_remote_branch:
                kept = self._delete_remote_branch(ref, expect_sha)
            path = self.path(ref)
            if path.exists() or path.is_symlink():
                pooled = self.pool.recycle(ref, path, self.mirror_path(ref))
        log.info(
            "workspace removed", extra=log_fields(ref, remote_deleted=delete_remote_branch and not kept, pooled=pooled)
        )
        return kept

    def _delete_remote_branch(self, ref: WorkspaceRef, expect_sha: str | None = None) -> str | None:
        try:
            delete_remote_branch(
                self.remote_url(ref), ref.work_branch, self.credentials_for(ref), expect_sha=expect_sha
            )
        except GitError as exc:
            if is_permanent_remote_error(exc):
                log.warning("remote gone; nothing to delete", extra=log_fields(ref, error=str(exc)))
                return None
            if expect_sha and ("stale info" in exc.stderr or "[rejected]" in exc.stderr):
                kept = f"kept {ref.work_branch}: its tip is no longer {expect_sha[:12]}, the commit Honk pushed"
                log.warning(kept, extra=log_fields(ref, expect_sha=expect_sha))
                return kept
            raise
        return None
