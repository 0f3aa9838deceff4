"""Honk's own git never runs repository-controlled programs: filter drivers and external
diff planted in the workspace's `.git/config` (as if a check had escaped the sandbox's
read-only `.git`) and a nested repository with its own clean filter, against Honk's commit,
diff, push and merge paths. Each planted program would append to a marker file."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from repos import make_remote, sh

from honk.activities.merge import MergeActivities
from honk.config.settings import Settings
from honk.workflows.contract import MergeTask, WorkspaceRef
from honk.workspace import Workspaces


@pytest.fixture
def setup(tmp_path: Path):
    remote = make_remote(tmp_path, {"app.txt": "v1\n"})
    marker = tmp_path / "RAN"
    evil = tmp_path / "evil.sh"
    # A clean filter must print the content; diff.external gets 7 arguments: both are fine.
    evil.write_text(f'#!/bin/sh\necho "$0 $*" >> {marker}\ncat\n')
    evil.chmod(0o755)
    settings = Settings(data_dir=tmp_path / "data")
    ref = WorkspaceRef(
        request_id="req-hostile", repo="app", remote=str(remote), base_branch="main", work_branch="honk/req-hostile"
    )
    workspaces = Workspaces(settings)
    path = workspaces.ensure(ref)
    return settings, workspaces, ref, path, remote, marker, evil


def plant_workspace_drivers(path: Path, evil: Path) -> None:
    """What an escaped check or agent would write into the workspace's own `.git`."""
    with (path / ".git" / "config").open("a") as config:
        config.write(
            f'[filter "evil"]\n\tclean = {evil}\n\tsmudge = {evil}\n\trequired = true\n'
            f"[diff]\n\texternal = {evil}\n"
            f'[diff "evil"]\n\ttextconv = {evil}\n'
            f'[merge "evil"]\n\tdriver = {evil} %O %A %B\n'
            f"[core]\n\tpager = {evil}\n\tfsmonitor = {evil}\n"
            f'[url "{path}/elsewhere"]\n\tinsteadOf = {path}\n'
            f"[include]\n\tpath = {evil}.cfg\n"
        )
    Path(f"{evil}.cfg").write_text(f'[filter "evil"]\n\tprocess = {evil}\n')
    (path / ".git" / "info").mkdir(exist_ok=True)
    (path / ".git" / "info" / "attributes").write_text("* filter=evil diff=evil merge=evil\n")
    hook = path / ".git" / "hooks" / "pre-commit"
    hook.write_text(f"#!/bin/sh\n{evil}\n")
    hook.chmod(0o755)


def plant_nested_repository(path: Path, evil: Path) -> None:
    sub = path / "sub"
    sub.mkdir()
    sh(sub, "init", "-q", "-b", "main")
    (sub / ".gitattributes").write_text("* filter=evil\n")
    (sub / "secret.txt").write_text("nested content\n")
    sh(sub, "add", "-A")
    sh(sub, "commit", "-q", "-m", "nested")
    with (sub / ".git" / "config").open("a") as config:
        config.write(f'[filter "evil"]\n\tclean = {evil}\n\tsmudge = {evil}\n')
    (sub / "secret.txt").write_text("nested content, modified\n")  # dirty: status would look


def committed_tree(remote: Path, rev: str) -> list[str]:
    return sh(remote, "ls-tree", "-r", "--full-tree", rev).splitlines()


def test_commit_diff_and_push_run_no_planted_program(setup):
    settings, workspaces, ref, path, remote, marker, evil = setup
    plant_workspace_drivers(path, evil)
    plant_nested_repository(path, evil)
    (path / ".gitattributes").write_text("* filter=evil diff=evil merge=evil\n")
    (path / ".gitmodules").write_text('[submodule "sub"]\n\tpath = sub\n\turl = ../attacker.git\n')
    (path / "app.txt").write_text("v2\n")

    sha = workspaces.commit_all(ref, "agent round")
    assert sha is not None
    pushed = workspaces.push(ref)
    changed = workspaces.changed_files(ref)
    assert not workspaces.diff_is_empty(ref)

    assert not marker.exists(), marker.read_text()
    tree = committed_tree(remote, pushed)
    # Nothing of the nested repository's git data: no gitlink, no `.git` inside.
    assert not any(line.startswith("160000") for line in tree), tree
    assert not any("/.git/" in line or line.endswith("/.git") for line in tree), tree
    assert "app.txt" in changed
    assert ".gitmodules" not in changed  # submodule definitions are never Honk's to commit
    # The workspace's .git is back to what Honk made.
    config = (path / ".git" / "config").read_text()
    for planted in ("filter", "external", "textconv", "driver", "pager", "insteadOf", "include", "fsmonitor"):
        assert planted not in config
    assert not (path / ".git" / "info" / "attributes").exists()
    assert not (path / ".git" / "hooks" / "pre-commit").exists()


