"""Build one target of the repository and collect its artifacts.

Build systems differ in how they are invoked (a command, gradle, xcodebuild, fastlane, expo),
not in what Honk does around them: prepare the workspace, run, collect files by glob, hash
them. So each system is a small `BuildDriver`; only the `command` driver exists so far.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.checks import (
    WorkspaceProvider,
    config_error,
    logs_dir,
    request_artifacts_dir,
)
from activities.commands import CommandResult, run_command
from activities.liveness import beat, heartbeating
from activities.repo_config import BuildSpec, RepoConfigError, load_repo_config
from activities.workspace import Workspaces
from honk.settings import Settings
from workflows.contract import ACTIVITY_BUILD, ArtifactInfo, BuildOutcome, BuildTask

log = logging.getLogger(__name__)

_CHUNK = 1024 * 1024
FAILURE_TAIL_LIMIT = 4000


# --------------------------------------------------------------------------- drivers


@dataclass(frozen=True)
class BuildContext:
    """Everything a driver needs to run one target's build."""

    workspace: Path
    spec: BuildSpec
    env: dict[str, str]
    log_path: Path


class BuildDriver(Protocol):
    """Runs a build system. Collecting and hashing the artifacts is common to all drivers.

    A preset driver (gradle, xcodebuild, fastlane, expo) turns its own settings into a
    command line here; `BuildSpec.driver` names the driver to use.
    """

    name: str

    def run(self, ctx: BuildContext) -> CommandResult: ...


class CommandDriver:
    """Runs the argv from `.honk.toml` as given."""

    name = "command"

    def run(self, ctx: BuildContext) -> CommandResult:
        return run_command(
            ctx.spec.run,
            ctx.workspace,
            timeout_s=ctx.spec.timeout_seconds,
            env_extra=ctx.env,
            log_path=ctx.log_path,
            tail_limit=FAILURE_TAIL_LIMIT,
        )


DRIVERS: dict[str, BuildDriver] = {CommandDriver.name: CommandDriver()}


# --------------------------------------------------------------------------- activity


class BuildActivities:
    def __init__(
        self,
        settings: Settings,
        workspaces: WorkspaceProvider | None = None,
        drivers: dict[str, BuildDriver] | None = None,
    ) -> None:
        self.settings = settings
        self.workspaces = workspaces or Workspaces(settings)
        self.drivers = drivers or DRIVERS

    @activity.defn(name=ACTIVITY_BUILD)
    def build(self, task: BuildTask) -> BuildOutcome:
        ref = task.workspace
        # Targets build in parallel; two targets of one request on this host share the
        # workspace, and `ensure` resets and cleans it: one build at a time per workspace.
        with self.workspaces.locked(ref):
            with heartbeating("preparing workspace"):
                root = self.workspaces.ensure(ref)
                head_sha = self.workspaces.head(ref)
            spec, driver = self._target(root, task.target)
            return self._build(task, spec, driver, root, head_sha)

    def _target(self, root: Path, name: str) -> tuple[BuildSpec, BuildDriver]:
        try:
            spec = load_repo_config(root).target(name)
        except RepoConfigError as exc:
            raise config_error(exc) from None
        driver = self.drivers.get(spec.driver)
        if driver is None:
            raise ApplicationError(
                f"build target {spec.name!r}: no driver {spec.driver!r} on this worker",
                type="ConfigError",
                non_retryable=True,
            )
        return spec, driver

    def _build(
        self, task: BuildTask, spec: BuildSpec, driver: BuildDriver, root: Path, head_sha: str
    ) -> BuildOutcome:
        ref = task.workspace
        log_path = logs_dir(self.settings, ref.request_id) / (
            f"build-{spec.name}-{task.build_number}.log"
        )
        env = {
            **spec.env,
            # Honk's values win: the install page and the workflow show this build number.
            "HONK_BUILD_NUMBER": str(task.build_number),
            "HONK_REQUEST_ID": ref.request_id,
            "HONK_COMMIT": head_sha,
        }
        fields = {"request_id": ref.request_id, "target": spec.name, "build": task.build_number}
        log.info("build started", extra={**fields, "driver": driver.name, "head_sha": head_sha})
        result = driver.run(BuildContext(workspace=root, spec=spec, env=env, log_path=log_path))
        if not result.ok:
            raise _build_failed(spec, result)

        build_dir = request_artifacts_dir(self.settings, ref.request_id) / (
            f"build-{task.build_number}"
        )
        artifacts = collect_artifacts(root, spec, build_dir / spec.name)
        names = [a.name for a in artifacts]
        log.info(
            "build finished", extra={**fields, "duration_s": result.duration_s, "artifacts": names}
        )
        return BuildOutcome(
            target=spec.name,
            head_sha=head_sha,
            artifacts=artifacts,
            log_path=str(log_path),
            duration_s=result.duration_s,
        )


def _build_failed(spec: BuildSpec, result: CommandResult) -> ApplicationError:
    """Builds are deterministic enough that retrying the same commit only wastes time; the
    workflow decides what to do (usually: report, or hand the log to the agent)."""
    why = f"exit code {result.exit_code}" if result.exit_code is not None else "killed"
    if result.error:
        why += f": {result.error}"
    message = f"build {spec.name!r} failed ({why}); log {result.log_path}:\n{result.output_tail}"
    return ApplicationError(message, type="BuildFailed", non_retryable=True)


# --------------------------------------------------------------------------- artifacts


def collect_artifacts(root: Path, spec: BuildSpec, dest: Path) -> list[ArtifactInfo]:
    """Copy the files matching the spec's globs into `dest` (emptied first, so a retried
    build leaves no stale files) and describe them."""
    matches = match_artifacts(root, spec.artifacts)
    if not matches:
        raise ApplicationError(
            f"build {spec.name!r} produced no file matching {', '.join(spec.artifacts)}",
            type="NoArtifacts",
            non_retryable=True,
        )
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    artifacts = []
    for source in matches:
        name = _unique_name(source, root, dest)
        beat({"collecting": name})
        sha256, size = copy_and_hash(source, dest / name)
        artifacts.append(
            ArtifactInfo(
                target=spec.name, name=name, path=str(dest / name), sha256=sha256, size=size
            )
        )
    return artifacts


def match_artifacts(root: Path, patterns: list[str]) -> list[Path]:
    """Regular files under `root` matching any glob, once each, in a stable order.

    Matches are resolved, and anything that leads outside the workspace (a symlink to
    /etc or the worker's home) is skipped: the artifact gets published.
    """
    root = root.resolve()
    found: dict[Path, None] = {}
    for pattern in patterns:
        for path in sorted(root.glob(pattern)):
            real = path.resolve()
            if not real.is_relative_to(root):
                log.warning("artifact outside the workspace skipped", extra={"path": str(path)})
                continue
            if real.is_file():
                found.setdefault(real)
    return list(found)


def _unique_name(source: Path, root: Path, dest: Path) -> str:
    """The file name, or its workspace-relative path flattened when two files share a name."""
    if not (dest / source.name).exists():
        return source.name
    return "_".join(source.relative_to(root.resolve()).parts)


def copy_and_hash(source: Path, target: Path) -> tuple[str, int]:
    """Copy in chunks, hashing on the way: one read of a possibly large file."""
    digest = hashlib.sha256()
    size = 0
    with open(source, "rb") as src, open(target, "wb") as out:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
    shutil.copystat(source, target)
    return digest.hexdigest(), size


def sha256_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
