"""Build drivers against fake tools on PATH (exact argv, environment, artifact collection,
failures with the tail of the log), and two targets building in parallel in one request on
the real dev server."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from honkstack import Stack, needs_android
from repos import make_remote, sh
from temporalio.api.enums.v1 import EventType
from temporalio.exceptions import ApplicationError

from honk.activities.build import BuildActivities
from honk.config.settings import Settings, load_settings
from honk.workflows.contract import BuildTask, Stage, WorkspaceRef
from honk.workspace import Workspaces

REQUEST = "req-builds"
NUMBER = 91_500_000
COMMON_ENV = (
    "HONK_BUILD_NUMBER",
    "HONK_REQUEST_ID",
    "HONK_COMMIT",
    "FLAVOR",
    "AWS_SECRET_ACCESS_KEY",
    "HONK_S3_SECRET_ACCESS_KEY",
    "HOME",
    "CI",
)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # The fake tools record their calls beside the workspace and import the project (tests/):
    # the sandbox must show both (a checkout under /tmp is otherwise hidden by its fresh /tmp).
    return load_settings(data_dir=tmp_path / "data", sandbox_writable=[tmp_path, Path(__file__).parents[2]])


@pytest.fixture
def make_repo(tmp_path: Path):
    """make_repo(files) -> WorkspaceRef whose work branch holds `files` (a bare remote)."""

    def make(files: dict[str, str]) -> WorkspaceRef:
        remote = make_remote(
            tmp_path, {name: textwrap.dedent(content) for name, content in files.items()}, message="app"
        )
        sh(remote, "branch", f"honk/{REQUEST}", "main")
        return WorkspaceRef(
            request_id=REQUEST, repo="demo", remote=str(remote), base_branch="main", work_branch=f"honk/{REQUEST}"
        )

    return make


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """fake(name, behaviour) puts an executable `name` on PATH that records its argv, cwd and
    environment (one JSON line per call in `calls`), then runs `behaviour` (Python, with
    `args` = argv[1:])."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    record = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    # Worker secrets that must never reach a build.
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-xyz")
    monkeypatch.setenv("HONK_S3_SECRET_ACCESS_KEY", "honk-secret-xyz")

    class Tools:
        def fake(self, name: str, behaviour: str = "", directory: Path = bin_dir) -> Path:
            script = directory / name
            script.write_text(
                f"#!{sys.executable}\n"
                + textwrap.dedent(f"""\
                import json, os, sys
                args = sys.argv[1:]
                with open({str(record)!r}, "a") as f:
                    f.write(json.dumps({{"tool": {name!r}, "argv": args, "cwd": os.getcwd(),
                                        "env": dict(os.environ)}}) + "\\n")
            """)
                + textwrap.dedent(behaviour)
            )
            script.chmod(0o755)
            return script

        @property
        def calls(self) -> list[dict]:
            if not record.exists():
                return []
            return [json.loads(line) for line in record.read_text().splitlines()]

    return Tools()


def build(settings: Settings, ref: WorkspaceRef, target: str):
    return BuildActivities(settings, Workspaces(settings)).build(
        BuildTask(workspace=ref, target=target, build_number=NUMBER)
    )


def build_root(settings: Settings) -> Path:
    """Where a target's checkout lives while it builds (its own workspace)."""
    return settings.workspaces_dir


def assert_common_env(env: dict[str, str], settings: Settings) -> None:
    assert env["HONK_BUILD_NUMBER"] == str(NUMBER) and env["HONK_REQUEST_ID"] == REQUEST
    assert len(env["HONK_COMMIT"]) == 40
    assert "aws-secret-xyz" not in json.dumps(env) and "honk-secret-xyz" not in json.dumps(env)
    assert not [
        k for k in env if k.startswith("HONK_") and k not in ("HONK_BUILD_NUMBER", "HONK_REQUEST_ID", "HONK_COMMIT")
    ]
    assert env["HOME"] != os.environ.get("HOME")  # a scratch home per command


