"""Credentials for https remotes, against a real smart-HTTP git server requiring Basic auth.

The server is `git http-backend` run as CGI behind a small threaded `http.server` on
127.0.0.1. The tests prove that prepare, commit, push, merge and cleanup authenticate with
credentials from the environment or settings, that a wrong password is a clear
non-retryable error, and that no credential ends up in any file under the data directory,
in a git command line or in a log record.
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import git
import pytest
from git_http import GitHttpServer
from repos import make_remote, remote_sha, sh
from temporalio.exceptions import ApplicationError

from honk.activities.merge import MergeActivities
from honk.activities.workspace import WorkspaceActivities
from honk.config.registry import load_registry
from honk.config.settings import Settings, SettingsError, load_settings
from honk.errors import HonkError
from honk.git import askpass as git_askpass
from honk.git.credentials import GitCredentials, askpass_program, split_credentials
from honk.redact import MASK, redact
from honk.workflows.contract import CleanupTask, MergeTask, WorkspaceRef
from honk.workspace import Workspaces

USERNAME = "honk-bot"


# --------------------------------------------------------------------------- the server


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def password() -> str:
    return "pw-" + secrets.token_hex(12)


@pytest.fixture
def server(tmp_path: Path, password: str) -> Iterator[GitHttpServer]:
    root = tmp_path / "served"
    root.mkdir()
    files = {"app.txt": "line 1\nline 2\n", ".honk.toml": '[[checks]]\nname = "ok"\nrun = ["true"]\n'}
    make_remote(tmp_path, files, name="app")
    (tmp_path / "app.git").rename(root / "app.git")  # served alone, without its seed
    httpd = GitHttpServer(root, USERNAME, password)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def env_credentials(monkeypatch: pytest.MonkeyPatch, password: str) -> None:
    monkeypatch.setenv("HONK_GIT_USERNAME", USERNAME)
    monkeypatch.setenv("HONK_GIT_PASSWORD", password)


@pytest.fixture
def no_env_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HONK_GIT_USERNAME", "HONK_GIT_PASSWORD", "HONK_GIT_HOST"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def argv_log(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every git command line Honk runs (what `ps` would show)."""
    seen: list[list[str]] = []
    original = git.cmd.Git.execute

    def recording(self, command, *args, **kwargs):
        seen.append([str(part) for part in command])
        return original(self, command, *args, **kwargs)

    monkeypatch.setattr(git.cmd.Git, "execute", recording)
    return seen


def make_ref(server: GitHttpServer, request_id: str = "honk-app-1", remote: str | None = None) -> WorkspaceRef:
    return WorkspaceRef(
        request_id=request_id,
        repo="app",
        remote=remote or f"{server.url}/app.git",
        base_branch="main",
        work_branch="honk/" + request_id.removeprefix("honk-"),
    )


def served_sha(server: GitHttpServer, branch: str) -> str | None:
    return remote_sha(server.root / "app.git", branch)


def assert_nowhere(data_dir: Path, secret: str, pair: str, at_least: int = 20) -> None:
    """No file under `data_dir` (any file: configs, FETCH_HEAD, logs, objects) holds them."""
    needles = [secret.encode(), pair.encode()]
    scanned = 0
    for path in data_dir.rglob("*"):
        if path.is_file() and not path.is_symlink():
            content = path.read_bytes()
            scanned += 1
            for needle in needles:
                assert needle not in content, f"{needle!r} found in {path}"
    assert scanned >= at_least, "the scan looked at the data directory"


def assert_not_logged(records: list[logging.LogRecord], secret: str) -> None:
    for record in records:
        text = record.getMessage() + repr(vars(record))
        assert secret not in text, f"secret in log record {record.name}: {record.getMessage()}"


# --------------------------------------------------------------------------- end to end


