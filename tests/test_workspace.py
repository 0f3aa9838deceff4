"""Workspaces against real git: bare remotes on disk, activities called directly (outside an
activity the heartbeat helper is a no-op)."""

from __future__ import annotations

import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from activities.workspace import GitError, WorkspaceActivities, Workspaces, redact
from honk.settings import Settings
from workflows.contract import CleanupTask, WorkspaceRef

HONK_TOML = """\
[[checks]]
name = "unit"
run = ["python3", "-m", "pytest"]

[[checks]]
name = "lint"
run = ["true"]

[[build]]
name = "android"
run = ["make", "apk"]
artifacts = ["build/*.apk"]

[[build]]
name = "ios"
run = ["make", "ipa"]
artifacts = ["build/*.ipa"]
task_queue = "honk-macos"
"""


# --------------------------------------------------------------------------- helpers


def sh(cwd: Path, *args: str) -> str:
    """Plain git for setting up and inspecting remotes (tests only)."""
    done = subprocess.run(
        ["git", "-c", "user.name=Tester", "-c", "user.email=tester@example.com", *args],
        cwd=cwd, check=True, capture_output=True, text=True,
    )
    return done.stdout.strip()


def make_remote(tmp_path: Path, files: dict[str, str], name: str = "remote") -> Path:
    seed = tmp_path / f"{name}-seed"
    seed.mkdir()
    sh(seed, "init", "-q", "-b", "main")
    for rel, text in files.items():
        (seed / rel).parent.mkdir(parents=True, exist_ok=True)
        (seed / rel).write_text(text)
    sh(seed, "add", "-A")
    sh(seed, "commit", "-q", "-m", "initial")
    remote = tmp_path / f"{name}.git"
    sh(tmp_path, "clone", "-q", "--bare", str(seed), str(remote))
    return remote


def remote_sha(remote: Path, branch: str) -> str | None:
    done = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
        cwd=remote, capture_output=True, text=True, check=False,
    )
    return done.stdout.strip() or None


def make_ref(remote: Path | str, request_id: str = "req-1", **over: str) -> WorkspaceRef:
    values = {
        "request_id": request_id,
        "repo": "app",
        "remote": str(remote),
        "base_branch": "main",
        "work_branch": f"honk/{request_id}",
    }
    values.update(over)
    return WorkspaceRef(**values)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return make_remote(tmp_path, {"README.md": "hello\n", "src/app.txt": "v1\n",
                                  ".honk.toml": HONK_TOML})


# --------------------------------------------------------------------------- prepare


def test_prepare_creates_remote_work_branch_and_reads_targets(settings, remote):
    ref = make_ref(remote)
    prepared = WorkspaceActivities(settings).prepare(ref)

    base = remote_sha(remote, "main")
    assert prepared.base_sha == base
    assert prepared.head_sha == base
    assert prepared.resumed is False
    assert remote_sha(remote, "honk/req-1") == base
    assert [(t.name, t.task_queue) for t in prepared.targets] == [
        ("android", None), ("ios", "honk-macos"),
    ]
    assert prepared.checks == ["unit", "lint"]

    workspaces = Workspaces(settings)
    path = workspaces.path(ref)
    assert path == settings.workspaces_dir / "req-1"
    assert (path / "src" / "app.txt").read_text() == "v1\n"
    assert (settings.data_dir / "mirrors" / "app.git" / "HEAD").exists()
    # Pushes go to the real remote, not through the host cache.
    assert sh(path, "remote", "get-url", "origin") == str(remote)
    assert sh(path, "rev-parse", "--abbrev-ref", "HEAD") == "honk/req-1"


def test_prepare_without_honk_toml_detects_config(settings, tmp_path):
    remote = make_remote(tmp_path, {"Makefile": "test:\n\ttrue\n"}, name="plain")
    prepared = WorkspaceActivities(settings).prepare(make_ref(remote))
    assert prepared.checks == ["make-test"]
    assert prepared.targets == []


