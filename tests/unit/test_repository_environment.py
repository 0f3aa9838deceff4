"""Detection, snippets, commit subjects and exact staging: the pieces behind checks that run
the project's own toolchain and commits that hold only the change."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import git

from honk.config.detection import detect_repo_config, snippet
from honk.config.repository import RepoConfig
from honk.workflows.wording import commit_subject
from honk.workspace.sync import commit_paths


def test_detected_python_config_round_trips_as_honk_toml(tmp_path: Path) -> None:
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "pkg"\ndependencies = ["attrs>=22"]\n[project.optional-dependencies]\n'
        'test = ["pytest", "--index-url=http://evil"]\n'
    )
    (tmp_path / "requirements-test.txt").write_text("iniconfig\n")
    config = detect_repo_config(tmp_path)
    text = snippet(config)
    again = RepoConfig.model_validate(tomllib.loads(text))  # what the user would commit
    assert again.checks == config.checks and again.environment == config.environment
    install = config.environment.argvs()[1]
    assert "attrs>=22" in install and "-r" in install and "requirements-test.txt" in install
    assert not any(a.startswith("--index-url") for a in install), "a requirement is never an option"
    assert config.environment.env["PYTHONPATH"] == "${HONK_WORKSPACE}/src"


def test_node_detection_mounts_node_modules(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text('{"scripts": {"test": "node t.js"}}')
    (tmp_path / "package-lock.json").write_text("{}")
    config = detect_repo_config(tmp_path)
    assert config.environment.setup == ["npm ci"] and config.environment.workspace_mounts == ["node_modules"]
    assert [c.run for c in config.checks] == [["npm", "test"]]


def test_honk_detect_prints_the_snippet(tmp_path: Path) -> None:
    (tmp_path / "Makefile").write_text("test:\n\ttrue\n")
    out = subprocess.run(
        [sys.executable, "-m", "honk.cli", "detect", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "# detected: no .honk.toml" in out.stdout and 'run = ["make", "test"]' in out.stdout


def test_commit_subject_cuts_at_a_word_boundary() -> None:
    long = "fix the crash when the queue is empty and the consumer reconnects after a network partition heals"
    subject = commit_subject(long)
    assert len(subject) <= 72 and subject.startswith("Fix the crash")
    assert long.startswith(subject.rstrip("…").lower()[:1] + subject.rstrip("…")[1:])
    assert subject.rstrip("…").split()[-1] in long.split(), "no word cut in half"
    assert commit_subject("Rename the button.") == "Rename the button"


def test_commit_paths_stages_only_the_given_paths(tmp_path: Path) -> None:
    repo = git.Repo.init(tmp_path, initial_branch="main")
    (tmp_path / ".gitignore").write_text("ignored.txt\n")
    (tmp_path / "app.py").write_text("v1\n")
    (tmp_path / "gone.py").write_text("x\n")
    repo.git.add(A=True)
    repo.git.commit("-m", "base", author="T <t@t>", env={"GIT_COMMITTER_NAME": "T", "GIT_COMMITTER_EMAIL": "t@t"})
    (tmp_path / "app.py").write_text("v2\n")
    (tmp_path / "gone.py").unlink()
    (tmp_path / "ignored.txt").write_text("secret\n")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").write_text("#!\n")
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "out.bin").write_text("bin")
    nested = tmp_path / "vendor" / "lib"
    nested.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(nested)], check=True)
    (nested / "x.py").write_text("x\n")
    with repo.config_writer() as cw:
        cw.set_value("user", "name", "Honk").set_value("user", "email", "honk@example.invalid")

    paths = ["app.py", "gone.py", "ignored.txt", "vendor/lib/x.py"]
    assert commit_paths(repo, paths, "change") is not None
    committed = repo.git.show("--name-status", "--format=", "HEAD").splitlines()
    assert committed == ["M\tapp.py", "D\tgone.py"]
    assert commit_paths(repo, paths, "again") is None, "nothing left to commit"