def test_prepare_commit_push_merge_cleanup_with_credentials_from_the_environment(
    tmp_path,
    server,
    password,
    env_credentials,
    argv_log,
    caplog,
):
    caplog.set_level(logging.DEBUG)
    settings = load_settings(data_dir=tmp_path / "data")
    assert settings.git_password is not None and password not in repr(settings)
    activities = WorkspaceActivities(settings)
    ref = make_ref(server)

    prepared = activities.prepare(ref)
    assert served_sha(server, ref.work_branch) == prepared.head_sha
    workspaces = activities.workspaces
    path = workspaces.path(ref)
    (path / "app.txt").write_text("line 1\nline 2 changed\n")
    sha = workspaces.commit_all(ref, "Change line 2")
    assert workspaces.push(ref) == sha == served_sha(server, ref.work_branch)

    outcome = MergeActivities(settings).merge(
        MergeTask(
            workspace=ref,
            title="Change line 2",
            requested_by="alice",
            approved_by="bob",
            tested_sha=sha,
        )
    )
    assert served_sha(server, "main") == outcome.commit_sha
    merged = sh(server.root / "app.git", "log", "-1", "--format=%B", "main")
    assert "Honk-Request: honk-app-1" in merged

    activities.cleanup(CleanupTask(workspace=ref))
    assert served_sha(server, ref.work_branch) is None
    assert list((settings.pool_dir / "app").iterdir()), "the workspace went to the pool"

    # The server demanded authentication and got it.
    statuses = [status for _, status in server.seen]
    assert 401 in statuses and 200 in statuses
    assert any("git-receive-pack" in what and status == 200 for what, status in server.seen)

    # Nothing stored, shown or logged carries the credentials.
    pair = f"{USERNAME}:{password}"
    assert_nowhere(settings.data_dir, password, pair)
    mirror_config = (settings.data_dir / "mirrors" / "app.git" / "config").read_text()
    assert USERNAME not in mirror_config
    for argv in argv_log:
        assert not any(password in part or pair in part for part in argv), argv
    assert_not_logged(caplog.records, password)
    assert any(r.name.startswith("honk.workspace.") for r in caplog.records)


def test_credentials_from_settings_and_a_recycled_workspace(tmp_path, server, password, no_env_credentials, caplog):
    caplog.set_level(logging.DEBUG)
    settings = Settings(
        data_dir=tmp_path / "data",
        git_username=USERNAME,
        git_password=password,
        git_host=f"127.0.0.1:{server.server_address[1]}",
    )
    activities = WorkspaceActivities(settings)
    first = make_ref(server, "honk-app-1")
    activities.prepare(first)
    activities.cleanup(CleanupTask(workspace=first))
    second = make_ref(server, "honk-app-2")
    activities.prepare(second)  # from the pool
    path = activities.workspaces.path(second)
    assert sh(path, "remote", "get-url", "origin") == f"{server.url}/app.git"
    assert served_sha(server, "honk/app-2") is not None
    assert_nowhere(settings.data_dir, password, f"{USERNAME}:{password}")
    assert_not_logged(caplog.records, password)


def test_credentials_in_the_remote_url_are_used_but_never_stored(
    tmp_path, server, password, no_env_credentials, argv_log
):
    """A request started before remotes were cleaned still carries userinfo in its history."""
    settings = Settings(data_dir=tmp_path / "data")
    port = server.server_address[1]
    ref = make_ref(server, remote=f"http://{USERNAME}:{password}@127.0.0.1:{port}/app.git")
    activities = WorkspaceActivities(settings)
    activities.prepare(ref)
    path = activities.workspaces.path(ref)
    assert sh(path, "remote", "get-url", "origin") == f"http://127.0.0.1:{port}/app.git"
    activities.cleanup(CleanupTask(workspace=ref))
    assert served_sha(server, ref.work_branch) is None
    assert_nowhere(settings.data_dir, password, f"{USERNAME}:{password}")
    for argv in argv_log:
        assert not any(password in part for part in argv), argv


