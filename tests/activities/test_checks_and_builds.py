"""Checks and builds against a real git repository (a bare remote in tmp_path) through the
real `Workspaces`, with real subprocesses. The activity methods are called directly;
outside an activity the heartbeat helpers are no-ops."""

from __future__ import annotations

import hashlib
import json
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from repos import sh
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import ActivityEnvironment

from honk.activities.build import BuildActivities
from honk.activities.checks import CheckActivities
from honk.config.settings import Settings, load_settings
from honk.workflows.contract import BuildTask, ChecksTask, WorkspaceRef
from honk.workspace import Workspaces

PY = json.dumps(sys.executable)  # a TOML basic string holding this interpreter's path
REQUEST = "req-1"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Some checks here report through files beside the workspace: let the sandbox allow it.
    return load_settings(data_dir=tmp_path / "data", sandbox_writable=[tmp_path])


@pytest.fixture
def make_repo(tmp_path: Path):
    """make_repo(files) -> WorkspaceRef: `main` has a README and the `.honk.toml` of
    `files` (the team's configuration lives on the base branch), the work branch adds the
    other `files`; both are pushed to a bare remote."""

    def make(files: dict[str, str]) -> WorkspaceRef:
        src = tmp_path / "src"
        src.mkdir()
        sh(src, "init", "--quiet", "-b", "main")
        (src / "README.md").write_text("demo\n")
        files = dict(files)
        if ".honk.toml" in files:
            (src / ".honk.toml").write_text(textwrap.dedent(files.pop(".honk.toml")))
        sh(src, "add", "-A")
        sh(src, "commit", "--quiet", "-m", "base")
        sh(src, "checkout", "--quiet", "-b", f"honk/{REQUEST}")
        for name, content in files.items():
            path = src / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(content))
        sh(src, "add", "-A")
        sh(src, "commit", "--quiet", "--allow-empty", "-m", "agent round 1")
        remote = tmp_path / "remote.git"
        sh(tmp_path, "clone", "--quiet", "--bare", str(src), str(remote))
        return WorkspaceRef(
            request_id=REQUEST,
            repo="demo",
            remote=str(remote),
            base_branch="main",
            work_branch=f"honk/{REQUEST}",
        )

    return make


def checks_for(settings: Settings) -> CheckActivities:
    return CheckActivities(settings, Workspaces(settings))


def builds_for(settings: Settings) -> BuildActivities:
    return BuildActivities(settings, Workspaces(settings))


def remote_head(ref: WorkspaceRef) -> str:
    return sh(Path(ref.remote), "rev-parse", ref.work_branch)


# --------------------------------------------------------------------------- checks

CALC_TEST = """
    def add(a, b):
        return a - b


    def test_add():
        assert add(2, 2) == 4
"""


def test_checks_pass_and_fail_with_trimmed_output(settings: Settings, make_repo) -> None:
    ref = make_repo(
        {
            ".honk.toml": f"""
                [[checks]]
                name = "lint"
                run = [{PY}, "-c", "print('lint ok')"]

                [[checks]]
                name = "unit"
                run = [{PY}, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_calc.py"]

                [[checks]]
                name = "after"
                run = [{PY}, "-c", "print('still runs after a failure')"]
            """,
            "test_calc.py": CALC_TEST,
        }
    )
    outcome = checks_for(settings).run_checks(ChecksTask(workspace=ref, attempt=2))

    assert not outcome.passed
    assert outcome.head_sha == remote_head(ref)
    assert outcome.diff_empty is False
    assert [(r.name, r.passed) for r in outcome.runs] == [
        ("lint", True),
        ("unit", False),
        ("after", True),
    ]
    unit = outcome.runs[1]
    assert unit.exit_code == 1 and not unit.timed_out
    assert "assert 0 == 4" in unit.output  # pytest's "E   assert 0 == 4"
    assert "FAILED test_calc.py::test_add" in unit.output
    expected_log = settings.artifacts_dir / REQUEST / "logs" / "check-unit-attempt2.log"
    assert unit.log_path == str(expected_log) and expected_log.is_file()
    report = outcome.failure_report()
    assert "Check `unit` failed (exit code 1)" in report and "lint" not in report


