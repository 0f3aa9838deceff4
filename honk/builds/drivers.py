"""Build drivers: how each build system is invoked, and where its outputs land.

A driver only turns a target of `.honk.toml` into command lines (`steps`), tool defaults for
the environment, and default artifact globs; running the steps, keeping the logs, collecting
and describing the artifacts is common to all (activities/build.py). So a driver is tested by
the exact argv it produces against a fake tool on PATH.

Preset outputs go to `<project_dir>/.honk-build/<target>/`: untracked, so the workspace reset
before every step removes them, and per target, so targets never overwrite each other.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from honk.builds.artifacts import OTA_CONFIG, OTA_METADATA
from honk.config.repository import BuildSpec
from honk.liveness import beat

log = logging.getLogger(__name__)

OUT_DIR = ".honk-build"


class BuildSetupError(Exception):
    """The tool ran but left something the driver needs in an unusable state."""


@dataclass(frozen=True)
class BuildContext:
    """Everything a driver needs to run one target's build."""

    workspace: Path  # the repository's root
    spec: BuildSpec
    env: dict[str, str]  # Honk's variables: HONK_BUILD_NUMBER, HONK_REQUEST_ID, HONK_COMMIT
    log_path: Path
    build_number: int = 1
    # Per-repository tool caches on this worker (Gradle, npm): each command gets a fresh
    # HOME, and downloading the world on every build would make builds take minutes more.
    cache_dir: Path | None = None

    @property
    def cwd(self) -> Path:
        return self.workspace / self.spec.project_dir

    @property
    def out(self) -> str:
        """The target's output directory, relative to `cwd` (as it appears in command lines)."""
        return f"{OUT_DIR}/{self.spec.name}"

    def cache(self, tool: str) -> str:
        base = self.cache_dir or (self.workspace / OUT_DIR / "cache")
        return str(base / tool)


@dataclass(frozen=True)
class BuildStep:
    label: str
    argv: list[str]
    # A file (relative to the output directory) that receives a copy of this step's output,
    # for a driver that reads what the tool printed (expo's app config).
    capture: str | None = None


class BuildDriver(Protocol):
    name: str
    owns_output: bool

    def steps(self, ctx: BuildContext) -> list[BuildStep]: ...

    def env(self, ctx: BuildContext) -> dict[str, str]:
        """Tool defaults; the target's `env` overrides them, Honk's variables override both."""
        ...

    def artifacts(self, spec: BuildSpec) -> list[str]:
        """Globs relative to the repository: the target's own, or where the tool writes."""
        ...

    def finish(self, ctx: BuildContext) -> None:
        """After every step succeeded: turn the tool's output into artifacts, if needed."""
        ...


class _Driver:
    """Defaults shared by the drivers."""

    name = ""
    default_globs: tuple[str, ...] = ()
    owns_output = True  # writes to `ctx.out`, which starts empty

    def env(self, ctx: BuildContext) -> dict[str, str]:
        return {}

    def artifacts(self, spec: BuildSpec) -> list[str]:
        return list(spec.artifacts or under(spec.project_dir, *self.default_globs))

    def finish(self, ctx: BuildContext) -> None:
        return None


def under(project_dir: str, *globs: str) -> list[str]:
    """Globs relative to the repository for paths relative to `project_dir`."""
    return [str(PurePosixPath(project_dir, g)) for g in globs]


APK_GLOBS = ("**/build/outputs/apk/**/*.apk",)
AAB_GLOBS = ("**/build/outputs/bundle/**/*.aab",)


class CommandDriver(_Driver):
    """Runs the argv from `.honk.toml` as given."""

    name = "command"
    owns_output = False

    def steps(self, ctx: BuildContext) -> list[BuildStep]:
        assert ctx.spec.run  # the spec validator requires it
        return [BuildStep("build", list(ctx.spec.run))]


