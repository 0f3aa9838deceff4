"""The agent's tools against a hostile checkout: escapes are refused or skipped, never read."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from honk.agent.tools import WorkspaceTools

SECRET = "honk-escape-canary-7f3a9c"


@pytest.fixture
def hostile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> WorkspaceTools:
    """A workspace whose committed symlinks point at everything the agent must not see."""
    home, data = tmp_path / "home", tmp_path / "data"
    for secret_dir in (home / ".ssh", data / "secrets"):
        secret_dir.mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text(f"PRIVATE {SECRET}\n")
    (data / "secrets" / "link-key").write_text(f"KEY {SECRET}\n")
    monkeypatch.setenv("HONK_CANARY", SECRET)  # what /proc/self/environ would reveal
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / ".git").mkdir()
    (ws / ".git" / "config").write_text(f"[core]\n# {SECRET}\n")
    (ws / "src" / "app.py").write_text("print('hello')\n")
    links = {
        "root": "/",
        "home": str(home),
        "id_rsa": str(home / ".ssh" / "id_rsa"),
        "environ": "/proc/self/environ",
        "data": str(data),
        "gitdir": ".git",
        "gitconfig": ".git/config",
        "src/up": "../..",
    }
    for name, target in links.items():
        os.symlink(target, ws / name)
    os.mkfifo(ws / "pipe")  # reading it would block the activity forever
    return WorkspaceTools(ws, run_checks=lambda: "ok")


@pytest.mark.parametrize(
    "path",
    ["/etc/passwd", "../data/secrets/link-key", "src/../../home/.ssh/id_rsa", "root/etc/passwd", "home/.ssh/id_rsa"]
    + ["id_rsa", "environ", "data/secrets/link-key", "gitdir/config", "gitconfig", ".git/config", "src/up", "pipe"],
)
def test_read_write_edit_delete_refuse_escapes(hostile: WorkspaceTools, path: str) -> None:
    for name, args in (
        ("read_file", {"path": path}),
        ("write_file", {"path": path, "content": "x"}),
        ("edit_file", {"path": path, "old_text": "KEY", "new_text": "x"}),
        ("delete_file", {"path": path}),
    ):
        result = hostile.call(name, args)
        assert result.is_error, (name, path, result.text)
        assert SECRET not in result.text
    assert not hostile.changed


def test_list_and_search_skip_everything_outside(hostile: WorkspaceTools) -> None:
    listed = hostile.call("list_files", {})
    assert not listed.is_error and listed.text.splitlines() == ["src/app.py"]
    started = time.monotonic()
    for pattern in (SECRET, "PRIVATE", "HONK_CANARY", "root:", "."):
        found = hostile.call("search", {"pattern": pattern})
        assert SECRET not in found.text and "HONK_CANARY" not in found.text and "root:" not in found.text
    assert time.monotonic() - started < 10, "the fifo was opened"
    assert hostile.call("search", {"pattern": "hello"}).text == "src/app.py:1: print('hello')"
    for path in ("home", "root", "data", "id_rsa", "environ", "/", ".."):
        result = hostile.call("search", {"pattern": ".", "path": path})
        assert result.is_error or result.text == "no matches", (path, result.text)
        assert SECRET not in result.text


def test_catastrophic_pattern_returns_quickly(tmp_path: Path) -> None:
    (tmp_path / "long.txt").write_text("a" * 100_000 + "!\n")
    tools = WorkspaceTools(tmp_path, run_checks=lambda: "ok")
    started = time.monotonic()
    result = tools.call("search", {"pattern": "(a+)+$"})
    assert time.monotonic() - started < 2
    assert not result.is_error and result.text == "no matches"


def test_invalid_pattern_is_a_clear_error(tmp_path: Path) -> None:
    tools = WorkspaceTools(tmp_path, run_checks=lambda: "ok")
    for pattern in ("[", "(?=a)b", r"(a)\1"):
        result = tools.call("search", {"pattern": pattern})
        assert result.is_error and result.text.startswith("invalid regular expression"), result.text


def test_search_output_is_bounded(tmp_path: Path) -> None:
    (tmp_path / "many.txt").write_text("match " + "x" * 1000 + "\n" * 2 + ("match\n" * 5000))
    result = WorkspaceTools(tmp_path, run_checks=lambda: "ok").call("search", {"pattern": "match"})
    assert len(result.text) < 100 * 220 and "more matches not shown" in result.text