def test_all_checks_pass(settings: Settings, make_repo) -> None:
    ref = make_repo(
        {
            ".honk.toml": f"""
                [[checks]]
                name = "unit"
                run = [{PY}, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_calc.py"]
            """,
            "test_calc.py": CALC_TEST.replace("a - b", "a + b"),
        }
    )
    outcome = checks_for(settings).run_checks(ChecksTask(workspace=ref, attempt=1))
    assert outcome.passed and len(outcome.runs) == 1 and outcome.runs[0].exit_code == 0
    assert outcome.failure_report() == ""


def test_no_checks_passes_with_zero_runs(settings: Settings, make_repo) -> None:
    ref = make_repo({".honk.toml": "checks = []\n"})
    outcome = checks_for(settings).run_checks(ChecksTask(workspace=ref, attempt=1))
    assert outcome.passed and outcome.runs == []
    assert outcome.head_sha == remote_head(ref)


def test_huge_output_is_trimmed_and_logged_in_full(settings: Settings, make_repo) -> None:
    ref = make_repo(
        {
            ".honk.toml": f"""
                [[checks]]
                name = "noisy"
                run = [{PY}, "noisy.py"]
            """,
            "noisy.py": """
                import sys
                for i in range(30000):
                    print(f"step {i:06d}: compiled unit {i} without problems")
                print("lib/queue.c:87:3: error: 'head' undeclared")
                for i in range(10000):
                    print(f"cleanup {i}")
                sys.exit(2)
            """,
        }
    )
    outcome = checks_for(settings).run_checks(ChecksTask(workspace=ref, attempt=1))
    run = outcome.runs[0]
    assert not outcome.passed and run.exit_code == 2
    assert Path(run.log_path).stat().st_size > 1024 * 1024
    assert len(run.output) <= 4000
    assert "lib/queue.c:87:3: error: 'head' undeclared" in run.output
    assert "cleanup 9999" in run.output
    assert "lines omitted" in run.output


def test_check_timeout_kills_the_tree(settings: Settings, make_repo, tmp_path: Path) -> None:
    # Found by its unusual argument: inside the sandbox's pid namespace its pid means nothing here.
    ref = make_repo(
        {
            ".honk.toml": """
                [[checks]]
                name = "hangs"
                run = ["sh", "-c", "sleep 123.457 & wait"]
                timeout_seconds = 1
            """,
        }
    )
    started = time.monotonic()
    outcome = checks_for(settings).run_checks(ChecksTask(workspace=ref, attempt=1))
    run = outcome.runs[0]
    assert run.timed_out and run.exit_code is None and not outcome.passed
    assert time.monotonic() - started < 15
    assert "timed out" in outcome.failure_report()
    assert _gone_soon("123.457"), "the check's sleeping child survived the timeout"


def _gone_soon(marker: str) -> bool:
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        alive = []
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            if marker in cmdline and "sh -c" not in cmdline and state != "Z":
                alive.append(proc.name)
        if not alive:
            return True
        time.sleep(0.05)
    return False