class GradleDriver(_Driver):
    """`./gradlew <task>` (or `gradle` without a wrapper); APKs or AABs from build/outputs."""

    name = "gradle"

    def steps(self, ctx: BuildContext) -> list[BuildStep]:
        # `sh gradlew`: the wrapper is a POSIX script that often loses its exec bit.
        launcher = ["sh", "gradlew"] if (ctx.cwd / "gradlew").is_file() else ["gradle"]
        task = ctx.spec.task or "assembleDebug"
        # No daemon: it would outlive the build's process group (which Honk kills) and keep
        # one request's build state around for the next one.
        return [BuildStep("gradle", [*launcher, "--no-daemon", "--console=plain", task, *ctx.spec.args])]

    def env(self, ctx: BuildContext) -> dict[str, str]:
        return {
            "GRADLE_USER_HOME": ctx.cache("gradle"),
            # Gradle reads ORG_GRADLE_PROJECT_<name> as the project property <name>:
            # `versionCode = (findProperty("honkBuildNumber") ?: "1").toInteger()`.
            "ORG_GRADLE_PROJECT_honkBuildNumber": str(ctx.build_number),
        }

    def artifacts(self, spec: BuildSpec) -> list[str]:
        if spec.artifacts:
            return list(spec.artifacts)
        task = (spec.task or "assembleDebug").rsplit(":", 1)[-1]
        globs = (
            APK_GLOBS
            if task.startswith("assemble")
            else (AAB_GLOBS if task.startswith("bundle") else APK_GLOBS + AAB_GLOBS)
        )
        return under(spec.project_dir, *globs)


class XcodebuildDriver(_Driver):
    """`xcodebuild archive`, then `-exportArchive` with the target's export options → IPA.

    The build number goes in as CURRENT_PROJECT_VERSION, which is CFBundleVersion in
    Xcode's project templates, so every build installs as an update.
    """

    name = "xcodebuild"

    def steps(self, ctx: BuildContext) -> list[BuildStep]:
        spec = ctx.spec
        assert spec.scheme and spec.export_options
        container = (
            ["-workspace", spec.workspace] if spec.workspace else ["-project", spec.project] if spec.project else []
        )
        archive = f"{ctx.out}/{spec.scheme}.xcarchive"
        return [
            BuildStep(
                "archive",
                [
                    "xcodebuild",
                    *container,
                    "-scheme",
                    spec.scheme,
                    "-configuration",
                    spec.configuration or "Release",
                    "-destination",
                    spec.destination or "generic/platform=iOS",
                    "-archivePath",
                    archive,
                    "-derivedDataPath",
                    f"{ctx.out}/DerivedData",
                    *spec.args,
                    "archive",
                    f"CURRENT_PROJECT_VERSION={ctx.build_number}",
                ],
            ),
            BuildStep(
                "export",
                [
                    "xcodebuild",
                    "-exportArchive",
                    "-archivePath",
                    archive,
                    "-exportPath",
                    f"{ctx.out}/export",
                    "-exportOptionsPlist",
                    spec.export_options,
                ],
            ),
        ]

    def env(self, ctx: BuildContext) -> dict[str, str]:
        return {"NSUnbufferedIO": "YES"}  # output reaches the log as it happens

    def artifacts(self, spec: BuildSpec) -> list[str]:
        return list(spec.artifacts or under(spec.project_dir, f"{OUT_DIR}/{spec.name}/export/*.ipa"))


class FastlaneDriver(_Driver):
    """`fastlane <platform> <lane>` (through `bundle exec` when there is a Gemfile)."""

    name = "fastlane"

    def steps(self, ctx: BuildContext) -> list[BuildStep]:
        spec = ctx.spec
        assert spec.platform and spec.lane
        launcher = ["bundle", "exec", "fastlane"] if (ctx.cwd / "Gemfile").is_file() else ["fastlane"]
        return [BuildStep("fastlane", [*launcher, spec.platform, spec.lane, *spec.args])]

    def env(self, ctx: BuildContext) -> dict[str, str]:
        return {
            "CI": "1",
            "FASTLANE_SKIP_UPDATE_CHECK": "1",
            "FASTLANE_HIDE_CHANGELOG": "1",
            "FASTLANE_DISABLE_COLORS": "1",
            "FASTLANE_OPT_OUT_USAGE": "1",
            # Android lanes run gradle: the same cache and build number property as above.
            "GRADLE_USER_HOME": ctx.cache("gradle"),
            "ORG_GRADLE_PROJECT_honkBuildNumber": str(ctx.build_number),
        }

    def artifacts(self, spec: BuildSpec) -> list[str]:
        if spec.artifacts:
            return list(spec.artifacts)
        # gym writes the IPA to the project directory by default; gradle to build/outputs.
        globs = ("*.ipa", "build/*.ipa", "fastlane/build/*.ipa") if spec.platform == "ios" else APK_GLOBS + AAB_GLOBS
        return under(spec.project_dir, *globs)