# --------------------------------------------------------------------------- gradle


GRADLE_OUTPUTS = """
    from pathlib import Path
    task = [a for a in args if not a.startswith("-")][0].rsplit(":", 1)[-1]
    out = Path("app/build/outputs")
    if task.startswith("assemble"):
        for flavor in ("release",):
            (out / "apk" / flavor).mkdir(parents=True, exist_ok=True)
            (out / "apk" / flavor / f"app-{flavor}.apk").write_bytes(b"PK apk " + os.environ["ORG_GRADLE_PROJECT_honkBuildNumber"].encode())
        (out / "mapping").mkdir(parents=True, exist_ok=True)
        (out / "mapping" / "mapping.txt").write_text("a -> b")
    if task.startswith("bundle"):
        (out / "bundle" / "release").mkdir(parents=True, exist_ok=True)
        (out / "bundle" / "release" / "app-release.aab").write_bytes(b"PK aab")
    print("BUILD SUCCESSFUL in 1s")
"""


def test_gradle_without_wrapper(settings, make_repo, tools) -> None:
    tools.fake("gradle", GRADLE_OUTPUTS)
    ref = make_repo(
        {
            ".honk.toml": """
        [[build]]
        name = "android"
        driver = "gradle"
        task = "assembleRelease"
        args = ["-Pflavor=paid", "--offline"]
        env = { FLAVOR = "paid" }
    """
        }
    )
    outcome = build(settings, ref, "android")

    [call] = tools.calls
    assert call["tool"] == "gradle"
    assert call["argv"] == ["--no-daemon", "--console=plain", "assembleRelease", "-Pflavor=paid", "--offline"]
    assert Path(call["cwd"]).parent == build_root(settings)
    env = call["env"]
    assert_common_env(env, settings)
    assert env["FLAVOR"] == "paid" and env["ORG_GRADLE_PROJECT_honkBuildNumber"] == str(NUMBER)
    assert env["GRADLE_USER_HOME"] == str(settings.data_dir / "caches" / "demo" / "gradle")

    [apk] = outcome.artifacts  # the APK only: not the mapping file, not an AAB
    assert apk.name == "app-release.apk" and apk.kind == "apk"
    assert Path(apk.path).read_bytes() == f"PK apk {NUMBER}".encode()
    assert Path(apk.path).parent == settings.artifacts_dir / REQUEST / f"build-{NUMBER}" / "android"
    assert "BUILD SUCCESSFUL" in Path(outcome.log_path).read_text()


def test_gradle_wrapper_in_a_subproject_builds_an_app_bundle(settings, make_repo, tools, tmp_path) -> None:
    wrapper_dir = tmp_path / "wrapper"
    wrapper_dir.mkdir()
    fake = tools.fake("gradlew", GRADLE_OUTPUTS, directory=wrapper_dir)
    ref = make_repo(
        {
            "mobile/gradlew": f'exec {sys.executable} {fake} "$@"\n',  # a wrapper without exec bit
            ".honk.toml": """
            [[build]]
            name = "play"
            driver = "gradle"
            project_dir = "mobile"
            task = ":app:bundleRelease"
        """,
        }
    )
    outcome = build(settings, ref, "play")
    [call] = tools.calls
    assert call["argv"] == ["--no-daemon", "--console=plain", ":app:bundleRelease"]
    assert Path(call["cwd"]).name == "mobile"
    assert [(a.name, a.kind) for a in outcome.artifacts] == [("app-release.aab", "aab")]


# --------------------------------------------------------------------------- xcodebuild

