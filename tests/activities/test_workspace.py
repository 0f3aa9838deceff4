"""Workspaces against real git: bare remotes on disk, activities called directly (outside an
activity the heartbeat helper is a no-op)."""

from __future__ import annotations

import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from repos import make_remote, remote_sha, sh
from temporalio.exceptions import ApplicationError

from honk.activities.workspace import WorkspaceActivities
from honk.config.settings import Settings
from honk.errors import HonkError
from honk.git.runner import GitError
from honk.redact import redact
from honk.workflows.contract import CleanupTask, WorkspaceRef
from honk.workspace import Workspaces

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
    return make_remote(tmp_path, {"README.md": "hello\n", "src/app.txt": "v1\n", ".honk.toml": HONK_TOML})


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
        ("android", None),
        ("ios", "honk-macos"),
    ]
    assert prepared.checks == ["unit", "lint"]
    # The workflow sizes its step timeouts from these (the .honk.toml defaults here).
    assert prepared.checks_timeout_s == 2 * 900 and [t.timeout_s for t in prepared.targets] == [1800, 1800]

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


def test_a_step_at_the_pushed_tip_reuses_the_workspace_without_the_remote(settings, remote, tmp_path):
    """Steps after the agent name the tip Honk pushed: a host still holding the workspace
    there resets it (tree and untracked files) without fetching; any other state syncs."""
    workspaces = Workspaces(settings)
    ref = make_ref(remote)
    WorkspaceActivities(settings).prepare(ref)
    path = workspaces.ensure(ref)
    (path / "src" / "app.txt").write_text("v2\n")
    workspaces.commit_all(ref, "the change")
    tip = workspaces.push(ref)
    (path / "src" / "app.txt").write_text("a check rewrote me\n")
    (path / "out").mkdir()
    (path / "out" / "app.apk").write_text("build output\n")
    remote.rename(tmp_path / "unreachable.git")  # any fetch would fail now

    at_tip = ref.model_copy(update={"head_sha": tip})
    assert workspaces.ensure(at_tip) == path
    assert (path / "src" / "app.txt").read_text() == "v2\n" and not (path / "out").exists()
    assert workspaces.head(at_tip) == tip

    with pytest.raises((HonkError, GitError)):  # another tip: only the remote can say what it is
        workspaces.ensure(ref.model_copy(update={"head_sha": "0" * 40}))


def test_base_configuration_follows_the_base_commit(settings, remote, tmp_path):
    """Configuration is remembered per base commit: a new commit on the base is read anew."""
    workspaces = Workspaces(settings)
    ref = make_ref(remote)
    WorkspaceActivities(settings).prepare(ref)
    assert [c.name for c in workspaces.repo_config(ref).checks] == ["unit", "lint"]
    seed = tmp_path / "pusher"
    sh(tmp_path, "clone", "-q", str(remote), str(seed))
    (seed / ".honk.toml").write_text('[[checks]]\nname = "only"\nrun = ["true"]\n')
    sh(seed, "commit", "-qam", "one check")
    sh(seed, "push", "-q", "origin", "main")
    assert [c.name for c in workspaces.repo_config(ref).checks] == ["unit", "lint"], "as last fetched"
    workspaces.fetch(ref)
    assert [c.name for c in workspaces.repo_config(ref).checks] == ["only"]


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
    assert workspaces.path(make_ref(remote, "honk-slack-T1-C1-1700.1")).name == ("honk-slack-T1-C1-1700.1")
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
    with pytest.raises(HonkError) as err:
        Workspaces(settings).ensure(ref)
    assert err.value.kind == "RemoteError"
    assert not err.value.retryable
    assert "'production'" in err.value.message and str(remote) in err.value.message


def test_transient_failure_is_retryable_and_hides_credentials(settings):
    # Nothing listens on port 9: a connection failure, which a retry may fix.
    ref = make_ref("http://honk:s3cret-token@127.0.0.1:9/app.git")
    with pytest.raises(GitError) as err:
        Workspaces(settings).ensure(ref)
    assert "s3cret" not in str(err.value)
    assert "s3cret" not in err.value.stderr