def test_invalid_honk_toml_is_a_config_error(settings, tmp_path):
    remote = make_remote(tmp_path, {".honk.toml": "[[checks]]\nname = 'x'\n"}, name="bad")
    with pytest.raises(ApplicationError) as err:
        WorkspaceActivities(settings).prepare(make_ref(remote))
    assert err.value.type == "ConfigError"
    assert err.value.non_retryable
    assert "checks.0.run" in err.value.message


def test_rebuilt_workspace_continues_from_pushed_work_branch(settings, remote):
    activities = WorkspaceActivities(settings)
    workspaces = activities.workspaces
    ref = make_ref(remote)
    activities.prepare(ref)
    path = workspaces.ensure(ref)
    (path / "src" / "app.txt").write_text("v2\n")
    pushed = workspaces.commit_all(ref, "round 1")
    assert workspaces.push(ref) == pushed

    # The worker dies: its disk is gone. Another worker (fresh data dir) picks it up.
    other = WorkspaceActivities(Settings(data_dir=settings.data_dir.parent / "other-host"))
    again = other.prepare(ref)
    assert again.resumed is True
    assert again.head_sha == pushed
    rebuilt = other.workspaces.path(ref)
    assert (rebuilt / "src" / "app.txt").read_text() == "v2\n"

    # Same host, local directory deleted.
    shutil.rmtree(path)
    state = workspaces.sync(ref)
    assert state.resumed and state.head_sha == pushed
    assert (path / "src" / "app.txt").read_text() == "v2\n"


def test_ensure_discards_unpushed_and_untracked_state(settings, remote):
    workspaces = Workspaces(settings)
    ref = make_ref(remote)
    WorkspaceActivities(settings).prepare(ref)
    path = workspaces.ensure(ref)
    pushed = workspaces.head(ref)

    (path / "README.md").write_text("local edit\n")
    workspaces.commit_all(ref, "never pushed")
    (path / "junk.txt").write_text("untracked\n")
    (path / "build").mkdir()
    (path / "build" / "out.apk").write_text("ignored or not, it goes\n")
    (path / "src" / "app.txt").write_text("dirty\n")

    assert workspaces.ensure(ref) == path
    assert workspaces.head(ref) == pushed
    assert (path / "README.md").read_text() == "hello\n"
    assert (path / "src" / "app.txt").read_text() == "v1\n"
    assert not (path / "junk.txt").exists()
    assert not (path / "build").exists()


def test_broken_workspace_is_rebuilt(settings, remote):
    workspaces = Workspaces(settings)
    ref = make_ref(remote)
    path = workspaces.ensure(ref)
    shutil.rmtree(path / ".git")
    (path / "leftover.txt").write_text("x")
    assert workspaces.ensure(ref) == path
    assert (path / "README.md").exists()
    assert not (path / "leftover.txt").exists()


def test_path_is_filesystem_safe(settings, remote):
    workspaces = Workspaces(settings)
    for request_id in ("../../etc", "a/b c", ".hidden", "honk-slack-T1-C1-1700.1"):
        path = workspaces.path(make_ref(remote, request_id=request_id, work_branch="honk/x"))
        assert path.parent == settings.workspaces_dir
        assert not path.name.startswith(".")
    assert workspaces.path(make_ref(remote, "honk-slack-T1-C1-1700.1")).name == (
        "honk-slack-T1-C1-1700.1"
    )
    # Distinct ids never share a directory even if they clean up to the same text.
    a = workspaces.path(make_ref(remote, "a/b", work_branch="honk/x"))
    b = workspaces.path(make_ref(remote, "a b", work_branch="honk/x"))
    assert a != b


# --------------------------------------------------------------------------- changes