XCODEBUILD = """
    import plistlib, re, zipfile
    from pathlib import Path
    def opt(name):
        return args[args.index(name) + 1]
    if "archive" in args:
        version = [a for a in args if a.startswith("CURRENT_PROJECT_VERSION=")][0].split("=", 1)[1]
        app = Path(opt("-archivePath")) / "Products/Applications/HonkHello.app"
        app.mkdir(parents=True)
        (app / "Info.plist").write_bytes(plistlib.dumps({
            "CFBundleIdentifier": "dev.honk.hello", "CFBundleShortVersionString": "1.2.0",
            "CFBundleVersion": version, "CFBundleDisplayName": "Honk Hello",
            "MinimumOSVersion": "16.0"}, fmt=plistlib.FMT_BINARY))
        print("** ARCHIVE SUCCEEDED **")
    elif "-exportArchive" in args:
        assert Path(opt("-exportOptionsPlist")).is_file(), "export options missing"
        app = Path(opt("-archivePath")) / "Products/Applications/HonkHello.app"
        export = Path(opt("-exportPath"))
        export.mkdir(parents=True)
        with zipfile.ZipFile(export / "HonkHello.ipa", "w") as ipa:
            ipa.write(app / "Info.plist", "Payload/HonkHello.app/Info.plist")
        (export / "ExportOptions.plist").write_text("copied")
        print("** EXPORT SUCCEEDED **")
"""

IOS_TOML = """
    [[build]]
    name = "ios"
    driver = "xcodebuild"
    project_dir = "ios"
    workspace = "HonkHello.xcworkspace"
    scheme = "HonkHello"
    export_options = "ExportOptions.plist"
    args = ["-allowProvisioningUpdates"]
    task_queue = "honk-macos"
"""


def test_xcodebuild_archive_then_export(settings, make_repo, tools) -> None:
    tools.fake("xcodebuild", XCODEBUILD)
    ref = make_repo({".honk.toml": IOS_TOML, "ios/ExportOptions.plist": "<plist/>"})
    outcome = build(settings, ref, "ios")

    archive, export = tools.calls
    assert archive["argv"] == [
        "-workspace",
        "HonkHello.xcworkspace",
        "-scheme",
        "HonkHello",
        "-configuration",
        "Release",
        "-destination",
        "generic/platform=iOS",
        "-archivePath",
        ".honk-build/ios/HonkHello.xcarchive",
        "-derivedDataPath",
        ".honk-build/ios/DerivedData",
        "-allowProvisioningUpdates",
        "archive",
        f"CURRENT_PROJECT_VERSION={NUMBER}",
    ]
    assert export["argv"] == [
        "-exportArchive",
        "-archivePath",
        ".honk-build/ios/HonkHello.xcarchive",
        "-exportPath",
        ".honk-build/ios/export",
        "-exportOptionsPlist",
        "ExportOptions.plist",
    ]
    for call in (archive, export):
        assert Path(call["cwd"]).name == "ios" and call["env"]["NSUnbufferedIO"] == "YES"
        assert_common_env(call["env"], settings)

    [ipa] = outcome.artifacts  # not the ExportOptions.plist xcodebuild copies beside it
    assert (ipa.name, ipa.kind, ipa.bundle_id, ipa.version_name, ipa.version_code, ipa.app_name) == (
        "HonkHello.ipa",
        "ipa",
        "dev.honk.hello",
        "1.2.0",
        str(NUMBER),
        "Honk Hello",
    )
    log = Path(outcome.log_path).read_text()
    assert (
        log.index("=== honk: step archive")
        < log.index("ARCHIVE SUCCEEDED")
        < log.index("=== honk: step export")
        < log.index("EXPORT SUCCEEDED")
    )


