"""Honk's record of a merge cannot be claimed by someone else's commit message, and still
makes a retried merge idempotent (issue 12). Real git, bare remotes on disk."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError
from test_merge_activity import Fixture, base_log, sh

from honk.git.runner import open_repo
from honk.merge import merged_ref_name, rebase_onto_base, trailer_block

REQUEST = "honk-cli-app-1a2b3c4d"


def test_a_commit_quoting_the_request_trailer_does_not_make_it_merged(tmp_path):
    fx = Fixture(tmp_path)
    tested = fx.edit({"app.txt": "line 1\nline 2 fixed\nline 3\n"})
    # Someone lands a commit whose message quotes this pending request, even in trailer form.
    spoof = fx.base_other({"other.txt": "x\n"}, f"Revert the queue fix\n\nHonk-Request: {REQUEST}")

    outcome = fx.activities.merge(fx.task(tested))

    assert outcome.already_merged is False and outcome.commit_sha != spoof
    assert base_log(fx.remote)[:2] == [outcome.commit_sha, spoof]
    assert sh(fx.remote, "show", f"{outcome.commit_sha}:app.txt") == "line 1\nline 2 fixed\nline 3"
    assert sh(fx.remote, "rev-parse", merged_ref_name(REQUEST)) == outcome.commit_sha


def test_a_retry_finds_the_merge_by_honks_ref_and_makes_no_second_commit(tmp_path):
    fx = Fixture(tmp_path)
    tested = fx.edit({"app.txt": "changed\n"})
    first = fx.activities.merge(fx.task(tested))
    fx.base_other({"other.txt": "later\n"})
    again = fx.activities.merge(fx.task(tested))
    assert again.already_merged and again.commit_sha == first.commit_sha
    assert len(base_log(fx.remote)) == 3, "initial, the merge, the colleague's commit"


def test_a_merge_from_before_the_ref_is_still_recognised_by_its_trailer_and_tree(tmp_path):
    fx = Fixture(tmp_path)
    tested = fx.edit({"app.txt": "changed\n"})
    first = fx.activities.merge(fx.task(tested))
    sh(fx.remote, "update-ref", "-d", merged_ref_name(REQUEST))  # as merged by older Honk
    again = fx.activities.merge(fx.task(tested))
    assert again.already_merged and again.commit_sha == first.commit_sha


def test_trailers_count_only_in_the_trailer_block():
    quoted = f"Fix it\n\nSee Honk-Request: {REQUEST}\nHonk-Request: {REQUEST}\n\nSigned-off-by: A <a@b>\n"
    assert trailer_block(quoted) == ["Signed-off-by: A <a@b>"]
    real = f"Fix it\n\nBody.\n\nHonk-Request: {REQUEST}\nApproved-by: U1\n"
    assert trailer_block(real) == [f"Honk-Request: {REQUEST}", "Approved-by: U1"]
    assert trailer_block(f"Honk-Request: {REQUEST}") == [], "a title alone is no trailer block"


def test_a_conflict_repaired_for_the_rebase_strategy_merges(tmp_path):
    fx = Fixture(tmp_path)
    fx.edit({"app.txt": "line 1\nline 2 ours\nline 3\n"}, "round 1")
    tested = fx.edit({"new.txt": "new\n"}, "round 2")
    theirs = fx.base_other({"app.txt": "line 1\nline 2 theirs\nline 3\n"})
    with pytest.raises(ApplicationError) as blocked:
        fx.activities.merge(fx.task(tested, strategy="rebase"))
    assert blocked.value.type == "MergeConflict"

    # The repair round: the change re-applied on the latest base, the agent resolves it.
    fx.workspaces.ensure(fx.ref)
    with open_repo(fx.path) as repo:
        assert rebase_onto_base(repo, fx.ref) == ["app.txt"]
    (fx.path / "app.txt").write_text("line 1\nline 2 ours and theirs\nline 3\n")
    fx.workspaces.commit_all(fx.ref, "resolve the conflict")
    repaired = fx.workspaces.push(fx.ref)

    outcome = fx.activities.merge(fx.task(repaired, strategy="rebase"))
    log = base_log(fx.remote)
    assert log[0] == outcome.commit_sha and log[1] == theirs
    assert sh(fx.remote, "show", f"{outcome.commit_sha}:app.txt") == "line 1\nline 2 ours and theirs\nline 3"
    assert sh(fx.remote, "show", f"{outcome.commit_sha}:new.txt") == "new"
