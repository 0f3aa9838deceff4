"""Merge an approved, tested work branch into the base branch.

Idempotent and unspoofable: the push moves the base and creates `refs/honk/merged/<id>`
atomically (`git push --atomic`), and every attempt first looks for that ref, so a retry
after a crash between the push and the step's completion returns the existing commit instead
of merging twice. Merges made before the ref existed are recognised by the `Honk-Request`
trailer in a commit's trailer block, and only when that commit carries the tested change: a
commit message quoting another request's id never makes that request look merged.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator

import git

from honk import liveness
from honk.checks import config_error, run_checks_in
from honk.config.repository import RepoConfigError
from honk.config.settings import Settings
from honk.errors import HonkError, permanent
from honk.git.credentials import GitCredentials
from honk.git.runner import GitError, is_permanent_remote_error, open_repo, rev, run_git
from honk.redact import redact
from honk.workflows.contract import ChecksOutcome, MergeOutcome, MergeTask, WorkspaceRef
from honk.workspace import Workspaces, hygiene
from honk.workspace.request import remote_error

log = logging.getLogger(__name__)

MAX_PUSH_ATTEMPTS = 5  # the base moved under us this many times: give up this attempt
TRAILER_SEARCH_DEPTH = 500  # commits of the base searched for our own trailer

# Push failures that mean "someone else updated the base first": fetch and redo. The first
# are git's own non-fast-forward refusals, the rest a server losing a concurrent ref update.
_BASE_MOVED = (
    "[rejected]",
    "non-fast-forward",
    "fetch first",
    "cannot lock ref",
    "failed to update ref",
    "incorrect old value",
)
CONFLICT_EXCERPT = 3000  # characters of conflicting hunks sent back to the agent


class Merger:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.workspaces = Workspaces(settings)

    def merge(self, task: MergeTask) -> MergeOutcome:
        """Put the tested commit on the base (once), re-checking if the base moved."""
        ref = task.workspace
        with self.workspaces.locked(ref):
            path = self.workspaces.ensure(ref)  # also fetches the latest base
            for attempt in range(1, MAX_PUSH_ATTEMPTS + 1):
                if attempt > 1:
                    self.workspaces.fetch(ref)
                with open_repo(path) as repo:
                    outcome = _attempt(
                        repo,
                        task,
                        verify=lambda attempt=attempt: self._verify(path, task, attempt),
                        credentials=self.workspaces.credentials_for(ref),
                    )
                if outcome is not None:
                    return outcome
                log.info("base moved during merge; redoing", extra={"request_id": ref.request_id, "attempt": attempt})
        # Retryable: a busy base is not a reason to fail the request.
        raise HonkError(
            f"{ref.base_branch!r} moved {MAX_PUSH_ATTEMPTS} times while merging; will retry", kind="BaseMoving"
        )

    def _verify(self, root, task: MergeTask, attempt: int) -> None:
        """The base moved since the checks ran: the combined tree must pass them too."""
        try:
            config = self.workspaces.repo_config(task.workspace)  # the base branch's
        except RepoConfigError as exc:
            raise config_error(exc) from None
        ref = task.workspace
        runs = run_checks_in(self.settings, root, config, ref.repo, ref.request_id, f"merge{attempt}")
        # The checks are repository code: nothing they left may steer the git that follows.
        self.workspaces.verified(task.workspace)
        hygiene.remove_nested_repositories(root)
        report = ChecksOutcome(passed=all(r.passed for r in runs), head_sha="", runs=runs)
        if not report.passed:
            raise permanent(
                f"checks failed on {task.workspace.base_branch!r} combined with the change, so "
                f"nothing was pushed:\n{report.failure_report()}",
                "CombinedChecksFailed",
            )


def _attempt(
    repo: git.Repo, task: MergeTask, verify=lambda: None, credentials: GitCredentials | None = None
) -> MergeOutcome | None:
    """One try against the base as last fetched; None when the push lost a race."""
    ref = task.workspace
    base_ref = f"refs/remotes/origin/{ref.base_branch}"
    extra = {"request_id": ref.request_id, "repo": ref.repo, "strategy": task.strategy}

    existing = merged_ref(repo, ref, credentials) or find_request_commit(
        repo, base_ref, ref.request_id, carrying=task.tested_sha
    )
    if existing:
        log.info("already merged", extra={**extra, "commit_sha": existing})
        return MergeOutcome(commit_sha=existing, already_merged=True)

    work_sha = _require_tested(repo, ref, task.tested_sha)
    base_sha = run_git(repo, "rev-parse", base_ref)
    merge_base = _merge_base(repo, base_sha, work_sha)
    if merge_base is None:
        raise permanent(
            f"{ref.work_branch!r} and {ref.base_branch!r} share no history",
            "MergeConflict",
        )
    if merge_base == work_sha:  # everything on the work branch is already in the base
        raise _nothing_to_merge(ref)

    base_moved = merge_base != base_sha
    try:
        candidate = _COMPOSERS[task.strategy](repo, task, base_sha, work_sha)
        if base_moved:  # the tree about to be pushed is not the one the checks passed on
            verify()
        if not _push_base(repo, ref, candidate, credentials):
            return None
    finally:
        _restore(repo, ref)
    log.info("merged", extra={**extra, "commit_sha": candidate, "base_moved": base_moved})
    return MergeOutcome(commit_sha=candidate, base_moved=base_moved, rechecked=base_moved)


# --------------------------------------------------------------------------- checks


def merged_ref_name(request_id: str) -> str:
    """The ref only Honk writes, together with the base, when it merges `request_id`."""
    return "refs/honk/merged/" + re.sub(r"[^A-Za-z0-9._-]", "_", request_id).strip(".")


def merged_ref(repo: git.Repo, ref: WorkspaceRef, credentials: GitCredentials | None = None) -> str | None:
    """The commit Honk recorded as this request's merge on the remote, or None."""
    name = merged_ref_name(ref.request_id)
    out = run_git(repo, "ls-remote", "origin", name, network=True, credentials=credentials)
    for line in out.splitlines():
        sha, _, found = line.partition("\t")
        if found.strip() == name:
            return sha.strip()
    return None