def test_failing_xcodebuild_reports_the_step_and_the_tail_of_its_log(settings, make_repo, tools) -> None:
    tools.fake(
        "xcodebuild",
        """
        for i in range(3000):
            print(f"CompileSwift normal arm64 /src/File{i}.swift")
        print('/src/ios/HonkHello/Greeting.swift:12:5: error: cannot find \\'greting\\' in scope')
        print("error: No signing certificate \\"iOS Distribution\\" found")
        print("** ARCHIVE FAILED **")
        sys.exit(65)
    """,
    )
    ref = make_repo({".honk.toml": IOS_TOML, "ios/ExportOptions.plist": "<plist/>"})
    with pytest.raises(ApplicationError) as info:
        build(settings, ref, "ios")
    error = info.value
    message = str(error)
    assert error.type == "BuildFailed" and error.non_retryable
    assert "build 'ios' failed at step archive (xcodebuild) (exit code 65)" in message
    assert "Greeting.swift:12:5: error: cannot find 'greting' in scope" in message
    assert 'No signing certificate "iOS Distribution" found' in message
    assert "** ARCHIVE FAILED **" in message and "lines omitted" in message
    assert len(message) < 5000
    assert len(tools.calls) == 1, "export must not run after a failed archive"
    log = settings.artifacts_dir / REQUEST / "logs" / f"build-ios-{NUMBER}.log"
    assert str(log) in message and "File2999.swift" in log.read_text()  # the full log is kept


def test_missing_tool_is_a_clear_failure(settings, make_repo, tools) -> None:
    ref = make_repo(
        {
            ".honk.toml": """
        [[build]]
        name = "ios"
        driver = "fastlane"
        platform = "ios"
        lane = "beta"
    """
        }
    )
    with pytest.raises(ApplicationError) as info:
        build(settings, ref, "ios")
    assert info.value.type == "BuildFailed"
    assert "(exit code 127: command not found: fastlane)" in str(info.value)


# --------------------------------------------------------------------------- fastlane


def test_fastlane_through_bundler(settings, make_repo, tools, tmp_path) -> None:
    tools.fake(
        "bundle",
        f"""
        import shutil
        sys.path.insert(0, {str(Path(__file__).parents[1] / "support")!r})
        from sample_apps import make_ipa
        from pathlib import Path
        make_ipa(Path("HonkHello.ipa"), build=os.environ["HONK_BUILD_NUMBER"])
        print("fastlane.tools finished successfully")
    """,
    )
    ref = make_repo(
        {
            "Gemfile": "gem 'fastlane'\n",
            ".honk.toml": """
        [[build]]
        name = "ios"
        driver = "fastlane"
        platform = "ios"
        lane = "adhoc"
        args = ["configuration:Release", "skip_upload:true"]
    """,
        }
    )
    outcome = build(settings, ref, "ios")
    [call] = tools.calls
    assert call["argv"] == ["exec", "fastlane", "ios", "adhoc", "configuration:Release", "skip_upload:true"]
    env = call["env"]
    assert_common_env(env, settings)
    assert {
        k: env[k]
        for k in (
            "CI",
            "FASTLANE_SKIP_UPDATE_CHECK",
            "FASTLANE_HIDE_CHANGELOG",
            "FASTLANE_DISABLE_COLORS",
            "FASTLANE_OPT_OUT_USAGE",
        )
    } == dict.fromkeys(
        (
            "CI",
            "FASTLANE_SKIP_UPDATE_CHECK",
            "FASTLANE_HIDE_CHANGELOG",
            "FASTLANE_DISABLE_COLORS",
            "FASTLANE_OPT_OUT_USAGE",
        ),
        "1",
    )
    [ipa] = outcome.artifacts
    assert ipa.name == "HonkHello.ipa" and ipa.version_code == str(NUMBER) and ipa.bundle_id == "dev.honk.hello"


def test_fastlane_android_lane_collects_the_apk(settings, make_repo, tools) -> None:
    tools.fake(
        "fastlane",
        GRADLE_OUTPUTS.replace(
            'task = [a for a in args if not a.startswith("-")][0].rsplit(":", 1)[-1]', 'task = "assembleRelease"'
        ),
    )
    ref = make_repo(
        {
            ".honk.toml": """
        [[build]]
        name = "android"
        driver = "fastlane"
        platform = "android"
        lane = "build"
        env = { CI = "true" }
    """
        }
    )
    outcome = build(settings, ref, "android")
    [call] = tools.calls
    assert call["argv"] == ["android", "build"]
    assert call["env"]["CI"] == "true"  # the repository's env wins over the tool defaults
    assert [a.name for a in outcome.artifacts] == ["app-release.apk"]