# --------------------------------------------------------------------------- failures


def test_wrong_password_is_a_clear_non_retryable_error(tmp_path, server, no_env_credentials, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-" + secrets.token_hex(8)
    settings = Settings(data_dir=tmp_path / "data", git_username=USERNAME, git_password=wrong)
    with pytest.raises(ApplicationError) as err:
        WorkspaceActivities(settings).prepare(make_ref(server))
    assert err.value.type == "RemoteError"
    assert err.value.non_retryable
    message = str(err.value)
    assert "Authentication failed" in message and f"{server.url}/app.git" in message
    assert wrong not in message and wrong not in repr(err.value.__dict__)
    assert_nowhere(settings.data_dir, wrong, f"{USERNAME}:{wrong}", at_least=1)
    assert_not_logged(caplog.records, wrong)


def test_missing_credentials_are_a_clear_non_retryable_error(tmp_path, server, no_env_credentials):
    settings = Settings(data_dir=tmp_path / "data")
    with pytest.raises(HonkError) as err:
        Workspaces(settings).ensure(make_ref(server))
    assert err.value.kind == "RemoteError" and not err.value.retryable
    assert "could not read Username" in str(err.value)


def test_credentials_are_only_given_to_their_host(tmp_path, server, password, no_env_credentials):
    settings = Settings(
        data_dir=tmp_path / "data", git_username=USERNAME, git_password=password, git_host="git.example.com"
    )
    with pytest.raises(HonkError) as err:
        Workspaces(settings).ensure(make_ref(server))
    assert not err.value.retryable
    assert all(status == 401 for _, status in server.seen)


# --------------------------------------------------------------------------- pieces


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:tok%40en@github.com/o/r.git", ("https://github.com/o/r.git", "user", "tok@en")),
        ("https://x-access-token:ghs_abc@host:8443/r?x=1", ("https://host:8443/r?x=1", "x-access-token", "ghs_abc")),
        ("http://token@host/r.git", ("http://host/r.git", "token", None)),
        ("https://user:p@ss@host/r", ("https://host/r", "user", "p@ss")),
        ("https://github.com/o/r.git", ("https://github.com/o/r.git", None, None)),
        ("ssh://git@github.com/o/r.git", ("ssh://git@github.com/o/r.git", None, None)),
        ("ssh://git:secret@host/r.git", ("ssh://git@host/r.git", "git", "secret")),
        ("git@github.com:o/r.git", ("git@github.com:o/r.git", None, None)),
        ("/srv/git/r.git", ("/srv/git/r.git", None, None)),
        ("file:///srv/git/r.git", ("file:///srv/git/r.git", None, None)),
    ],
)
def test_split_credentials(url, expected):
    assert split_credentials(url) == expected


def test_redact_hides_known_passwords_anywhere():
    secret = "zq-" + secrets.token_hex(6)
    creds = GitCredentials("someone", secret)
    assert secret not in repr(creds)
    assert redact(f"server said: bad token {secret}!") == f"server said: bad token {MASK}!"
    assert redact("short words stay") == "short words stay"


def test_password_without_username_names_the_variable(monkeypatch):
    monkeypatch.setenv("HONK_GIT_PASSWORD", "token-123456")
    monkeypatch.delenv("HONK_GIT_USERNAME", raising=False)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "HONK_GIT_PASSWORD" in str(err.value) and "HONK_GIT_USERNAME" in str(err.value)
    assert "token-123456" not in str(err.value)


