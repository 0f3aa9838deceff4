"""Build one target of the repository and collect its artifacts.

Build systems differ in how they are invoked (a command, gradle, xcodebuild, fastlane, expo),
not in what Honk does around them: check out the commit, run the steps with a log, collect
files by glob, hash them and read what they say about themselves. So each system is a small
`BuildDriver` (honk/builds/drivers.py), collecting the files is honk/builds/collect.py,
and everything else lives here.

Each target builds in its own checkout of the work branch, so the targets of one request
really build at the same time on one worker, and a build never disturbs the workspace the
agent and the checks use.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from pathlib import Path

from honk import telemetry
from honk.builds.collect import collect_artifacts
from honk.builds.drivers import (
    DRIVERS,
    BuildContext,
    BuildDriver,
    BuildSetupError,
    BuildStep,
    CommandDriver,
    fresh,
    reset_output,
)
from honk.checks import (
    WorkspaceProvider,
    config_error,
    logs_dir,
    request_artifacts_dir,
)
from honk.commands import CommandResult, run_command
from honk.config.repository import BuildSpec, RepoConfig, RepoConfigError
from honk.config.settings import Settings
from honk.environments import prepare_environment
from honk.errors import HonkError, permanent
from honk.liveness import beat, heartbeating
from honk.log_trim import trim_output
from honk.publish.store import ArtifactStore, build_prefix, make_store
from honk.redact import redact
from honk.sandbox import Sandbox
from honk.workflows.contract import (
    ArtifactInfo,
    BuildOutcome,
    BuildTask,
    WorkspaceRef,
)
from honk.workspace import Workspaces
from honk.workspace.paths import safe_name

__all__ = ["DRIVERS", "BuildContext", "BuildDriver", "Builder", "CommandDriver"]

log = logging.getLogger(__name__)

_CHUNK = 1024 * 1024  # log copying
FAILURE_TAIL_LIMIT = 4000


def build_workspace(ref: WorkspaceRef, target: str) -> WorkspaceRef:
    """The checkout a target builds in: the request's work branch, in a workspace of its own
    (git shares the objects, so it costs a checkout, not a clone)."""
    return ref.model_copy(update={"request_id": f"{ref.request_id}.build.{target}"})


class Builder:
    def __init__(
        self,
        settings: Settings,
        workspaces: WorkspaceProvider | None = None,
        drivers: dict[str, BuildDriver] | None = None,
        store: ArtifactStore | None = None,
    ) -> None:
        self.settings = settings
        self.workspaces = workspaces or Workspaces(settings)
        self.drivers = drivers or DRIVERS
        self._store = store

    def build(self, task: BuildTask) -> BuildOutcome:
        """Build one target at the work branch's head: a lone target in the request's own
        workspace (reset before and after), several side by side in checkouts of their own."""
        ref = task.workspace if task.in_place else build_workspace(task.workspace, task.target)
        # Held throughout: a retried attempt of this target on this host waits for the
        # first one instead of resetting its tree mid-build.
        with self.workspaces.locked(ref):
            try:
                with heartbeating("preparing workspace"):
                    synced = self.workspaces.sync(ref)
                config = self._config(ref, synced.base_sha)
                spec, driver = self._target(config, task.target)
                return self._build(task, ref, config, spec, driver, synced.path, synced.head_sha)
            finally:
                if not task.in_place:
                    self._release(ref)

    def _shared_store(self) -> ArtifactStore | None:
        if self._store is None and self.settings.artifact_store != "local":
            self._store = make_store(self.settings)
        return self._store if self._store is not None and self._store.shared else None

    def _stage(self, task: BuildTask, artifacts: list[ArtifactInfo]) -> list[ArtifactInfo]:
        """With a shared store (S3), upload from here: the publishing worker may run on
        another host (iOS targets build on Macs with their own task queue) and only links
        to what is already stored. Keys depend on request, build number and target only."""
        store = self._shared_store()
        if store is None:
            return artifacts
        prefix = build_prefix(task.workspace.request_id, task.build_number)
        staged = []
        for artifact in artifacts:
            key = f"{prefix}/{artifact.target}/{artifact.name}"
            beat({"uploading": artifact.name})
            store.put(
                key, Path(artifact.path), artifact.content_type or "application/octet-stream", sha256=artifact.sha256
            )
            staged.append(artifact.model_copy(update={"stored_key": key}))
        return staged

    def _release(self, ref: WorkspaceRef) -> None:
        """Hand the build checkout back (to the host's pool of clean workspaces)."""
        remove = getattr(self.workspaces, "remove", None)
        if remove is None:
            return
        try:
            with heartbeating("releasing build workspace"):
                remove(ref, delete_remote_branch=False)
        except Exception as exc:  # noqa: BLE001 - the build's result matters more
            log.warning(
                "could not release build workspace", extra={"request_id": ref.request_id, "error": repr(exc)[:300]}
            )

    def _config(self, ref: WorkspaceRef, base_sha: str) -> RepoConfig:
        try:
            return self.workspaces.repo_config(ref, base_sha=base_sha)  # the base branch's
        except RepoConfigError as exc:
            raise config_error(exc) from None

    def _target(self, config: RepoConfig, name: str) -> tuple[BuildSpec, BuildDriver]:
        try:
            spec = config.target(name)
        except RepoConfigError as exc:
            raise config_error(exc) from None
        driver = self.drivers.get(spec.driver)
        if driver is None:
            raise permanent(f"build target {spec.name!r}: no driver {spec.driver!r} on this worker", "ConfigError")
        return spec, driver

    @telemetry.traced(
        "build",
        attrs=lambda self, task, ref, config, spec, driver, *a: {
            "target": spec.name,
            "driver": driver.name,
            "build_number": task.build_number,
        },
        result=lambda outcome: {"artifacts": len(outcome.artifacts), "duration_s": outcome.duration_s},
    )
    def _build(
        self,
        task: BuildTask,
        ref: WorkspaceRef,
        config: RepoConfig,
        spec: BuildSpec,
        driver: BuildDriver,
        root: Path,
        head_sha: str,
    ) -> BuildOutcome:
        request_id = task.workspace.request_id
        log_path = logs_dir(self.settings, request_id) / f"build-{spec.name}-{task.build_number}.log"
        # The repository's check environment (toolchain, dependencies), read-only, offline.
        environment = prepare_environment(self.settings, task.workspace.repo, root, config)
        ctx = BuildContext(
            workspace=root,
            spec=spec,
            env={
                **environment.variables(root),
                # Honk's values win: the install page and the workflow show this build number.
                "HONK_BUILD_NUMBER": str(task.build_number),
                "HONK_REQUEST_ID": request_id,
                "HONK_COMMIT": head_sha,
            },
            log_path=log_path,
            build_number=task.build_number,
            cache_dir=self.settings.data_dir / "caches" / safe_name(task.workspace.repo),
        )
        fields = {"request_id": request_id, "target": spec.name, "build": task.build_number}
        log.info("build started", extra={**fields, "driver": driver.name, "head_sha": head_sha})
        started = time.monotonic()
        assert ctx.cache_dir is not None
        ctx.cache_dir.mkdir(parents=True, exist_ok=True)
        # The same box as checks, plus this repository's tool caches (Gradle, npm). Builds
        # that download dependencies need HONK_SANDBOX_NETWORK=true (or a warm cache).
        base = Sandbox.from_settings(self.settings)
        sandbox = environment.sandbox(dataclasses.replace(base, writable=(*base.writable, ctx.cache_dir)), root)
        run_steps(driver, ctx, sandbox)

        build_dir = request_artifacts_dir(self.settings, request_id) / f"build-{task.build_number}"
        artifacts = collect_artifacts(root, spec, build_dir / spec.name, driver.artifacts(spec))
        artifacts = self._stage(task, artifacts)
        duration = round(time.monotonic() - started, 3)
        log.info(
            "build finished",
            extra={
                **fields,
                "duration_s": duration,
                "artifacts": [a.name for a in artifacts],
                "versions": [a.version_name for a in artifacts if a.version_name],
            },
        )
        return BuildOutcome(
            target=spec.name,
            head_sha=head_sha,
            artifacts=artifacts,
            log_path=str(log_path),
            duration_s=duration,
        )


# --------------------------------------------------------------------------- running


def run_steps(driver: BuildDriver, ctx: BuildContext, sandbox: Sandbox | None = None) -> None:
    """Run the driver's steps in order, their output gathered in one log, within the
    target's timeout; raise `BuildFailed` with the relevant lines of the failing step."""
    spec = ctx.spec
    if driver.owns_output:
        reset_output(ctx)
    env = {**driver.env(ctx), **spec.env, **ctx.env}
    deadline = time.monotonic() + spec.timeout_seconds
    ctx.log_path.parent.mkdir(parents=True, exist_ok=True)
    ctx.log_path.write_bytes(b"")
    steps = driver.steps(ctx)
    for step in steps:
        remaining = deadline - time.monotonic()
        step_log = ctx.log_path.with_name(f".{ctx.log_path.stem}.{step.label}.log")
        result = run_command(
            step.argv,
            ctx.cwd,
            timeout_s=max(remaining, 1),
            env_extra=env,
            log_path=step_log,
            tail_limit=FAILURE_TAIL_LIMIT,
            sandbox=sandbox,
        )
        if step.capture:
            shutil.copyfile(step_log, fresh(ctx.cwd / ctx.out / step.capture))
        _append_log(ctx.log_path, step_log, step if len(steps) > 1 else None)
        if not result.ok:
            raise _build_failed(spec, step, result, ctx.log_path, several=len(steps) > 1)
    try:
        driver.finish(ctx)
    except (BuildSetupError, OSError, ValueError) as exc:
        raise permanent(
            f"build {spec.name!r} ({driver.name}) finished but its output is unusable: {exc}", "BuildFailed"
        ) from None


def _append_log(log_path: Path, step_log: Path, step: BuildStep | None) -> None:
    """Move a step's log into the target's log, under a header naming the step."""
    with open(log_path, "ab") as out:
        if step is not None:
            out.write(f"=== honk: step {step.label}: {' '.join(step.argv)}\n".encode())
        with open(step_log, "rb") as src:
            shutil.copyfileobj(src, out, _CHUNK)
    step_log.unlink(missing_ok=True)


def _build_failed(spec: BuildSpec, step: BuildStep, result: CommandResult, log_path: Path, several: bool) -> HonkError:
    """Builds are deterministic enough that retrying the same commit only wastes time; the
    workflow decides what to do (usually: report, or hand the log to the agent)."""
    why = f"exit code {result.exit_code}" if result.exit_code is not None else "killed"
    if result.error:
        why += f": {result.error}"
    where = f" at step {step.label} ({step.argv[0]})" if several else ""
    # The step's own log was merged into the target's: trim what the step printed from there.
    tail = redact(result.output_tail or trim_output(log_path, FAILURE_TAIL_LIMIT))
    message = f"build {spec.name!r} failed{where} ({why}); log {log_path}:\n{tail}"
    return permanent(message, "BuildFailed")