# --------------------------------------------------------------------------- expo

NPX = """
    import json
    from pathlib import Path
    assert args[:2] == ["--no", "expo"], args
    if args[2] == "export":
        out = Path(args[args.index("--output-dir") + 1])
        platforms = [args[i + 1] for i, a in enumerate(args) if a == "--platform"]
        meta = {"version": 0, "bundler": "metro", "fileMetadata": {}}
        for p in platforms:
            bundle = out / "_expo/static/js" / p / f"index-{p}.hbc"
            bundle.parent.mkdir(parents=True, exist_ok=True)
            bundle.write_bytes(b"\\xc6\\x1f\\xbc\\x03hermes " + p.encode())
            meta["fileMetadata"][p] = {"bundle": str(bundle.relative_to(out)), "assets": []}
        (out / "assets").mkdir(exist_ok=True)
        (out / "assets" / "0a1b2c").write_bytes(b"png")
        (out / "metadata.json").write_text(json.dumps(meta))
        print("Exported:", out)
    elif args[2] == "config":
        print("warning: the app config uses a deprecated field", file=sys.stderr, flush=True)
        print(json.dumps({"name": "Honk Hello", "slug": "honk-hello", "version": "2.3.0",
                          "runtimeVersion": {"policy": "appVersion"},
                          "android": {"package": "dev.honk.hello"},
                          "ios": {"bundleIdentifier": "dev.honk.hello"}}, indent=2))
"""


def test_expo_export_becomes_an_ota_bundle(settings, make_repo, tools) -> None:
    tools.fake("npx", NPX)
    ref = make_repo(
        {
            "app/package.json": "{}",
            ".honk.toml": """
        [[build]]
        name = "ota"
        driver = "expo"
        project_dir = "app"
        env = { EXPO_OFFLINE = "1" }
    """,
        }
    )
    outcome = build(settings, ref, "ota")
    export, config = tools.calls
    assert export["argv"] == [
        "--no",
        "expo",
        "export",
        "--platform",
        "android",
        "--platform",
        "ios",
        "--output-dir",
        ".honk-build/ota/dist",
    ]
    assert config["argv"] == ["--no", "expo", "config", "--json", "--type", "public"]
    for call in (export, config):
        env = call["env"]
        assert_common_env(env, settings)
        assert Path(call["cwd"]).name == "app"
        assert (env["CI"], env["EXPO_NO_TELEMETRY"], env["EXPO_OFFLINE"]) == ("1", "1", "1")
        assert env["npm_config_cache"] == str(settings.data_dir / "caches" / "demo" / "npm")

    [bundle] = outcome.artifacts
    assert (bundle.name, bundle.kind, bundle.platforms, bundle.runtime_version) == (
        "ota-ota.zip",
        "ota",
        ["android", "ios"],
        "2.3.0",
    )
    assert (bundle.app_name, bundle.version_name, bundle.package, bundle.bundle_id) == (
        "Honk Hello",
        "2.3.0",
        "dev.honk.hello",
        "dev.honk.hello",
    )
    with zipfile.ZipFile(bundle.path) as z:
        assert sorted(z.namelist()) == [
            "_expo/static/js/android/index-android.hbc",
            "_expo/static/js/ios/index-ios.hbc",
            "assets/0a1b2c",
            "expoConfig.json",
            "metadata.json",
        ]


