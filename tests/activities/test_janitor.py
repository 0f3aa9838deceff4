"""The janitor against real git remotes, with a fake `is_running` (and once through the CLI
against a real Temporal dev server)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import ROOT
from repos import make_remote, sh

from honk.activities.workspace import WorkspaceActivities
from honk.config.registry import load_registry
from honk.config.settings import Settings
from honk.git.branches import delete_remote_branch
from honk.git.runner import GitError
from honk.janitor import (
    parse_duration,
    request_for_branch,
    request_for_workspace,
    sweep,
)
from honk.workflows.contract import ChangeRequest, WorkspaceRef
from honk.workspace import Workspaces

DAY = 86400
OLD = time.time() - 30 * DAY  # a month ago


def branches(remote: Path) -> set[str]:
    return set(sh(remote, "for-each-ref", "--format=%(refname:short)", "refs/heads").splitlines())


class World:
    """A repository in a registry, with requests in various states."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.remote = make_remote(tmp_path, {"app.txt": "v1\n"}, name="app", when=OLD)
        self.registry_file = tmp_path / "honk.toml"
        self.registry_file.write_text(f'[repos.app]\nremote = "{self.remote}"\napprovers = ["alice"]\n')
        self.settings = Settings(data_dir=tmp_path / "data", registry=self.registry_file)
        self.registry = load_registry(self.registry_file, self.settings.data_dir)
        self.activities = WorkspaceActivities(self.settings)

    def ref(self, request_id: str) -> WorkspaceRef:
        return WorkspaceRef(
            request_id=request_id,
            repo="app",
            remote=str(self.remote),
            base_branch="main",
            work_branch="honk/" + request_id.removeprefix("honk-"),
        )

    def request(self, request_id: str, *, age_days: float, recent_commit: bool = False) -> Path:
        """A prepared request whose workspace was last touched `age_days` ago."""
        ref = self.ref(request_id)
        self.activities.prepare(ref)
        path = self.activities.workspaces.path(ref)
        if recent_commit:
            (path / "new.txt").write_text("new\n")
            self.activities.workspaces.commit_all(ref, "recent work")
            self.activities.workspaces.push(ref)
        age(path, age_days)
        return path

    def sweep(self, running: set[str], older_than: timedelta = timedelta(days=3), **kw):
        return sweep(self.settings, self.registry, lambda rid: rid in running, older_than, **kw)


def age(path: Path, days: float) -> None:
    when = time.time() - days * DAY
    for item in (path, path / ".git", path / ".git" / "index"):
        if item.exists():
            os.utime(item, (when, when))


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_sweep_removes_only_old_orphans(world):
    old = world.request("honk-app-old", age_days=10)
    running = world.request("honk-app-running", age_days=10)
    recent = world.request("honk-app-recent", age_days=0.1, recent_commit=True)
    assert {"honk/app-old", "honk/app-running", "honk/app-recent"} <= branches(world.remote)

    dry = world.sweep({"honk-app-running"}, dry_run=True)
    assert dry.dry_run and not dry.errors
    assert sorted((r.kind, r.request_id) for r in dry.removed) == [
        ("branch", "honk-app-old"),
        ("workspace", "honk-app-old"),
    ]
    assert old.exists() and "honk/app-old" in branches(world.remote)  # nothing touched

    report = world.sweep({"honk-app-running"})
    assert not report.errors
    assert sorted((r.kind, r.name) for r in report.removed) == [
        ("branch", "app:honk/app-old"),
        ("workspace", str(old)),
    ]
    branch = next(r for r in report.removed if r.kind == "branch")
    assert branch.age_s > 20 * DAY and branch.sha == sh(world.remote, "rev-parse", "main")
    assert not old.exists()
    assert running.exists() and recent.exists()
    assert branches(world.remote) == {"main", "honk/app-running", "honk/app-recent"}
    assert report.kept_running == 2  # its workspace and its branch
    assert report.kept_recent >= 2

    again = world.sweep({"honk-app-running"})
    assert again.removed == []  # idempotent


