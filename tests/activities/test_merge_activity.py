"""The merge activity against real git: bare remotes on disk, the activity called directly."""

from __future__ import annotations

from pathlib import Path

import pytest
from repos import make_remote, sh
from temporalio.exceptions import ApplicationError

from honk import merge as merge_module
from honk.activities.merge import MergeActivities
from honk.config.settings import Settings
from honk.workflows.contract import MergeTask, WorkspaceRef
from honk.workspace import Workspaces

# --------------------------------------------------------------------------- helpers


def push_to_base(remote: Path, scratch: Path, files: dict[str, str], message: str) -> str:
    """Someone else lands a commit on the base."""
    if not scratch.exists():
        sh(remote.parent, "clone", "-q", str(remote), str(scratch))
    sh(scratch, "pull", "-q", "--ff-only")
    for rel, text in files.items():
        (scratch / rel).write_text(text)
    sh(scratch, "add", "-A")
    sh(scratch, "commit", "-q", "-m", message)
    sh(scratch, "push", "-q", "origin", "main")
    return sh(scratch, "rev-parse", "HEAD")


def base_log(remote: Path) -> list[str]:
    return sh(remote, "log", "--format=%H", "main").splitlines()


class Fixture:
    """A repository with a request whose work branch has been edited and pushed."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.remote = make_remote(tmp_path, {"app.txt": "line 1\nline 2\nline 3\n", "other.txt": "other\n"})
        self.settings = Settings(data_dir=tmp_path / "data")
        self.workspaces = Workspaces(self.settings)
        self.activities = MergeActivities(self.settings)
        self.ref = WorkspaceRef(
            request_id="honk-cli-app-1a2b3c4d",
            repo="app",
            remote=str(self.remote),
            base_branch="main",
            work_branch="honk/cli-app-1a2b3c4d",
        )
        self.path = self.workspaces.ensure(self.ref)
        self.initial_base = base_log(self.remote)[0]

    def edit(self, files: dict[str, str], message: str = "agent round") -> str:
        self.workspaces.ensure(self.ref)
        for rel, text in files.items():
            (self.path / rel).write_text(text)
        self.workspaces.commit_all(self.ref, message)
        return self.workspaces.push(self.ref)

    def task(self, tested_sha: str, **over: object) -> MergeTask:
        values: dict[str, object] = {
            "workspace": self.ref,
            "title": "Fix the crash when the queue is empty",
            "body": "The agent guarded the empty queue.\n\n# Details\nOne check added.",
            "requested_by": "U123",
            "approved_by": "U456",
            "tested_sha": tested_sha,
        }
        values.update(over)
        return MergeTask(**values)

    def base_other(self, files: dict[str, str], message: str = "elsewhere") -> str:
        return push_to_base(self.remote, self.tmp_path / "colleague", files, message)

    def workspace_is_clean(self) -> bool:
        status = sh(self.path, "status", "--porcelain", "--untracked-files=all")
        branch = sh(self.path, "rev-parse", "--abbrev-ref", "HEAD")
        return status == "" and branch == self.ref.work_branch


@pytest.fixture
def fx(tmp_path: Path) -> Fixture:
    return Fixture(tmp_path)


def message_of(remote: Path, sha: str) -> str:
    return sh(remote, "log", "-1", "--format=%B", sha)


def trailers_of(remote: Path, sha: str) -> list[str]:
    out = sh(remote, "log", "-1", "--format=%(trailers:only,unfold)", sha)
    return [line for line in out.splitlines() if line]


EXPECTED_TRAILERS = [
    "Honk-Request: honk-cli-app-1a2b3c4d",
    "Requested-by: U123",
    "Approved-by: U456",
]


# --------------------------------------------------------------------------- squash


def test_squash_makes_one_commit_with_trailers_and_the_change(fx):
    fx.edit({"app.txt": "line 1\nline 2 fixed\nline 3\n"}, "round 1")
    tested = fx.edit({"new.txt": "new\n"}, "round 2")

    outcome = fx.activities.merge(fx.task(tested))

    assert outcome.already_merged is False
    assert outcome.base_moved is False
    log = base_log(fx.remote)
    assert log[0] == outcome.commit_sha
    assert log[1] == fx.initial_base  # exactly one new commit
    assert sh(fx.remote, "rev-list", "--parents", "-n", "1", outcome.commit_sha).split()[1:] == [fx.initial_base]
    message = message_of(fx.remote, outcome.commit_sha)
    assert message.startswith("Fix the crash when the queue is empty\n\nThe agent guarded")
    assert "# Details" in message  # markdown headings in the body survive
    assert trailers_of(fx.remote, outcome.commit_sha) == EXPECTED_TRAILERS
    assert sh(fx.remote, "show", f"{outcome.commit_sha}:app.txt") == "line 1\nline 2 fixed\nline 3"
    assert sh(fx.remote, "show", f"{outcome.commit_sha}:new.txt") == "new"
    assert sh(fx.remote, "log", "-1", "--format=%an <%ae>", outcome.commit_sha) == ("Honk <honk@localhost>")
    assert fx.workspace_is_clean()


def test_merge_twice_returns_same_commit(fx):
    tested = fx.edit({"app.txt": "changed\n"})
    first = fx.activities.merge(fx.task(tested))
    second = fx.activities.merge(fx.task(tested))

    assert second.commit_sha == first.commit_sha
    assert second.already_merged is True
    assert base_log(fx.remote)[:2] == [first.commit_sha, fx.initial_base]


def test_retry_after_crash_finds_commit_even_on_another_host(fx, tmp_path):
    """The push landed, the worker died before acknowledging, the retry runs elsewhere after
    the base moved on."""
    tested = fx.edit({"app.txt": "changed\n"})
    first = fx.activities.merge(fx.task(tested))
    fx.base_other({"other.txt": "later\n"})

    elsewhere = MergeActivities(Settings(data_dir=tmp_path / "other-host"))
    again = elsewhere.merge(fx.task(tested))
    assert again.commit_sha == first.commit_sha and again.already_merged


def test_request_id_matching_is_exact(fx):
    """`...-1a2b3c4d` must not be taken as merged because `...-1a2b3c4d0` is."""
    tested = fx.edit({"app.txt": "changed\n"})
    fx.base_other({"other.txt": "x\n"}, "Other\n\nHonk-Request: honk-cli-app-1a2b3c4d0")
    outcome = fx.activities.merge(fx.task(tested))
    assert outcome.already_merged is False


def test_base_moved_without_conflict_still_merges(fx):
    tested = fx.edit({"app.txt": "line 1 ours\nline 2\nline 3\n"})
    theirs = fx.base_other({"app.txt": "line 1\nline 2\nline 3 theirs\n", "other.txt": "theirs\n"})

    outcome = fx.activities.merge(fx.task(tested))

    assert outcome.base_moved is True
    assert base_log(fx.remote)[:2] == [outcome.commit_sha, theirs]
    assert sh(fx.remote, "show", f"{outcome.commit_sha}:app.txt") == ("line 1 ours\nline 2\nline 3 theirs")
    assert sh(fx.remote, "show", f"{outcome.commit_sha}:other.txt") == "theirs"


def test_conflict_raises_merge_conflict_naming_the_file(fx):
    tested = fx.edit({"app.txt": "line 1\nOURS\nline 3\n"})
    theirs = fx.base_other({"app.txt": "line 1\nTHEIRS\nline 3\n"})

    with pytest.raises(ApplicationError) as err:
        fx.activities.merge(fx.task(tested))

    assert err.value.type == "MergeConflict"
    assert err.value.non_retryable
    assert "app.txt" in err.value.message and "other.txt" not in err.value.message
    assert base_log(fx.remote)[0] == theirs  # nothing pushed
    assert fx.workspace_is_clean()
    assert sh(fx.path, "rev-parse", "HEAD") == tested


@pytest.mark.parametrize("strategy", ["merge", "rebase"])
def test_conflict_with_other_strategies_leaves_workspace_clean(fx, strategy):
    tested = fx.edit({"app.txt": "line 1\nOURS\nline 3\n"})
    fx.base_other({"app.txt": "line 1\nTHEIRS\nline 3\n"})
    with pytest.raises(ApplicationError) as err:
        fx.activities.merge(fx.task(tested, strategy=strategy))
    assert err.value.type == "MergeConflict"
    assert "app.txt" in err.value.message
    assert fx.workspace_is_clean()
    git_dir = fx.path / ".git"
    assert not (git_dir / "MERGE_HEAD").exists()
    assert not (git_dir / "rebase-merge").exists()


def test_untested_sha_is_refused(fx):
    tested = fx.edit({"app.txt": "tested\n"})
    fx.edit({"app.txt": "pushed after the checks\n"})

    with pytest.raises(ApplicationError) as err:
        fx.activities.merge(fx.task(tested))

    assert err.value.type == "UntestedChange"
    assert err.value.non_retryable
    assert base_log(fx.remote)[0] == fx.initial_base


def test_nothing_to_merge(fx):
    with pytest.raises(ApplicationError) as err:
        fx.activities.merge(fx.task(fx.workspaces.push(fx.ref)))
    assert err.value.type == "NothingToMerge"
    assert base_log(fx.remote)[0] == fx.initial_base


# --------------------------------------------------------------------------- strategies


def test_merge_strategy_makes_a_no_ff_merge_commit(fx):
    fx.edit({"app.txt": "a\n"}, "round 1")
    tested = fx.edit({"new.txt": "b\n"}, "round 2")

    outcome = fx.activities.merge(fx.task(tested, strategy="merge"))

    parents = sh(fx.remote, "rev-list", "--parents", "-n", "1", outcome.commit_sha).split()[1:]
    assert parents == [fx.initial_base, tested]
    assert trailers_of(fx.remote, outcome.commit_sha) == EXPECTED_TRAILERS
    message = message_of(fx.remote, outcome.commit_sha)
    assert message.startswith("Fix the crash when the queue is empty\n\n")
    assert "# Details" in message
    assert base_log(fx.remote)[0] == outcome.commit_sha
    assert fx.activities.merge(fx.task(tested, strategy="merge")).already_merged


def test_rebase_strategy_replays_commits_and_fast_forwards(fx):
    fx.edit({"app.txt": "line 1 ours\nline 2\nline 3\n"}, "round 1")
    tested = fx.edit({"new.txt": "b\n"}, "round 2")
    theirs = fx.base_other({"other.txt": "theirs\n"})

    outcome = fx.activities.merge(fx.task(tested, strategy="rebase"))

    assert outcome.base_moved is True
    log = sh(fx.remote, "log", "--format=%H %P|%s", "-3", "main").splitlines()
    shas = [line.split()[0] for line in log]
    assert shas[0] == outcome.commit_sha
    # Linear history: round 2 on round 1 on the colleague's commit.
    assert [line.split("|")[1] for line in log] == ["round 2", "round 1", "elsewhere"]
    assert log[2].split("|")[0].split() == [theirs, fx.initial_base]
    assert all(len(line.split("|")[0].split()) == 2 for line in log)  # one parent each
    assert trailers_of(fx.remote, outcome.commit_sha) == EXPECTED_TRAILERS
    assert trailers_of(fx.remote, shas[1]) == []
    assert sh(fx.remote, "show", f"{outcome.commit_sha}:other.txt") == "theirs"
    assert fx.workspace_is_clean()
    assert fx.activities.merge(fx.task(tested, strategy="rebase")).already_merged


def test_rebase_strategy_when_base_did_not_move(fx):
    tested = fx.edit({"app.txt": "ours\n"}, "round 1")
    outcome = fx.activities.merge(fx.task(tested, strategy="rebase"))
    assert outcome.base_moved is False
    parents = sh(fx.remote, "rev-list", "--parents", "-n", "1", outcome.commit_sha).split()[1:]
    assert parents == [fx.initial_base]
    assert message_of(fx.remote, outcome.commit_sha).startswith("round 1\n\n")
    assert trailers_of(fx.remote, outcome.commit_sha) == EXPECTED_TRAILERS


# --------------------------------------------------------------------------- races


def test_push_race_with_base_is_redone(fx, monkeypatch):
    """The base moves between our fetch and our push: fetch, re-check, redo."""
    tested = fx.edit({"app.txt": "ours\n"})
    real_push = merge_module._push_base
    raced: list[str] = []

    def racing_push(repo, ref, sha, credentials=None):
        if not raced:
            raced.append(fx.base_other({"other.txt": "raced\n"}, "raced in"))
        return real_push(repo, ref, sha, credentials)

    monkeypatch.setattr(merge_module, "_push_base", racing_push)
    outcome = fx.activities.merge(fx.task(tested))

    assert raced
    assert base_log(fx.remote)[:3] == [outcome.commit_sha, raced[0], fx.initial_base]
    assert outcome.base_moved is True
    assert sh(fx.remote, "show", f"{outcome.commit_sha}:other.txt") == "raced"
    assert sh(fx.remote, "show", f"{outcome.commit_sha}:app.txt") == "ours"


def test_base_that_never_settles_gives_a_retryable_error(fx, monkeypatch):
    tested = fx.edit({"app.txt": "ours\n"})
    real_push = merge_module._push_base
    counter = iter(range(100))

    def always_lose(repo, ref, sha, credentials=None):
        fx.base_other({"other.txt": f"race {next(counter)}\n"})
        return real_push(repo, ref, sha, credentials)

    monkeypatch.setattr(merge_module, "_push_base", always_lose)
    with pytest.raises(ApplicationError) as err:
        fx.activities.merge(fx.task(tested))
    assert err.value.type == "BaseMoving"
    assert not err.value.non_retryable
    assert fx.workspace_is_clean()


def test_push_rejected_by_server_policy_is_not_retried(fx):
    tested = fx.edit({"app.txt": "ours\n"})
    hook = fx.remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'main is protected' >&2\nexit 1\n")
    hook.chmod(0o755)
    with pytest.raises(ApplicationError) as err:
        fx.activities.merge(fx.task(tested))
    assert err.value.type == "PushRejected"
    assert err.value.non_retryable
    assert "main is protected" in err.value.message