def test_askpass_answers_only_what_it_should():
    env = {"HONK_GIT_USERNAME": "bot", "HONK_GIT_PASSWORD": "pw", "HONK_GIT_HOST": "host:8443"}
    assert git_askpass.answer("Username for 'https://host:8443': ", env) == "bot"
    assert git_askpass.answer("Password for 'https://bot@host:8443': ", env) == "pw"
    assert git_askpass.answer("Password for 'https://bot@evil.example': ", env) is None
    assert git_askpass.answer("Enter passphrase for key '/root/.ssh/id_ed25519': ", {}) is None
    assert git_askpass.answer("Username for 'https://h': ", {}) is None

    program = askpass_program()
    assert os.access(program, os.X_OK)
    done = subprocess.run(
        [program, "Password for 'https://bot@h': "],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "HONK_GIT_PASSWORD": "from-env", "HONK_GIT_HOST": ""},
    )
    assert (done.returncode, done.stdout) == (0, "from-env\n")


def test_registry_keeps_credentials_in_memory_only(tmp_path):
    registry_file = tmp_path / "honk.toml"
    registry_file.write_text(
        '[repos.app]\nremote = "https://bot:s3cret-tok@git.example.com/app.git"\napprovers = ["alice"]\n'
    )
    entry = load_registry(registry_file, tmp_path).get("app")
    assert entry.remote == "https://git.example.com/app.git"
    assert entry.credentials == ("bot", "s3cret-tok")
    assert "s3cret" not in repr(entry) and "s3cret" not in entry.model_dump_json()
    assert "credentials" not in entry.model_dump()


async def test_request_over_authenticated_https_leaves_no_credential_anywhere(
    dev_env, tmp_path, task_queue, server, password, no_env_credentials, caplog
):
    """The whole workflow against the authenticated remote, then a scan of every file Honk
    wrote (workspace and mirror `.git/config` included), the logs and the workflow history."""
    import asyncio
    import shutil as _shutil

    from conftest import readable_history
    from honkstack import Stack

    from honk.workflows.contract import Stage

    stack = Stack(
        dev_env,
        tmp_path / "stack",
        task_queue,
        settings={"git_username": USERNAME, "git_password": password},
        script={
            "replies": [
                {
                    "when": "line 3",
                    "summary": "Added line 3.",
                    "edits": [{"path": "app.txt", "replace": "line 2\n", "with": "line 2\nline 3\n"}],
                }
            ]
        },
    )
    stack.registry_path = tmp_path / "https-honk.toml"
    host = server.url.removeprefix("http://")
    stack.registry_path.write_text(
        f'[repos.app]\nremote = "http://{USERNAME}:{password}@{host}/app.git"\napprovers = ["alice"]\n'
    )
    registry = load_registry(stack.registry_path, stack.settings.data_dir)
    assert password not in registry.repos["app"].remote and password not in repr(registry)
    stack.registry = registry
    stack.start_worker()
    try:
        with caplog.at_level(logging.DEBUG):
            from honk.changes import start_request

            handle = await start_request(
                dev_env.client, stack.settings, registry, repo="app", instruction="Add line 3", requester="bob"
            )
            await stack.wait_stage(handle.id, Stage.AWAITING_APPROVAL)
            await handle.signal("approve", {"by": "alice"})
            result = await asyncio.wait_for(handle.result(), 120)
        history = readable_history((await handle.fetch_history()).to_json())
    finally:
        await stack.close()
    assert result.stage == Stage.MERGED, result.last_error
    assert sh(server.root / "app.git", "show", "main:app.txt") == "line 1\nline 2\nline 3"
    assert "/app.git" in history, "the scan saw the request's remote"
    leaks = [
        str(p)
        for p in stack.settings.data_dir.rglob("*")
        if p.is_file() and not p.is_symlink() and password.encode() in p.read_bytes()
    ]
    assert leaks == [], "credentials written to disk"
    configs = list(stack.settings.data_dir.rglob("config"))
    assert any(".git" in str(c) or c.parent.name.endswith(".git") for c in configs)
    assert password not in history, "credentials in the workflow history"
    assert not [r for r in caplog.records if password in r.getMessage() or password in str(vars(r))]
    _shutil.rmtree(stack.settings.data_dir, ignore_errors=True)