def test_commit_all_and_push_round_trip(settings, remote):
    workspaces = Workspaces(settings)
    ref = make_ref(remote)
    path = workspaces.ensure(ref)
    assert workspaces.diff_is_empty(ref)
    assert workspaces.commit_all(ref, "nothing") is None

    (path / "src" / "app.txt").write_text("v2\n")  # modified
    (path / "README.md").unlink()  # deleted
    (path / "docs").mkdir()
    (path / "docs" / "new.md").write_text("new\n")  # added
    sha = workspaces.commit_all(ref, "Change things")
    assert sha and sha == workspaces.head(ref)
    assert workspaces.commit_all(ref, "again") is None

    assert workspaces.push(ref) == sha
    assert workspaces.push(ref) == sha  # idempotent
    assert remote_sha(remote, "honk/req-1") == sha
    assert remote_sha(remote, "main") != sha  # the base is untouched

    author = sh(remote, "log", "-1", "--format=%an <%ae>|%cn <%ce>|%s", "honk/req-1")
    assert author == "Honk <honk@localhost>|Honk <honk@localhost>|Change things"
    assert sorted(workspaces.changed_files(ref)) == ["README.md", "docs/new.md", "src/app.txt"]
    assert not workspaces.diff_is_empty(ref)

    # Reverting the change makes the tree equal to the base again, though commits differ.
    (path / "src" / "app.txt").write_text("v1\n")
    (path / "README.md").write_text("hello\n")
    (path / "docs" / "new.md").unlink()
    workspaces.commit_all(ref, "revert")
    assert workspaces.diff_is_empty(ref)
    assert workspaces.changed_files(ref) == []


def test_push_after_rewrite_of_work_branch(settings, remote):
    """The work branch may be rewritten (e.g. a round restarted from the base)."""
    workspaces = Workspaces(settings)
    ref = make_ref(remote)
    path = workspaces.ensure(ref)
    (path / "a.txt").write_text("a\n")
    workspaces.commit_all(ref, "a")
    workspaces.push(ref)
    sh(path, "reset", "-q", "--hard", "origin/main")
    (path / "b.txt").write_text("b\n")
    rewritten = workspaces.commit_all(ref, "b")
    assert workspaces.push(ref) == rewritten
    assert remote_sha(remote, "honk/req-1") == rewritten


def test_push_does_not_overwrite_a_concurrent_push(settings, remote, tmp_path):
    """A duplicate attempt elsewhere pushed after our fetch: refuse, don't clobber."""
    workspaces = Workspaces(settings)
    ref = make_ref(remote)
    path = workspaces.ensure(ref)
    (path / "a.txt").write_text("a\n")
    workspaces.commit_all(ref, "a")
    workspaces.push(ref)

    other = Workspaces(Settings(data_dir=tmp_path / "other-host"))
    other_path = other.ensure(ref)
    (other_path / "other.txt").write_text("other\n")
    other.commit_all(ref, "other")
    theirs = other.push(ref)

    sh(path, "reset", "-q", "--hard", "origin/main")  # our rewrite, based on a stale view
    (path / "b.txt").write_text("b\n")
    workspaces.commit_all(ref, "b")
    with pytest.raises(GitError):
        workspaces.push(ref)
    assert remote_sha(remote, "honk/req-1") == theirs


def test_concurrent_workspaces_on_one_repository(settings, remote):
    workspaces = Workspaces(settings)
    start = threading.Barrier(6)

    def one(index: int) -> tuple[str, str]:
        ref = make_ref(remote, request_id=f"req-{index}")
        start.wait()
        path = workspaces.ensure(ref)
        (path / f"file-{index}.txt").write_text(f"{index}\n")
        sha = workspaces.commit_all(ref, f"change {index}")
        assert workspaces.push(ref) == sha
        assert Workspaces(settings).ensure(ref) == path  # a second instance, same host
        return ref.work_branch, sha

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(one, range(6)))

    for branch, sha in results:
        assert remote_sha(remote, branch) == sha
        index = branch.rsplit("-", 1)[1]
        files = sh(remote, "ls-tree", "--name-only", sha).splitlines()
        assert f"file-{index}.txt" in files
        assert not any(f"file-{other}.txt" in files for other in range(6) if str(other) != index)
    assert len(list((settings.data_dir / "mirrors").glob("*.git"))) == 1