def test_redact_strips_userinfo_only():
    assert redact("fetch https://user:pw@github.com/o/r.git failed") == ("fetch https://github.com/o/r.git failed")
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
    with pytest.raises(HonkError) as err:
        ref = make_ref(remote).model_copy(update=over)
        Workspaces(settings).ensure(ref)
    assert err.value.kind == "InvalidWorkspace"
    assert not err.value.retryable


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
    activities.cleanup(CleanupTask(workspace=make_ref(remote, base_branch="main", request_id="never-prepared")))


def test_cleanup_can_keep_remote_branch(settings, remote):
    activities = WorkspaceActivities(settings)
    ref = make_ref(remote)
    prepared = activities.prepare(ref)
    activities.cleanup(CleanupTask(workspace=ref, delete_remote_branch=False))
    assert not activities.workspaces.path(ref).exists()
    assert remote_sha(remote, "honk/req-1") == prepared.head_sha


def test_cleanup_keeps_a_work_branch_someone_else_pushed_to(settings, remote, tmp_path):
    activities = WorkspaceActivities(settings)
    ref = make_ref(remote)
    prepared = activities.prepare(ref)
    colleague = Workspaces(Settings(data_dir=tmp_path / "colleague"))
    (colleague.ensure(ref) / "theirs.txt").write_text("theirs\n")
    colleague.commit_all(ref, "a colleague's follow-up")
    theirs = colleague.push(ref)

    kept = activities.workspaces.remove(ref, delete_remote_branch=True, expect_sha=prepared.head_sha)
    assert kept and "kept honk/req-1" in kept and prepared.head_sha[:12] in kept
    assert remote_sha(remote, "honk/req-1") == theirs, "their commit survives"
    activities.cleanup(CleanupTask(workspace=ref, expect_sha=theirs))  # at the tip it expects: deleted
    assert remote_sha(remote, "honk/req-1") is None


def test_cleanup_when_remote_is_gone(settings, remote):
    activities = WorkspaceActivities(settings)
    ref = make_ref(remote)
    activities.prepare(ref)
    shutil.rmtree(remote)
    activities.cleanup(CleanupTask(workspace=ref))
    assert not activities.workspaces.path(ref).exists()


# --------------------------------------------------------------------------- the pool


def pool_slots(settings: Settings, repo: str = "app") -> list[Path]:
    pool = settings.pool_dir / repo
    return sorted(p for p in pool.iterdir() if not p.name.startswith(".")) if pool.is_dir() else []


def test_removed_workspace_is_pooled_and_reused(settings, remote):
    workspaces = Workspaces(settings)
    first = make_ref(remote, "req-1")
    path = workspaces.ensure(first)
    inode = path.stat().st_ino
    workspaces.remove(first, delete_remote_branch=False)
    assert not path.exists()
    [slot] = pool_slots(settings)
    assert slot.stat().st_ino == inode
    assert sh(slot, "status", "--porcelain", "--ignored") == ""

    second = make_ref(remote, "req-2")
    reused = workspaces.ensure(second)
    assert reused.stat().st_ino == inode  # the very directory, moved
    assert pool_slots(settings) == []
    assert sh(reused, "rev-parse", "--abbrev-ref", "HEAD") == "honk/req-2"
    assert sh(reused, "rev-parse", "HEAD") == remote_sha(remote, "main")
    assert sh(reused, "remote", "get-url", "origin") == str(remote)
    assert (reused / "src" / "app.txt").read_text() == "v1\n"