_TRAILER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*:\s")


def trailer_block(message: str) -> list[str]:
    """The trailer lines of a commit message: its last paragraph, when that paragraph
    (after the title) is made only of `Key: value` lines (continuations indented)."""
    paragraphs = [p for p in re.split(r"\n\s*\n", message.strip()) if p.strip()]
    if len(paragraphs) < 2:
        return []
    lines = paragraphs[-1].splitlines()
    if not all(_TRAILER.match(line) or line[:1].isspace() for line in lines) or not _TRAILER.match(lines[0]):
        return []
    return [line.strip() for line in lines if _TRAILER.match(line)]


def find_request_commit(
    repo: git.Repo,
    rev_name: str,
    request_id: str,
    depth: int = TRAILER_SEARCH_DEPTH,
    carrying: str | None = None,
) -> str | None:
    """The newest of the last `depth` commits of `rev_name` whose trailer block has
    `Honk-Request: <request_id>` (exactly, so `req-1` never matches `req-10`) and, with
    `carrying`, whose tree holds that commit's change (every path it changed, as it has it)."""
    wanted = f"Honk-Request: {request_id}"
    out = run_git(repo, "log", f"--max-count={depth}", "--format=%H%x00%B%x1e", rev_name)
    for record in out.split("\x1e"):
        sha, _, message = record.strip().partition("\x00")
        if wanted in trailer_block(message) and (carrying is None or _carries(repo, sha, carrying, rev_name)):
            return sha
    return None


def _carries(repo: git.Repo, sha: str, tested: str, base_ref: str) -> bool:
    """Whether commit `sha` has every path the tested change touched exactly as it has it."""
    if not rev(repo, tested):
        return False
    base = _merge_base(repo, tested, base_ref)
    if base is None:
        return False
    paths = run_git(repo, "diff", "--name-only", "-z", base, tested, strip=False).split("\0")
    paths = [p for p in paths if p]
    if not paths:
        return False
    try:
        run_git(repo, "diff", "--quiet", tested, sha, "--", *paths)
    except GitError:
        return False
    return True


def _require_tested(repo: git.Repo, ref: WorkspaceRef, tested_sha: str) -> str:
    """Only the exact commit the checks passed on may be merged."""
    work_sha = rev(repo, f"refs/remotes/origin/{ref.work_branch}")
    if work_sha != tested_sha:
        found = work_sha or "missing"
        raise permanent(
            f"refusing to merge untested code: remote {ref.work_branch!r} is at {found}, checks passed on {tested_sha}",
            "UntestedChange",
        )
    return work_sha