class ExpoDriver(_Driver):
    """`expo export` (Hermes bundles for over-the-air updates) packed into one zip.

    The zip holds the export as `expo export` wrote it (`metadata.json`, `_expo/`,
    `assets/`) plus the public app config (`expoConfig.json`), from which the artifact's
    runtime version is read.
    """

    name = "expo"
    CONFIG_CAPTURE = "expo-config.out"

    def steps(self, ctx: BuildContext) -> list[BuildStep]:
        platforms = ctx.spec.platforms or ["android", "ios"]
        flags = [arg for p in platforms for arg in ("--platform", p)]
        # `npx --no`: never download expo at build time; it comes from the lockfile.
        return [
            BuildStep(
                "export", ["npx", "--no", "expo", "export", *flags, "--output-dir", f"{ctx.out}/dist", *ctx.spec.args]
            ),
            BuildStep(
                "config", ["npx", "--no", "expo", "config", "--json", "--type", "public"], capture=self.CONFIG_CAPTURE
            ),
        ]

    def env(self, ctx: BuildContext) -> dict[str, str]:
        return {"CI": "1", "EXPO_NO_TELEMETRY": "1", "npm_config_cache": ctx.cache("npm")}

    def artifacts(self, spec: BuildSpec) -> list[str]:
        return list(spec.artifacts or under(spec.project_dir, f"{OUT_DIR}/{spec.name}/{spec.name}-ota.zip"))

    def finish(self, ctx: BuildContext) -> None:
        out = ctx.cwd / ctx.out
        dist = out / "dist"
        if not (dist / OTA_METADATA).is_file():
            raise BuildSetupError(f"expo export wrote no {ctx.out}/dist/{OTA_METADATA}")
        config = parse_json_output((out / self.CONFIG_CAPTURE).read_text(errors="replace"))
        config_file = fresh(dist / OTA_CONFIG)
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True))
        zip_directory(dist, out / f"{ctx.spec.name}-ota.zip")


def parse_json_output(text: str) -> dict:
    """The JSON object a tool printed, ignoring notices printed around it (stdout and stderr
    share one log)."""
    decoder = json.JSONDecoder()
    for index, char in enumerate(text):
        if char == "{" and (index == 0 or text[index - 1] == "\n"):
            try:
                value, _ = decoder.raw_decode(text, index)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    raise BuildSetupError("`expo config --json` printed no JSON object")


def fresh(path: Path) -> Path:
    """`path`, with whatever the build left there removed: the worker writes it next, and a
    symlink planted by the repository's code must not redirect that write elsewhere."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
    return path


def zip_directory(source: Path, target: Path) -> None:
    """Zip a directory tree (files streamed from disk, stored in a stable order; symlinks,
    which could point anywhere on the worker, are left out)."""
    fresh(target)
    tmp = fresh(target.with_name(f".{target.name}.tmp"))
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(source.rglob("*")):
            if path.is_file() and not path.is_symlink():
                beat({"packing": path.name})
                archive.write(path, path.relative_to(source).as_posix())
    os.replace(tmp, target)


DRIVERS: dict[str, BuildDriver] = {
    d.name: d for d in (CommandDriver(), GradleDriver(), XcodebuildDriver(), FastlaneDriver(), ExpoDriver())
}


def reset_output(ctx: BuildContext) -> None:
    """A preset's output directory starts empty (a reused workspace may still hold one)."""
    out = ctx.cwd / ctx.out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