def test_recycled_workspace_carries_nothing_from_its_previous_request(settings, remote, tmp_path):
    workspaces = Workspaces(settings)
    first = make_ref(remote, "req-1")
    WorkspaceActivities(settings).prepare(first)
    path = workspaces.path(first)

    # Everything a request's code (checks, builds run in the workspace) could leave behind.
    (path / ".gitignore").write_text("build/\n")
    workspaces.commit_all(first, "ignore build")  # an unpushed commit
    unpushed = workspaces.head(first)
    (path / "build").mkdir()
    (path / "build" / "out.apk").write_text("ignored\n")
    (path / "untracked.txt").write_text("untracked\n")
    (path / "nested").mkdir()
    sh(path / "nested", "init", "-q")  # an untracked repository inside
    (path / "README.md").write_text("stashed\n")
    sh(path, "stash", "-q")
    sh(path, "branch", "stale-branch")
    sh(path, "tag", "local-tag")
    sh(path, "config", "url.https://evil.example/.insteadOf", str(remote))
    sh(path, "config", "filter.evil.smudge", "touch /tmp/pwned")
    sh(path, "remote", "set-url", "origin", "https://user:hunter22@evil.example/r.git")
    (path / ".git" / "hooks" / "post-checkout").write_text("#!/bin/sh\ntouch /tmp/pwned\n")
    (path / ".git" / "info" / "attributes").write_text("* filter=evil\n")
    (path / ".git" / "MERGE_HEAD").write_text(unpushed + "\n")
    # A changed tracked file hidden from git: skip-worktree survives a `reset --hard`.
    (path / "src" / "app.txt").write_text("poisoned\n")
    sh(path, "update-index", "--skip-worktree", "src/app.txt")
    # A directory replaced by a symlink to somewhere outside.
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("not Honk's\n")
    shutil.rmtree(path / "src")
    (path / "src").symlink_to(outside)
    (path / "tool.sh").write_text("#!/bin/sh\n")
    (path / "tool.sh").chmod(0o755)

    workspaces.remove(first, delete_remote_branch=False)
    assert len(pool_slots(settings)) == 1
    assert (outside / "keep.txt").read_text() == "not Honk's\n"  # never followed

    second = make_ref(remote, "req-2")
    path2 = workspaces.ensure(second)
    assert sh(path2, "status", "--porcelain", "--ignored") == ""
    tracked = sorted(sh(path2, "ls-files").splitlines())
    on_disk = sorted(
        str(p.relative_to(path2))
        for p in path2.rglob("*")
        if ".git" not in p.relative_to(path2).parts and not p.is_dir()
    )
    assert on_disk == tracked == [".honk.toml", "README.md", "src/app.txt"]
    assert not (path2 / "src").is_symlink()
    assert (path2 / "src" / "app.txt").read_text() == "v1\n"
    assert (path2 / "README.md").read_text() == "hello\n"
    assert sh(path2, "ls-files", "-v", "src/app.txt").startswith("H ")  # no skip-worktree bit

    assert sh(path2, "for-each-ref", "--format=%(refname)", "refs/heads") == "refs/heads/honk/req-2"
    assert sh(path2, "stash", "list") == ""
    assert "local-tag" not in sh(path2, "tag", "--list")
    assert sh(path2, "remote", "get-url", "origin") == str(remote)
    config = (path2 / ".git" / "config").read_text()
    assert "insteadOf" not in config and "filter" not in config and "evil" not in config
    assert not (path2 / ".git" / "hooks" / "post-checkout").exists()
    assert not (path2 / ".git" / "info" / "attributes").exists()
    assert not (path2 / ".git" / "MERGE_HEAD").exists()
    gone = subprocess.run(["git", "cat-file", "-e", unpushed], cwd=path2, capture_output=True, check=False)
    assert gone.returncode != 0, "the previous request's objects must not survive"


def test_pool_reuse_follows_the_remote(settings, remote, tmp_path):
    workspaces = Workspaces(settings)
    workspaces.ensure(make_ref(remote, "req-1"))
    workspaces.remove(make_ref(remote, "req-1"), delete_remote_branch=False)

    # The base moves and another request pushed its work branch meanwhile.
    clone = tmp_path / "elsewhere"
    sh(tmp_path, "clone", "-q", str(remote), str(clone))
    (clone / "src" / "app.txt").write_text("v2\n")
    (clone / "new.txt").write_text("new\n")
    sh(clone, "commit", "-qam", "v2")
    sh(clone, "add", "new.txt")
    sh(clone, "commit", "-qm", "new")
    sh(clone, "push", "-q", "origin", "main")
    sh(clone, "push", "-q", "origin", "HEAD~1:refs/heads/honk/req-9")

    state = workspaces.sync(make_ref(remote, "req-9"))
    assert state.resumed and state.head_sha == remote_sha(remote, "honk/req-9")
    assert state.base_sha == remote_sha(remote, "main")
    assert (state.path / "src" / "app.txt").read_text() == "v2\n"
    assert not (state.path / "new.txt").exists()
    assert sh(state.path, "status", "--porcelain", "--ignored") == ""