def _merge_base(repo: git.Repo, a: str, b: str) -> str | None:
    try:
        return run_git(repo, "merge-base", a, b)
    except GitError as exc:
        if exc.status == 1 and not exc.stderr.strip():  # no common ancestor
            return None
        raise


def _nothing_to_merge(ref: WorkspaceRef) -> HonkError:
    return permanent(
        f"{ref.work_branch!r} has no changes against {ref.base_branch!r}",
        "NothingToMerge",
    )


# --------------------------------------------------------------------------- strategies


def merge_message(task: MergeTask) -> str:
    # Title and body carry the agent's summary: redacted before they enter history forever.
    title = (redact(task.title).strip().splitlines() or ["Honk change"])[0].strip()
    parts = [title]
    if task.body.strip():
        parts.append(redact(task.body).strip())
    parts.append(trailers(task))
    return "\n\n".join(parts) + "\n"


def trailers(task: MergeTask) -> str:
    def one_line(value: str) -> str:  # a newline would end the trailer block
        return " ".join(value.split()) or "unknown"

    return "\n".join(
        (
            f"Honk-Request: {one_line(task.workspace.request_id)}",
            f"Requested-by: {one_line(task.requested_by)}",
            f"Approved-by: {one_line(task.approved_by)}",
        )
    )


def _squash(repo: git.Repo, task: MergeTask, base_sha: str, work_sha: str) -> str:
    """One commit on the base whose tree is the base combined with the work branch."""
    run_git(repo, "checkout", "--quiet", "--force", "--detach", base_sha)
    with _conflicts_abort(repo, task.workspace, abort=("reset", "--quiet", "--hard")):
        run_git(repo, "merge", "--quiet", "--squash", "--no-verify", work_sha)
    if not run_git(repo, "diff", "--cached", "--name-only"):
        raise _nothing_to_merge(task.workspace)
    run_git(repo, "commit", "--quiet", "--no-verify", "-m", merge_message(task))
    return run_git(repo, "rev-parse", "HEAD")


def _merge_commit(repo: git.Repo, task: MergeTask, base_sha: str, work_sha: str) -> str:
    """A --no-ff merge commit: base first parent, work branch second."""
    run_git(repo, "checkout", "--quiet", "--force", "--detach", base_sha)
    with _conflicts_abort(repo, task.workspace, abort=("merge", "--abort")):
        run_git(repo, "merge", "--quiet", "--no-ff", "--no-edit", "--no-verify", "-m", merge_message(task), work_sha)
    return run_git(repo, "rev-parse", "HEAD")


def _rebase(repo: git.Repo, task: MergeTask, base_sha: str, work_sha: str) -> str:
    """The work commits replayed onto the base; the last one carries the trailers."""
    run_git(repo, "checkout", "--quiet", "--force", "--detach", work_sha)
    with _conflicts_abort(repo, task.workspace, abort=("rebase", "--abort")):
        run_git(repo, "rebase", "--quiet", "--no-autostash", "--no-autosquash", base_sha)
    if run_git(repo, "rev-parse", "HEAD") == base_sha:  # every commit was already upstream
        raise _nothing_to_merge(task.workspace)
    message = run_git(repo, "log", "-1", "--format=%B", "HEAD").rstrip()
    run_git(
        repo, "commit", "--quiet", "--amend", "--no-verify", "--allow-empty", "-m", f"{message}\n\n{trailers(task)}\n"
    )
    return run_git(repo, "rev-parse", "HEAD")


_COMPOSERS = {"squash": _squash, "merge": _merge_commit, "rebase": _rebase}


@contextlib.contextmanager
def _conflicts_abort(repo: git.Repo, ref: WorkspaceRef, abort: tuple[str, ...]) -> Iterator[None]:
    """Turn a failed merge/rebase with unmerged paths into a non-retryable MergeConflict
    naming them, after aborting so the workspace is clean. Other failures pass through."""
    try:
        yield
    except GitError:
        conflicted = unmerged_paths(repo)
        hunks = conflict_hunks(repo, conflicted)
        with contextlib.suppress(GitError):  # `_restore` resets the workspace regardless
            run_git(repo, *abort)
        if not conflicted:
            raise
        raise permanent(
            f"merging {ref.work_branch!r} into {ref.base_branch!r} conflicts in: "
            + ", ".join(conflicted)
            + (f"\n\nConflicting hunks:\n{hunks}" if hunks else ""),
            "MergeConflict",
        ) from None