def test_unknown_requests_count_as_not_running_but_doubt_keeps_things(world):
    path = world.request("honk-app-1", age_days=10)

    def cannot_tell(request_id: str) -> bool:
        raise ConnectionError("temporal unreachable")

    report = sweep(world.settings, world.registry, cannot_tell, timedelta(days=3))
    assert report.removed == []
    assert path.exists() and "honk/app-1" in branches(world.remote)
    assert report.errors and "temporal unreachable" in report.errors[0]


def test_a_workspace_in_use_is_kept(world):
    path = world.request("honk-app-1", age_days=10)
    held, release = threading.Event(), threading.Event()

    def step_in_progress() -> None:  # another thread, as another process would be
        with world.activities.workspaces.locked(world.ref("honk-app-1")):
            held.set()
            release.wait(30)

    holder = threading.Thread(target=step_in_progress)
    holder.start()
    held.wait(30)
    try:
        report = world.sweep(set())
    finally:
        release.set()
        holder.join()
    assert path.exists()
    assert [r.kind for r in report.removed] == ["branch"]


def test_old_branch_without_local_workspace_and_foreign_branches(world):
    """Branches of requests that ran on other hosts go too; non-Honk branches never do."""
    scratch = world.tmp_path / "scratch"
    sh(world.tmp_path, "clone", "-q", str(world.remote), str(scratch))
    (scratch / "x.txt").write_text("x\n")
    sh(scratch, "add", "x.txt")
    sh(scratch, "commit", "-q", "-m", "elsewhere", when=OLD)
    sh(
        scratch,
        "push",
        "-q",
        "origin",
        "HEAD:refs/heads/honk/app-elsewhere",
        "HEAD:refs/heads/feature/old",
        "HEAD:refs/heads/honkish",
    )
    report = world.sweep(set())
    assert [(r.kind, r.request_id) for r in report.removed] == [("branch", "honk-app-elsewhere")]
    assert branches(world.remote) == {"main", "feature/old", "honkish"}


def test_unreachable_repository_is_reported_and_the_rest_still_swept(world, tmp_path):
    world.request("honk-app-1", age_days=10)
    world.registry_file.write_text(
        world.registry_file.read_text() + f'\n[repos.gone]\nremote = "{tmp_path / "gone.git"}"\napprovers = ["alice"]\n'
    )
    registry = load_registry(world.registry_file, world.settings.data_dir)
    report = sweep(world.settings, registry, lambda rid: False, timedelta(days=3))
    assert any(e.startswith("gone:") for e in report.errors)
    assert ("branch", "honk-app-1") in [(r.kind, r.request_id) for r in report.removed]


def test_crash_leftovers_are_removed_when_old(world):
    pool = world.settings.pool_dir / "app"
    pool.mkdir(parents=True)
    stale = pool / ".recycle-abc"
    stale.mkdir()
    fresh = pool / ".recycle-def"
    fresh.mkdir()
    half_clone = world.settings.workspaces_dir / ".honk-app-9.tmp-1234"
    half_clone.mkdir(parents=True)
    age(stale, 10)
    age(half_clone, 10)
    report = world.sweep(set())
    assert not stale.exists() and not half_clone.exists()
    assert fresh.exists()  # maybe being scrubbed right now
    assert sorted(r.kind for r in report.removed) == ["leftover", "leftover"]


def test_delete_remote_branch_lease_protects_a_new_push(world):
    world.request("honk-app-1", age_days=0)
    old_sha = sh(world.remote, "rev-parse", "honk/app-1")
    with pytest.raises(GitError):
        delete_remote_branch(str(world.remote), "honk/app-1", expect_sha="0" * 40)
    assert sh(world.remote, "rev-parse", "honk/app-1") == old_sha
    delete_remote_branch(str(world.remote), "honk/app-1", expect_sha=old_sha)
    assert "honk/app-1" not in branches(world.remote)
    delete_remote_branch(str(world.remote), "honk/app-1")  # already gone: harmless


