"""Per-request git workspaces, rebuilt from the remote on whichever worker runs the step.

Layout on a host::

    <data_dir>/mirrors/<repo>.git        bare cache of the remote's branches and tags
    <data_dir>/mirrors/<repo>.git.lock   flock guarding that cache
    <data_dir>/workspaces/<request>      shared clone of the cache, `origin` = the real remote
    <data_dir>/locks/<request>.lock      flock guarding one workspace
    <data_dir>/pool/<repo>/<slot>        idle, checked-out workspaces waiting for a request
    <data_dir>/pool/<repo>.lock          flock guarding that pool

The remote is the source of truth: every `ensure` resets the workspace to the pushed work
branch (or creates it from the base), so a worker that crashed mid-step leaves nothing that
matters behind, and any worker can continue the request.

Writing the files of a large checkout dominates the cost of a workspace (tens of thousands
of files take seconds even from a local clone). So a finished request's workspace is scrubbed
and parked in the pool, and the next request of that repository takes it over: only the
files that differ between the two commits are written.

Credentials never touch the disk: remotes are stored and passed without userinfo, and a
network git command gets the username and password in its own environment, answered through
GIT_ASKPASS (`activities/git_askpass.py`).
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
import sys
import tempfile
import threading
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import git
from temporalio import activity
from temporalio.exceptions import ApplicationError

from honk import liveness, telemetry
from honk.config.repository import RepoConfigError, load_repo_config
from honk.config.settings import Settings
from honk.redact import redact as redact_secrets
from honk.redact import remember_secrets
from honk.workflows.contract import (
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
    """Strip `user:password@` from every URL in `text` (git's messages show remotes), then
    mask every secret this process knows of (see `honk.redact`)."""
    return redact_secrets(_URL_USERINFO.sub(r"\g<scheme>", text))


# --------------------------------------------------------------------------- credentials


def register_secret(value: str | None) -> None:
    """Make `redact` (and every log line) hide `value` and its URL-encoded form from now on."""
    if value:
        remember_secrets([value, urllib.parse.quote(value, safe="")])


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """`url` without its credentials, plus the (decoded) username and password it carried.

    For http(s) the whole userinfo is a credential and goes. For other schemes
    (`ssh://git@host/r.git`) the user name is part of the address and stays; only a
    password is taken out. Paths and scp-like `git@host:r.git` come back unchanged.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme or "/" in scheme:
        return url, None, None
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    userinfo, at, hostport = authority.rpartition("@")
    if not at:
        return url, None, None
    raw_user, colon, raw_password = userinfo.partition(":")
    user = urllib.parse.unquote(raw_user) or None
    password = urllib.parse.unquote(raw_password) if colon else None
    register_secret(password)
    if scheme.lower() in ("http", "https"):
        return f"{scheme}://{hostport}{tail}", user, password
    if password is None:
        return url, None, None
    kept = f"{raw_user}@" if raw_user else ""
    return f"{scheme}://{kept}{hostport}{tail}", user, password


def url_host(url: str) -> str | None:
    """`host[:port]` of a URL, lower-cased; None for paths and scp-like addresses."""
    _scheme, sep, rest = url.partition("://")
    if not sep:
        return None
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    return authority.rpartition("@")[2].lower() or None


@dataclass(frozen=True)
class GitCredentials:
    """A username and password (or token) for https remotes. In memory only: git gets them
    per command through GIT_ASKPASS, never as an argument, a URL or a config entry."""

    username: str
    password: str | None = field(default=None, repr=False)
    host: str | None = None  # answer prompts of this host[:port] only; None: any host

    def __post_init__(self) -> None:
        register_secret(self.password)

    @classmethod
    def from_settings(cls, settings: Settings) -> GitCredentials | None:
        if not settings.git_username:
            return None
        password = settings.git_password.get_secret_value() if settings.git_password else None
        return cls(settings.git_username, password or None, settings.git_host or None)

    @classmethod
    def from_environment(cls) -> GitCredentials | None:
        """The worker's HONK_GIT_* variables, for git commands run without a Settings at
        hand (they are the same variables Settings reads)."""
        username = os.environ.get("HONK_GIT_USERNAME")
        if not username:
            return None
        return cls(username, os.environ.get("HONK_GIT_PASSWORD") or None, os.environ.get("HONK_GIT_HOST") or None)

    def env(self) -> dict[str, str]:
        """What a network git command needs in its environment to authenticate with these."""
        # Only our askpass may answer: a credential helper the worker configured would be
        # asked to *store* the credentials after a successful request, so the helper list
        # is reset for this one command (environment config, not `-c`, which `ps` shows).
        inherited = os.environ.get("GIT_CONFIG_COUNT", "")
        index = int(inherited) if inherited.isdigit() else 0
        return {
            "HONK_GIT_USERNAME": self.username,
            "HONK_GIT_PASSWORD": self.password or "",
            "HONK_GIT_HOST": self.host or "",
            "GIT_CONFIG_COUNT": str(index + 1),
            f"GIT_CONFIG_KEY_{index}": "credential.helper",
            f"GIT_CONFIG_VALUE_{index}": "",
        }


@functools.cache
def askpass_program() -> str:
    """Path of the GIT_ASKPASS program. The shipped script when it can run as is; otherwise
    (an install that dropped its executable bit, no python3 on PATH) a copy run by this
    interpreter in a private temporary directory. It holds no secret either way."""
    script = Path(__file__).with_name("git_askpass.py")
    if os.access(script, os.X_OK) and shutil.which("python3"):
        return str(script)
    shim = Path(tempfile.mkdtemp(prefix="honk-askpass-")) / "git-askpass"
    shim.write_text(f"#!{sys.executable}\n" + script.read_text(encoding="utf-8"), encoding="utf-8")
    shim.chmod(0o700)
    return str(shim)


def _network_env(credentials: GitCredentials | None) -> dict[str, str]:
    env = {"GIT_ASKPASS": askpass_program()}
    credentials = credentials or GitCredentials.from_environment()
    if credentials is not None:
        env.update(credentials.env())
    return env


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


@telemetry.traced(
    lambda target, command, *a, **k: f"git {command}",
    attrs=lambda target, command, *a, network=False, **k: {"git.command": command, "network": network},
)
def run_git(
    target: git.Repo | git.Git,
    command: str,
    *args: str,
    network: bool = False,
    strip: bool = True,
    credentials: GitCredentials | None = None,
) -> str:
    """Run `git <command> <args...>` as an argv (never a shell) with the safety settings.

    Raises GitError. `network` commands are killed after NETWORK_TIMEOUT_S and may
    authenticate: with `credentials`, else with the worker's HONK_GIT_* variables, else with
    whatever the worker's git has (credential helper, ssh keys).
    """
    cmd = target.git if isinstance(target, git.Repo) else target
    runner = getattr(cmd(c=list(_SAFE_CONFIG)), command.replace("-", "_"))
    env = {**_GIT_ENV, **_network_env(credentials)} if network else _GIT_ENV
    try:
        output = runner(
            *args,
            env=env,
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
        f"remote {redact(ref.remote)} (base branch {ref.base_branch!r}, work branch {ref.work_branch!r}): {problem}",
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


class LockBusy(RuntimeError):
    """A non-blocking `file_lock` found another holder."""


@contextlib.contextmanager
def file_lock(path: Path, what: str = "lock", *, blocking: bool = True) -> Iterator[None]:
    """Exclusive flock on `path`.

    Excludes other processes *and* other threads (each acquisition opens its own file
    description). Re-entrant within a thread, so a caller holding a workspace may call
    methods that lock it again. Heartbeats while waiting for another holder; with
    `blocking=False` raises LockBusy instead of waiting.
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
            if not blocking:
                raise LockBusy(f"{what} is busy") from None
            with liveness.heartbeating(f"waiting for {what}"):
                fcntl.flock(fd, fcntl.LOCK_EX)
        held[key] = 1
        try:
            yield
        finally:
            del held[key]
    finally:
        os.close(fd)  # releases the flock


# --------------------------------------------------------------------------- remote branches


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


# --------------------------------------------------------------------------- workspaces


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

    # ----------------------------------------------------------------- locations

    def path(self, ref: WorkspaceRef) -> Path:
        return self.settings.workspaces_dir / safe_name(ref.request_id)

    def mirror_path(self, ref: WorkspaceRef) -> Path:
        return self.settings.data_dir / "mirrors" / f"{safe_name(ref.repo)}.git"

    def pool_path(self, ref: WorkspaceRef) -> Path:
        return self.settings.pool_dir / safe_name(ref.repo)

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
            path, fresh = self._materialize(ref, mirror)
            with open_repo(path) as repo:
                self._fetch_from_mirror(repo, mirror)
                remote_work = rev(repo, f"refs/remotes/origin/{ref.work_branch}")
                base_sha = rev(repo, f"refs/remotes/origin/{ref.base_branch}")
                if base_sha is None:  # the mirror had it a moment ago; treat as transient
                    raise RuntimeError(f"origin/{ref.base_branch} missing after fetch")
                head = self._reset_work_branch(repo, ref, remote_work or base_sha, fresh=fresh)
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

    def refresh_mirror(self, ref: WorkspaceRef) -> Path:
        """Fetch the host's cache of `ref`'s remote (creating it if needed); its path."""
        _validate(ref)
        return self._refresh_mirror(ref)

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
                            repo,
                            "fetch",
                            "--prune",
                            "--quiet",
                            self.remote_url(ref),
                            "+refs/heads/*:refs/heads/*",
                            "+refs/tags/*:refs/tags/*",
                            network=True,
                            credentials=self.credentials_for(ref),
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
            for key, value in (
                ("gc.auto", "0"),
                ("maintenance.auto", "false"),
                ("gc.pruneExpire", "never"),
                ("core.logAllRefUpdates", "false"),
            ):
                run_git(repo, "config", key, value)
        os.rename(tmp, mirror)

    def _materialize(self, ref: WorkspaceRef, mirror: Path) -> tuple[Path, bool]:
        """Make sure a usable clone exists at `path(ref)`: the one already there, an idle
        one from the pool, or a new shared clone of the mirror. A broken one is rebuilt.
        Also says whether its `.git` is brand-new (from the pool or just cloned)."""
        path = self.path(ref)
        fresh = not path.exists()
        if path.exists() and not self._healthy(path):
            log.warning("rebuilding broken workspace", extra=_log_extra(ref, path=str(path)))
            _rmtree(path)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            if self._take_from_pool(ref, path):
                if self._healthy(path):
                    log.info("workspace taken from pool", extra=_log_extra(ref, path=str(path)))
                else:  # e.g. its mirror was deleted and recreated meanwhile
                    log.warning("discarding broken pooled workspace", extra=_log_extra(ref))
                    _rmtree(path)
        if not path.exists():
            tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
            try:
                # --shared borrows the mirror's objects: no copy, near-instant on any size.
                run_git(git.Git(), "clone", "--quiet", "--shared", "--no-checkout", str(mirror), str(tmp))
                os.rename(tmp, path)
            finally:
                _rmtree(tmp)
            log.info("workspace created", extra=_log_extra(ref, path=str(path)))
        with open_repo(path) as repo:
            # Pushes go to the real remote, never through the host cache; its URL carries no
            # credentials (they come with each command), so none lands in .git/config.
            run_git(repo, "remote", "set-url", "origin", self.remote_url(ref))
        return path, fresh

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
        # No FETCH_HEAD and no auto-maintenance child: nothing uses them here, and on the
        # warm path every process counts.
        run_git(
            repo,
            "fetch",
            "--prune",
            "--quiet",
            "--no-write-fetch-head",
            "--no-auto-maintenance",
            str(mirror),
            "+refs/heads/*:refs/remotes/origin/*",
            "+refs/tags/*:refs/tags/*",
        )

    @staticmethod
    def _reset_work_branch(repo: git.Repo, ref: WorkspaceRef, start: str, *, fresh: bool = False) -> str:
        """Point the work branch at `start` and make the tree exactly that commit.

        `fresh`: the `.git` is brand-new (pool or clone), so there is no merge, rebase or
        cherry-pick state to drop and the forced checkout alone gives the exact tree; the
        reset (another pass over every file, ~40% of a warm workspace's time on a large
        repository) only matters for a workspace a previous step of the request used."""
        git_dir = Path(repo.git_dir)
        if (git_dir / "rebase-merge").exists() or (git_dir / "rebase-apply").exists():
            run_git(repo, "rebase", "--quit")  # a crash mid-merge left a rebase behind
        run_git(repo, "checkout", "--quiet", "--force", "--no-track", "-B", ref.work_branch, start, "--")
        if not fresh:
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
            run_git(repo, "commit", "--quiet", "--no-verify", "-m", message.strip() or "Honk: update workspace")
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
                    run_git(
                        repo,
                        "push",
                        "--quiet",
                        f"--force-with-lease={work}:{lease}",
                        "origin",
                        f"{work}:{work}",
                        network=True,
                        credentials=self.credentials_for(ref),
                    )
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
                repo,
                "diff",
                "--name-only",
                "--no-renames",
                "-z",
                f"refs/remotes/origin/{ref.base_branch}...refs/heads/{ref.work_branch}",
                strip=False,
            )
        return [name for name in out.split("\0") if name]

    # ----------------------------------------------------------------- cleanup

    def remove(self, ref: WorkspaceRef, delete_remote_branch: bool) -> None:
        """Give up the request's local workspace (to the pool, or deleted) and optionally
        delete the remote work branch. Harmless when either is already gone."""
        _validate(ref)
        pooled = False
        with self.locked(ref):
            if delete_remote_branch:
                self._delete_remote_branch(ref)
            path = self.path(ref)
            if path.exists() or path.is_symlink():
                pooled = self._recycle(ref, path)
        log.info("workspace removed", extra=_log_extra(ref, remote_deleted=delete_remote_branch, pooled=pooled))

    def _delete_remote_branch(self, ref: WorkspaceRef) -> None:
        try:
            delete_remote_branch(self.remote_url(ref), ref.work_branch, self.credentials_for(ref))
        except GitError as exc:
            if is_permanent_remote_error(exc):
                log.warning("remote gone; nothing to delete", extra=_log_extra(ref, error=str(exc)))
                return
            raise

    # ----------------------------------------------------------------- the pool

    @contextlib.contextmanager
    def _pool_locked(self, ref: WorkspaceRef) -> Iterator[None]:
        lock = self.settings.pool_dir / f"{safe_name(ref.repo)}.lock"
        with file_lock(lock, what=f"workspace pool {ref.repo}"):
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

    def _take_from_pool(self, ref: WorkspaceRef, path: Path) -> bool:
        """Move an idle workspace of this repository to `path` (the caller holds the
        request's lock). The rename is atomic and happens under the pool's lock, so one
        slot goes to exactly one request."""
        pool = self.pool_path(ref)
        if not pool.is_dir():
            return False
        with self._pool_locked(ref):
            for slot in self._idle_slots(pool):
                try:
                    os.rename(slot, path)
                except FileNotFoundError:  # removed by hand or by the janitor meanwhile
                    continue
                return True
        return False

    def _pool_has_room(self, ref: WorkspaceRef) -> bool:
        return len(self._idle_slots(self.pool_path(ref))) < self.settings.workspace_pool_size

    def _recycle(self, ref: WorkspaceRef, path: Path) -> bool:
        """Park the request's workspace in the pool, scrubbed; delete it instead when the
        pool is full or the workspace cannot be made pristine. True when parked."""
        mirror = self.mirror_path(ref)
        if not self._pool_has_room(ref) or not (mirror / "HEAD").exists() or path.is_symlink():
            _rmtree(path)
            return False
        pool = self.pool_path(ref)
        pool.mkdir(parents=True, exist_ok=True)
        staging: Path | None = pool / f".recycle-{uuid.uuid4().hex[:12]}"
        # From here on the request no longer owns the directory: nothing it runs later
        # (a retried activity) can reach it under `workspaces/<request>`.
        os.rename(path, staging)
        try:
            self._scrub(staging, mirror)
            with self._pool_locked(ref):
                if self._pool_has_room(ref):
                    slot = pool / uuid.uuid4().hex[:12]
                    os.rename(staging, slot)
                    os.utime(slot)  # `_idle_slots` hands out the freshest first
                    staging = None
                    return True
        except (GitError, git.GitError, OSError) as exc:
            log.warning("could not recycle workspace; deleting it", extra=_log_extra(ref, error=redact(str(exc))))
        finally:
            if staging is not None:
                _rmtree(staging)
        return False

    def _scrub(self, slot: Path, mirror: Path) -> None:
        """Make a finished request's workspace indistinguishable from a fresh checkout of the
        mirror's base, without rewriting the files that are already right.

        The request's code (checks, builds) could write anywhere in the workspace, `.git`
        included: config (filters, URL rewrites), hooks, alternates, refs, stashes, reflogs,
        objects, and the index with its stat cache (which could make git skip a file it
        should rewrite). So `.git` is replaced by a brand-new shared clone of the mirror,
        the new index starts without stat data, and `update-index --refresh` compares every
        file's *content* with the commit: only files that differ get rewritten by the reset,
        and `clean` removes everything git does not track, ignored files included.
        """
        fresh = slot.parent / f".git-{uuid.uuid4().hex[:12]}"
        try:
            run_git(git.Git(), "clone", "--quiet", "--shared", "--no-checkout", str(mirror), str(fresh))
            _rmtree(slot / ".git")
            os.rename(fresh / ".git", slot / ".git")
        finally:
            _rmtree(fresh)
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