# --------------------------------------------------------------------------- errors


def test_missing_remote_is_a_clear_remote_error(settings, tmp_path):
    ref = make_ref(tmp_path / "nowhere.git")
    with pytest.raises(ApplicationError) as err:
        WorkspaceActivities(settings).prepare(ref)
    assert err.value.type == "RemoteError"
    assert err.value.non_retryable
    assert str(tmp_path / "nowhere.git") in err.value.message
    assert "'main'" in err.value.message


def test_missing_base_branch_is_a_remote_error(settings, remote):
    ref = make_ref(remote, base_branch="production")
    with pytest.raises(ApplicationError) as err:
        Workspaces(settings).ensure(ref)
    assert err.value.type == "RemoteError"
    assert err.value.non_retryable
    assert "'production'" in err.value.message and str(remote) in err.value.message


def test_transient_failure_is_retryable_and_hides_credentials(settings):
    # Nothing listens on port 9: a connection failure, which a retry may fix.
    ref = make_ref("http://honk:s3cret-token@127.0.0.1:9/app.git")
    with pytest.raises(GitError) as err:
        Workspaces(settings).ensure(ref)
    assert "s3cret" not in str(err.value)
    assert "s3cret" not in err.value.stderr


def test_redact_strips_userinfo_only():
    assert redact("fetch https://user:pw@github.com/o/r.git failed") == (
        "fetch https://github.com/o/r.git failed"
    )
    assert redact("https://x-access-token:ghs_abc@host/r") == "https://host/r"
    assert redact("git@github.com:o/r.git") == "git@github.com:o/r.git"


@pytest.mark.parametrize(
    "over",
    [
        {"work_branch": "main"},
        {"work_branch": "--upload-pack=touch pwned"},
        {"base_branch": "a..b"},
        {"remote": "--upload-pack=evil"},
    ],
)
def test_invalid_refs_are_refused(settings, remote, over):
    with pytest.raises(ApplicationError) as err:
        ref = make_ref(remote).model_copy(update=over)
        Workspaces(settings).ensure(ref)
    assert err.value.type == "InvalidWorkspace"
    assert err.value.non_retryable


# --------------------------------------------------------------------------- cleanup


def test_cleanup_removes_workspace_and_remote_branch_and_is_idempotent(settings, remote):
    activities = WorkspaceActivities(settings)
    ref = make_ref(remote)
    activities.prepare(ref)
    path = activities.workspaces.path(ref)
    assert path.exists() and remote_sha(remote, "honk/req-1")

    activities.cleanup(CleanupTask(workspace=ref))
    assert not path.exists()
    assert remote_sha(remote, "honk/req-1") is None
    assert remote_sha(remote, "main") is not None

    activities.cleanup(CleanupTask(workspace=ref))  # harmless twice
    activities.cleanup(CleanupTask(workspace=make_ref(remote, base_branch="main",
                                                      request_id="never-prepared")))


def test_cleanup_can_keep_remote_branch(settings, remote):
    activities = WorkspaceActivities(settings)
    ref = make_ref(remote)
    prepared = activities.prepare(ref)
    activities.cleanup(CleanupTask(workspace=ref, delete_remote_branch=False))
    assert not activities.workspaces.path(ref).exists()
    assert remote_sha(remote, "honk/req-1") == prepared.head_sha


def test_cleanup_when_remote_is_gone(settings, remote):
    activities = WorkspaceActivities(settings)
    ref = make_ref(remote)
    activities.prepare(ref)
    shutil.rmtree(remote)
    activities.cleanup(CleanupTask(workspace=ref))
    assert not activities.workspaces.path(ref).exists()