def test_names():
    assert request_for_branch("honk/app-1a2b") == "honk-app-1a2b"
    assert request_for_branch("honk/") is None and request_for_branch("main") is None
    assert parse_duration("90m") == timedelta(minutes=90)
    assert parse_duration("12h") == timedelta(hours=12)
    assert parse_duration("3d") == timedelta(days=3)
    assert parse_duration("1d12h") == timedelta(hours=36)
    assert parse_duration("2w") == timedelta(days=14)
    for bad in ("", "3", "d3", "3x", "1.5d", "-3d"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_request_for_workspace_recovers_escaped_ids(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    ws = Workspaces(settings)
    odd = WorkspaceRef(request_id="honk-a b", repo="app", remote="/x", base_branch="main", work_branch="honk/a-b")
    path = ws.path(odd)
    (path / ".git").mkdir(parents=True)
    (path / ".git" / "HEAD").write_text("ref: refs/heads/honk/a b\n")
    assert request_for_workspace(path) == "honk-a b"
    plain = settings.workspaces_dir / "honk-app-1"
    plain.mkdir()
    assert request_for_workspace(plain) == "honk-app-1"


async def test_cli_janitor_asks_temporal(world, dev_env):
    """`honk janitor` through the real CLI and a real Temporal server: a started workflow
    (no worker needed) counts as running; an id Temporal never saw does not."""
    kept = world.request("honk-app-live", age_days=10)
    gone = world.request("honk-app-never-started", age_days=10)
    handle = await dev_env.client.start_workflow(
        "ChangeRequestWorkflow",
        ChangeRequest(repo="app", remote=str(world.remote), instruction="x", requester="bob"),
        id="honk-app-live",
        task_queue="janitor-test-nobody-polls",
    )
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HONK_")}
        env.update(
            HONK_TEMPORAL_ADDRESS=dev_env.client.service_client.config.target_host,
            HONK_DATA_DIR=str(world.settings.data_dir),
            HONK_REGISTRY=str(world.registry_file),
        )
        args = [sys.executable, "-m", "honk.cli", "janitor", "--older-than", "3d"]

        async def run(*argv: str) -> subprocess.CompletedProcess:
            return await asyncio.to_thread(
                subprocess.run, argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
            )

        dry = await run(*args, "--dry-run", "--json")
        assert dry.returncode == 0, dry.stderr
        planned = json.loads(dry.stdout)
        assert planned["dry_run"] is True
        assert sorted(r["request_id"] for r in planned["removed"]) == [
            "honk-app-never-started",
            "honk-app-never-started",
        ]
        assert gone.exists()
        human = await run(*args, "--dry-run")
        assert human.returncode == 0, human.stderr
        text = human.stdout.replace("\n", "")  # rich wraps long paths
        assert f"Would remove workspace {gone} (honk-app-never-started, 240." in text
        assert "KiB)" in text and "Would repack mirror" in text

        done = await run(*args)
        assert done.returncode == 0, done.stderr
        assert "Removed 2" in done.stdout
        assert kept.exists() and not gone.exists()
        assert "honk/app-live" in branches(world.remote)
        assert "honk/app-never-started" not in branches(world.remote)
    finally:
        await handle.terminate("test over")


# --------------------------------------------------------------------------- retention


def leave(path: Path, size: int, days: float) -> Path:
    """A file of `size` bytes last written `days` ago."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    when = time.time() - days * DAY
    os.utime(path, (when, when))
    for parent in path.parents:  # directories as old as their file
        if parent == path.parents[-1] or not parent.is_relative_to(path.parents[2]):
            break
        os.utime(parent, (when, when))
    return path


def retention_world(world, **ages: int) -> World:
    world.settings = world.settings.model_copy(
        update={
            "retain_artifacts_seconds": 14 * DAY,
            "retain_logs_seconds": 30 * DAY,
            "retain_published_seconds": 8 * DAY,
            "retain_chat_state_seconds": 30 * DAY,
            **ages,
        }
    )
    return world


def test_retention_removes_state_of_ended_requests_by_age_and_reports_sizes(world):
    retention_world(world)
    data = world.settings.data_dir
    ended, running, young = "honk-app-ended", "honk-app-running", "honk-app-young"
    apk = leave(data / "artifacts" / ended / "build-1" / "app.apk", 300_000, 20)
    log_file = leave(data / "artifacts" / ended / "logs" / "check.log", 4_000, 20)  # logs: 30 days
    published = leave(data / "store" / ended / "1" / "app.apk", 300_000, 9)
    notices = leave(data / "notifications" / f"{ended}.jsonl", 500, 40)
    sent = leave(data / "slack" / ended / "ready", 20, 40)
    kept = [
        leave(data / "artifacts" / running / "build-1" / "app.apk", 1_000, 40),
        leave(data / "store" / running / "1" / "app.apk", 1_000, 40),
        leave(data / "artifacts" / young / "build-1" / "app.apk", 1_000, 2),
        leave(data / "store" / young / "1" / "app.apk", 1_000, 2),
    ]

    dry = world.sweep({running}, dry_run=True)
    assert sorted((r.kind, r.request_id, r.size_bytes) for r in dry.removed) == [
        ("artifacts", ended, 300_000),
        ("chat-state", ended, 20),
        ("chat-state", ended, 500),
        ("published", ended, 300_000),
    ]
    assert dry.removed_bytes == 300_000 * 2 + 500 + 20
    assert all(p.exists() for p in (apk, log_file, published, notices, sent))  # a dry run removes nothing

    report = world.sweep({running})
    assert not report.errors
    assert not apk.exists() and not published.exists() and not notices.exists() and not sent.exists()
    assert log_file.exists(), "logs have their own, longer age"
    assert all(p.exists() for p in kept)

    leave(log_file, 4_000, 31)
    later = world.sweep({running})
    assert [(r.kind, r.request_id) for r in later.removed] == [("logs", ended)]
    assert not (data / "artifacts" / ended / "logs").exists()


def test_published_copies_never_go_before_their_links_expire(world):
    retention_world(world, retain_published_seconds=3600, link_expiry_seconds=7 * DAY)
    copy = leave(world.settings.data_dir / "store" / "honk-app-ended" / "1" / "app.apk", 100, 2)
    report = world.sweep(set())
    assert copy.exists(), "a 2-day-old copy whose link lives 7 days stays"
    assert any("HONK_RETAIN_PUBLISHED_SECONDS" in n and "HONK_LINK_EXPIRY_SECONDS" in n for n in report.notes)
    leave(copy, 100, 8)
    assert [r.kind for r in world.sweep(set()).removed] == ["published"]


def test_mirrors_are_repacked(world):
    world.request("honk-app-1", age_days=0)
    mirror = world.settings.data_dir / "mirrors" / "app.git"
    scratch = world.tmp_path / "scratch"
    sh(world.tmp_path, "clone", "-q", str(world.remote), str(scratch))
    for n in range(3):  # small fetches land as loose objects in the mirror
        (scratch / f"f{n}.txt").write_text(f"{n}\n")
        sh(scratch, "add", "-A")
        sh(scratch, "commit", "-q", "-m", f"more {n}")
        sh(scratch, "push", "-q", "origin", "HEAD:main")
        world.activities.workspaces.refresh_mirror(world.ref("honk-app-1"))
    assert sh(mirror, "count-objects", "-v").splitlines()[0] != "count: 0"

    dry = world.sweep({"honk-app-1"}, dry_run=True)
    assert [m["mirror"] for m in dry.repacked] == [str(mirror)]
    assert sh(mirror, "count-objects", "-v").splitlines()[0] != "count: 0"  # dry: untouched
    report = world.sweep({"honk-app-1"})
    assert not report.errors and report.repacked[0]["bytes_after"] > 0
    assert sh(mirror, "count-objects", "-v").splitlines()[0] == "count: 0"  # all packed
    assert sh(mirror, "rev-parse", "main") == sh(world.remote, "rev-parse", "main")