def test_merge_after_planted_drivers_runs_none_of_them(setup):
    settings, workspaces, ref, path, remote, marker, evil = setup
    (path / "app.txt").write_text("v2\n")
    # Attributes naming drivers are just text in the tree; only config could define them.
    (path / ".gitattributes").write_text("* filter=evil diff=evil merge=evil\n")
    workspaces.commit_all(ref, "agent round")
    tested = workspaces.push(ref)
    # Between steps, an escape plants drivers (the merge re-syncs this workspace, checks
    # out both sides and writes every file of the change).
    plant_workspace_drivers(path, evil)
    plant_nested_repository(path, evil)

    outcome = MergeActivities(settings).merge(
        MergeTask(workspace=ref, title="t", body="", requested_by="U1", approved_by="U2", tested_sha=tested)
    )

    assert not marker.exists(), marker.read_text()
    assert sh(remote, "show", f"{outcome.commit_sha}:app.txt") == "v2"


def test_a_poisoned_mirror_is_repaired_before_it_is_fetched_into(setup):
    settings, workspaces, ref, path, remote, marker, evil = setup
    mirror = workspaces.mirror_path(ref)
    elsewhere = path.parent / "attacker.git"
    sh(path.parent, "init", "-q", "--bare", str(elsewhere))
    with (mirror / "config").open("a") as config:
        config.write(f'[url "{elsewhere}"]\n\tinsteadOf = {remote}\n[core]\n\tsshCommand = {evil}\n')

    (path / "app.txt").write_text("v3\n")
    workspaces.commit_all(ref, "round")
    workspaces.push(ref)
    workspaces.ensure(ref)  # refreshes the mirror

    assert "insteadOf" not in (mirror / "config").read_text()
    assert sh(remote, "rev-parse", "refs/heads/honk/req-hostile")
    assert not marker.exists()


def test_a_workspace_whose_git_is_a_gitfile_is_rebuilt(setup):
    settings, workspaces, ref, path, remote, marker, evil = setup
    elsewhere = path.parent / "other"
    sh(path.parent, "init", "-q", str(elsewhere))
    subprocess.run(["rm", "-rf", str(path / ".git")], check=True)
    (path / ".git").write_text(f"gitdir: {elsewhere}/.git\n")

    rebuilt = workspaces.ensure(ref)

    assert (rebuilt / ".git").is_dir()
    assert sh(rebuilt, "remote", "get-url", "origin") == str(remote)


def test_local_git_commands_fail_as_git_errors_and_keep_git_words(tmp_path):
    """Local commands skip GitPython's machinery but fail the same way: a GitError with git's
    own message, also when the directory is gone; output comes back without its newline."""
    import git

    from honk.git.runner import GitError, run_git

    repo = tmp_path / "r"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    assert run_git(git.Git(str(repo)), "rev-parse", "--is-inside-work-tree") == "true"
    with pytest.raises(GitError) as failed:
        run_git(git.Git(str(repo)), "rev-parse", "--verify", "no-such-ref")
    assert failed.value.status == 128 and "fatal: Needed a single revision" in str(failed.value)
    with pytest.raises(GitError) as gone:
        run_git(git.Git(str(tmp_path / "gone")), "status")
    assert "gone" in str(gone.value)


def test_revisions_are_read_in_one_call_and_a_hostile_branch_name_shifts_no_answer(setup):
    """Several revisions from one git process, each answered for itself: a missing name is
    None, and a branch name holding line separators other than git's own newline (U+2028,
    U+0085) and a commit id cannot pass that id off as the answer to the next name."""
    from honk.git.runner import open_repo, revs

    _settings, _workspaces, _ref, path, _remote, _marker, _evil = setup
    head = sh(path, "rev-parse", "HEAD")
    tree = sh(path, "rev-parse", "HEAD^{tree}")
    planted = "f" * 40
    hostile = f"refs/heads/x\u2028{planted}\u0085y^{{commit}}"
    with open_repo(path) as repo:
        assert revs(repo, "HEAD^{commit}", "refs/heads/nope^{commit}", "HEAD^{tree}") == [head, None, tree]
        assert revs(repo, hostile, "HEAD^{commit}") == [None, head]
        assert revs(repo, "HEAD\nrefs/heads/main", "", "HEAD^{tree}") == [None, None, tree]