def test_check_environment_has_no_secrets(settings: Settings, make_repo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret-xyz")
    monkeypatch.setenv("HONK_SLACK_TOKEN", "xoxb-honk-secret")
    ref = make_repo(
        {
            ".honk.toml": f"""
                [[checks]]
                name = "env"
                run = [{PY}, "-c", "import os; print(sorted(os.environ.items()))"]
                env = {{ CI = "true" }}
            """,
        }
    )
    outcome = checks_for(settings).run_checks(ChecksTask(workspace=ref, attempt=1))
    assert outcome.passed
    log = Path(outcome.runs[0].log_path).read_text()
    assert "sk-ant-secret-xyz" not in log and "xoxb-honk-secret" not in log
    assert "ANTHROPIC_API_KEY" not in log and "HONK_" not in log
    assert "('CI', 'true')" in log


def test_check_command_not_found(settings: Settings, make_repo) -> None:
    ref = make_repo(
        {
            ".honk.toml": """
                [[checks]]
                name = "missing"
                run = ["honk-no-such-linter", "."]
            """,
        }
    )
    # Not a code failure the agent could fix: the request fails at once, saying what to set up.
    with pytest.raises(ApplicationError) as info:
        checks_for(settings).run_checks(ChecksTask(workspace=ref, attempt=1))
    assert info.value.type == "EnvironmentError" and info.value.non_retryable
    assert "command not found: honk-no-such-linter" in str(info.value)
    assert 'run = ["honk-no-such-linter", "."]' in str(info.value), "the .honk.toml snippet"


def test_invalid_config_is_a_non_retryable_config_error(settings: Settings, make_repo) -> None:
    ref = make_repo({".honk.toml": "[[checks]]\nname = 'x'\n"})  # `run` missing
    with pytest.raises(ApplicationError) as info:
        checks_for(settings).run_checks(ChecksTask(workspace=ref, attempt=1))
    assert info.value.type == "ConfigError" and info.value.non_retryable
    assert "run" in str(info.value)


# --------------------------------------------------------------------------- build

BUILD_SCRIPT = """
    import os, pathlib, sys
    number = os.environ["HONK_BUILD_NUMBER"]
    out = pathlib.Path("out")
    out.mkdir(exist_ok=True)
    (out / f"app-{number}.apk").write_bytes(
        f"apk {number} {os.environ['HONK_COMMIT']} {os.environ['HONK_REQUEST_ID']} "
        f"{os.environ['FLAVOR']}".encode() + bytes(range(256)) * 100
    )
    (out / "mapping.txt").write_text("a -> b\\n")
    (out / "ignored.tmp").write_text("not an artifact")
    print("built", number)
"""


def build_toml(run: str, artifacts: str = '"out/*.apk", "out/mapping.txt"') -> str:
    return f"""
        [[build]]
        name = "android"
        run = {run}
        artifacts = [{artifacts}]
        env = {{ FLAVOR = "debug" }}
    """


def test_build_collects_artifacts(settings: Settings, make_repo) -> None:
    ref = make_repo({".honk.toml": build_toml(f'[{PY}, "build.py"]'), "build.py": BUILD_SCRIPT})
    outcome = builds_for(settings).build(BuildTask(workspace=ref, target="android", build_number=7))

    head = remote_head(ref)
    assert outcome.target == "android" and outcome.head_sha == head
    dest = settings.artifacts_dir / REQUEST / "build-7" / "android"
    assert [a.name for a in outcome.artifacts] == ["app-7.apk", "mapping.txt"]
    for artifact in outcome.artifacts:
        path = Path(artifact.path)
        assert path.parent == dest
        data = path.read_bytes()
        assert artifact.sha256 == hashlib.sha256(data).hexdigest()
        assert artifact.size == len(data) and artifact.target == "android"
    apk = Path(outcome.artifacts[0].path).read_bytes()
    assert apk.startswith(f"apk 7 {head} {REQUEST} debug".encode())
    expected_log = settings.artifacts_dir / REQUEST / "logs" / "build-android-7.log"
    assert outcome.log_path == str(expected_log)
    assert "built 7" in expected_log.read_text()


def test_failing_build_is_build_failed_with_log_tail(settings: Settings, make_repo) -> None:
    script = """
        import sys
        for i in range(500):
            print(f"compiling {i}")
        print("src/Main.java:3: error: ';' expected")
        sys.exit(3)
    """
    ref = make_repo({".honk.toml": build_toml(f'[{PY}, "build.py"]'), "build.py": script})
    with pytest.raises(ApplicationError) as info:
        builds_for(settings).build(BuildTask(workspace=ref, target="android", build_number=1))
    error = info.value
    assert error.type == "BuildFailed" and error.non_retryable
    assert "exit code 3" in str(error)
    assert "src/Main.java:3: error: ';' expected" in str(error)
    assert "compiling 499" in str(error)


def test_build_without_matching_artifacts(settings: Settings, make_repo) -> None:
    ref = make_repo({".honk.toml": build_toml(f'[{PY}, "-c", "print(1)"]', artifacts='"dist/*.ipa"')})
    with pytest.raises(ApplicationError) as info:
        builds_for(settings).build(BuildTask(workspace=ref, target="android", build_number=1))
    assert info.value.type == "NoArtifacts" and info.value.non_retryable
    assert "dist/*.ipa" in str(info.value)


def test_build_unknown_target_is_config_error(settings: Settings, make_repo) -> None:
    ref = make_repo({".honk.toml": build_toml(f'[{PY}, "build.py"]'), "build.py": BUILD_SCRIPT})
    with pytest.raises(ApplicationError) as info:
        builds_for(settings).build(BuildTask(workspace=ref, target="ios", build_number=1))
    assert info.value.type == "ConfigError" and "ios" in str(info.value)


def test_build_skips_artifacts_outside_the_workspace(settings: Settings, make_repo, tmp_path: Path) -> None:
    secret = tmp_path / "worker-secret.txt"
    secret.write_text("do not publish")
    script = f"""
        import os, pathlib
        pathlib.Path("out").mkdir()
        os.symlink({str(secret)!r}, "out/leak.apk")
        pathlib.Path("out/app.apk").write_text("real")
    """
    ref = make_repo({".honk.toml": build_toml(f'[{PY}, "build.py"]'), "build.py": script})
    outcome = builds_for(settings).build(BuildTask(workspace=ref, target="android", build_number=2))
    assert [a.name for a in outcome.artifacts] == ["app.apk"]


def test_parallel_targets_do_not_clean_each_other(settings: Settings, make_repo) -> None:
    """Two targets of one request building at once on one host: `ensure` of the second
    must not wipe the first one's outputs mid-build (the workspace is held per build)."""
    script = """
        import os, pathlib, sys, time
        target = sys.argv[1]
        out = pathlib.Path("out") / target
        out.mkdir(parents=True)
        (out / "partial").write_text("started")
        time.sleep(1)
        (out / f"{target}.bin").write_text((out / "partial").read_text() + target)
    """
    toml = "".join(
        f"""
        [[build]]
        name = "{target}"
        run = [{PY}, "build.py", "{target}"]
        artifacts = ["out/{target}/*.bin"]
        """
        for target in ("android", "ios")
    )
    ref = make_repo({".honk.toml": toml, "build.py": script})
    activities = builds_for(settings)
    with ThreadPoolExecutor(2) as pool:
        futures = []
        for target in ("android", "ios"):
            task = BuildTask(workspace=ref, target=target, build_number=4)
            futures.append(pool.submit(activities.build, task))
            time.sleep(0.5)  # the second starts while the first is mid-build
        outcomes = [f.result(timeout=60) for f in futures]
    for outcome in outcomes:
        [artifact] = outcome.artifacts
        assert Path(artifact.path).read_text() == "started" + outcome.target


def test_cancelled_checks_stop_promptly(settings: Settings, make_repo, tmp_path: Path) -> None:
    ref = make_repo(
        {
            ".honk.toml": f"""
                [[checks]]
                name = "slow"
                run = ["sh", "-c", "sleep 121.457 & wait"]

                [[checks]]
                name = "never"
                run = ["sh", "-c", "touch {tmp_path}/second-ran"]
            """,
        }
    )
    env = ActivityEnvironment()
    activities = checks_for(settings)
    activities.workspaces.ensure(ref)  # clone outside the timed part
    threading.Timer(1.5, env.cancel).start()
    started = time.monotonic()
    with pytest.raises(CancelledError):
        env.run(activities.run_checks, ChecksTask(workspace=ref, attempt=1))
    assert time.monotonic() - started < 10
    assert _gone_soon("121.457")
    assert not (tmp_path / "second-ran").exists()