def unmerged_paths(repo: git.Repo) -> list[str]:
    out = run_git(repo, "diff", "--name-only", "--diff-filter=U", "-z", strip=False)
    return sorted({name for name in out.split("\0") if name})


def conflict_hunks(repo: git.Repo, paths: list[str], limit: int = CONFLICT_EXCERPT) -> str:
    """The conflicting regions (with markers) of each path, trimmed for the agent."""
    if not paths:
        return ""
    text = run_git(repo, "diff", "--no-color", "--", *paths, strip=False)
    return text if len(text) <= limit else text[:limit] + "\n[… conflict diff trimmed …]"


def absorb_base(repo: git.Repo, ref: WorkspaceRef) -> list[str]:
    """Merge the latest base into the work branch so the agent can resolve what conflicts.

    A clean merge is committed at once; on conflict the markers stay in the working tree
    (MERGE_HEAD set) and the conflicted paths are returned; the agent's commit concludes it.
    """
    base = f"refs/remotes/origin/{ref.base_branch}"
    try:
        run_git(repo, "merge", "--quiet", "--no-edit", "--no-verify", "--no-ff", base)
    except GitError:
        conflicted = unmerged_paths(repo)
        if not conflicted:
            raise
        return conflicted
    return []


def rebase_onto_base(repo: git.Repo, ref: WorkspaceRef) -> list[str]:
    """For the rebase strategy: the work branch's whole change as one commit on the latest
    base, so the merge's rebase replays it cleanly (a merge commit would be dropped by it).

    A clean apply is committed at once; on conflict the markers stay in the working tree on
    top of the base and the conflicted paths are returned; the agent's commit concludes it.
    """
    base = f"refs/remotes/origin/{ref.base_branch}"
    work = run_git(repo, "rev-parse", "HEAD")
    message = run_git(repo, "log", "-1", "--format=%B", work)
    run_git(repo, "reset", "--quiet", "--hard", base)
    try:
        run_git(repo, "merge", "--quiet", "--squash", "--no-verify", work)
    except GitError:
        conflicted = unmerged_paths(repo)
        if not conflicted:
            raise
        return conflicted
    if run_git(repo, "diff", "--cached", "--name-only"):
        run_git(repo, "commit", "--quiet", "--no-verify", "-m", message or "Honk change")
    return []


def _restore(repo: git.Repo, ref: WorkspaceRef) -> None:
    """Back on the work branch, clean, whatever happened."""
    run_git(repo, "checkout", "--quiet", "--force", ref.work_branch, "--")
    run_git(repo, "reset", "--quiet", "--hard")
    run_git(repo, "clean", "-ffdxq")


# --------------------------------------------------------------------------- push


def _push_base(repo: git.Repo, ref: WorkspaceRef, sha: str, credentials: GitCredentials | None = None) -> bool:
    """Fast-forward the remote base to `sha` (never forced). False when the base moved."""
    try:
        with liveness.heartbeating("git push", ref.base_branch):
            run_git(
                repo,
                "push",
                "--quiet",
                "--atomic",  # the base and Honk's record of the merge, both or neither
                "origin",
                f"{sha}:refs/heads/{ref.base_branch}",
                f"{sha}:{merged_ref_name(ref.request_id)}",
                network=True,
                credentials=credentials,
            )
        return True
    except GitError as exc:
        stderr = exc.stderr.lower()
        if any(marker in stderr for marker in _BASE_MOVED):
            return False
        if "[remote rejected]" in stderr:
            # A server-side policy (protected branch, hook) said no: retrying cannot help.
            raise permanent(
                f"remote refused the push to {ref.base_branch!r}: {exc.stderr.strip()}",
                "PushRejected",
            ) from None
        if is_permanent_remote_error(exc):
            raise remote_error(ref, f"cannot push: {exc.stderr}") from None
        raise