def test_expo_single_platform(settings, make_repo, tools) -> None:
    tools.fake("npx", NPX)
    ref = make_repo(
        {
            ".honk.toml": """
        [[build]]
        name = "android-update"
        driver = "expo"
        platforms = ["android"]
        args = ["--dump-sourcemap"]
    """
        }
    )
    outcome = build(settings, ref, "android-update")
    assert tools.calls[0]["argv"] == [
        "--no",
        "expo",
        "export",
        "--platform",
        "android",
        "--output-dir",
        ".honk-build/android-update/dist",
        "--dump-sourcemap",
    ]
    assert outcome.artifacts[0].platforms == ["android"]


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ('name = "x"\ndriver = "xcodebuild"\nexport_options = "E.plist"', "needs scheme"),
        ('name = "x"\ndriver = "gradle"\nscheme = "App"', "`scheme` is a setting of the xcodebuild driver"),
        ('name = "x"\nrun = ["make"]', "needs artifacts"),
        ('name = "x"\nrun = ["make"]\nartifacts = ["a"]\nargs = ["-v"]', "`args` is for the preset drivers"),
        ('name = "x"\ndriver = "fastlane"\nplatform = "ios"\nlane = "-x"', "not a valid name"),
        ('name = "x"\ndriver = "gradle"\nproject_dir = "../elsewhere"', "must stay inside the repository"),
        ('name = "x"\ndriver = "cmake"', "driver"),
    ],
)
def test_invalid_targets_are_config_errors(settings, make_repo, toml, problem) -> None:
    ref = make_repo({".honk.toml": "[[build]]\n" + toml + "\n"})
    with pytest.raises(ApplicationError) as info:
        build(settings, ref, "x")
    assert info.value.type == "ConfigError" and info.value.non_retryable
    assert problem in str(info.value)


# --------------------------------------------------------------------------- in a request


SECOND_TARGET = """
[[build]]
name = "notes"
driver = "command"
run = ["python3", "-c", "import os, pathlib, time; time.sleep(3); pathlib.Path('build').mkdir(exist_ok=True); pathlib.Path('build/notes-%s.txt' % os.environ['HONK_BUILD_NUMBER']).write_text('release notes')"]
artifacts = ["build/notes-*.txt"]
"""


@needs_android
async def test_two_targets_build_in_parallel_in_one_request(dev_env, tmp_path, task_queue) -> None:
    def add_target(app: Path) -> None:
        with (app / ".honk.toml").open("a") as f:
            f.write(SECOND_TARGET)

    stack = Stack(dev_env, tmp_path, task_queue, edit_app=add_target)
    stack.start_worker()
    try:
        handle = await stack.request("Change the greeting to say 'Hello from the bus!'")
        waiting = await stack.wait_stage(handle.id, Stage.AWAITING_APPROVAL, timeout=120)

        messages = [e.message for e in waiting.timeline]
        assert any(m.startswith("Building android, notes") for m in messages), messages
        built = {m.split(" ")[1]: m for m in messages if m.startswith("Built ")}
        assert set(built) == {"android", "notes"}
        assert "dev.honk.hello 1.0." in built["android"]
        assert {a.target for a in waiting.artifacts} == {"android", "notes"}
        apk = next(a for a in waiting.artifacts if a.kind == "apk")
        assert apk.version_code and int(apk.version_code) > 90_000_000  # the request's build number

        # Both build activities ran at the same time (the history's own timestamps).
        spans: dict[str, list] = {}
        scheduled: dict[int, str] = {}
        async for event in handle.fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                attrs = event.activity_task_scheduled_event_attributes
                if attrs.activity_type.name == "build_target":
                    scheduled[event.event_id] = attrs.activity_id
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                attrs = event.activity_task_started_event_attributes
                if attrs.scheduled_event_id in scheduled:
                    spans[scheduled[attrs.scheduled_event_id]] = [event.event_time.ToDatetime()]
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                attrs = event.activity_task_completed_event_attributes
                if attrs.scheduled_event_id in scheduled:
                    spans[scheduled[attrs.scheduled_event_id]].append(event.event_time.ToDatetime())
        assert len(spans) == 2
        (start_a, end_a), (start_b, end_b) = spans.values()
        assert max(start_a, start_b) < min(end_a, end_b), f"builds did not overlap: {spans}"

        await handle.signal("cancel", {"by": "bob"})
        assert (await asyncio.wait_for(handle.result(), 60)).stage == Stage.CANCELLED
    finally:
        await stack.close()