def test_pool_is_bounded_per_repository(tmp_path, remote):
    settings = Settings(data_dir=tmp_path / "data", workspace_pool_size=2)
    workspaces = Workspaces(settings)
    refs = [make_ref(remote, f"req-{i}") for i in range(4)]
    for ref in refs:
        workspaces.ensure(ref)
    for ref in refs:
        workspaces.remove(ref, delete_remote_branch=False)
        assert not workspaces.path(ref).exists()
    assert len(pool_slots(settings)) == 2
    assert not [p for p in (settings.pool_dir / "app").iterdir() if p.name.startswith(".")]

    other = make_remote(tmp_path, {"x.txt": "x\n"}, name="other")
    ref = make_ref(other, "req-x", repo="other")
    workspaces.ensure(ref)
    workspaces.remove(ref, delete_remote_branch=False)
    assert len(pool_slots(settings, "other")) == 1  # every repository has its own pool


def test_pool_size_zero_deletes_workspaces(tmp_path, remote):
    settings = Settings(data_dir=tmp_path / "data", workspace_pool_size=0)
    workspaces = Workspaces(settings)
    ref = make_ref(remote)
    workspaces.ensure(ref)
    workspaces.remove(ref, delete_remote_branch=False)
    assert not workspaces.path(ref).exists()
    assert pool_slots(settings) == []


def test_broken_pool_slot_is_discarded(settings, remote):
    workspaces = Workspaces(settings)
    workspaces.ensure(make_ref(remote, "req-1"))
    workspaces.remove(make_ref(remote, "req-1"), delete_remote_branch=False)
    [slot] = pool_slots(settings)
    shutil.rmtree(slot / ".git")
    path = workspaces.ensure(make_ref(remote, "req-2"))
    assert (path / "README.md").read_text() == "hello\n"
    assert sh(path, "rev-parse", "--abbrev-ref", "HEAD") == "honk/req-2"


def test_pooled_workspaces_are_never_shared_under_concurrency(tmp_path, remote):
    """Many requests take, use and give back workspaces at once: each directory belongs to
    one request at a time, and every push carries exactly its own request's change."""
    settings = Settings(data_dir=tmp_path / "data", workspace_pool_size=2)
    workspaces = Workspaces(settings)
    start = threading.Barrier(6)
    owners: dict[int, str] = {}
    owners_lock = threading.Lock()

    def one(index: int) -> list[tuple[str, str]]:
        start.wait()
        pushed = []
        for round_ in range(3):
            ref = make_ref(remote, request_id=f"req-{index}-{round_}")
            path = workspaces.ensure(ref)
            inode = path.stat().st_ino
            with owners_lock:
                assert inode not in owners, f"{ref.request_id} shares a tree with {owners[inode]}"
                owners[inode] = ref.request_id
            assert sh(path, "status", "--porcelain", "--ignored") == ""
            (path / f"file-{index}-{round_}.txt").write_text("x\n")
            sha = workspaces.commit_all(ref, f"change {index}/{round_}")
            assert workspaces.push(ref) == sha
            with owners_lock:
                del owners[inode]
            workspaces.remove(ref, delete_remote_branch=False)
            pushed.append((ref.work_branch, sha))
        return pushed

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = [item for items in pool.map(one, range(6)) for item in items]

    for branch, sha in results:
        assert remote_sha(remote, branch) == sha
        files = sh(remote, "ls-tree", "--name-only", sha).splitlines()
        own = "file-" + branch.removeprefix("honk/req-") + ".txt"
        assert [f for f in files if f.startswith("file-")] == [own]
    assert len(pool_slots(settings)) <= 2


def test_bench_repository_builder_small(tmp_path):
    """bench/workspace.py's generator, at a tiny size (the bench itself is not a test)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_workspace", Path(__file__).resolve().parents[2] / "bench" / "workspace.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    repo = bench.build_repo(tmp_path / "cache", files=250, commits=7)
    assert sh(repo, "rev-list", "--count", "main") == "7"
    assert len(sh(repo, "ls-tree", "-r", "--name-only", "main").splitlines()) == 250
    assert bench.build_repo(tmp_path / "cache", files=250, commits=7) == repo  # cached

    fresh, warm = bench.measure(repo, tmp_path / "run", runs=2)
    assert len(fresh) == len(warm) == 2 and all(t > 0 for t in fresh + warm)
