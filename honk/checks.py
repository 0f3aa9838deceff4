"""Checks (verifiers): the repository's own commands, run after each agent round.

Every check runs, even after one failed, so the agent sees all failures at once instead of
discovering them one repair round at a time. Full logs stay on disk as artifacts; the
outcome carries only the trimmed output that matters for a fix.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from temporalio.exceptions import CancelledError

from honk.check_results import environment_problem, passed_before, remember_passed
from honk.commands import run_command
from honk.config.repository import RepoConfig, RepoConfigError
from honk.config.settings import Settings
from honk.environments import EnvironmentProblem, prepare_environment, with_snippet
from honk.errors import HonkError, permanent
from honk.liveness import cancelled, heartbeating
from honk.redact import redact
from honk.sandbox import Sandbox
from honk.workflows.contract import CheckRun, ChecksOutcome, ChecksTask, WorkspaceRef
from honk.workspace import Workspaces, WorkspaceState
from honk.workspace.paths import safe_name

log = logging.getLogger(__name__)

OUTPUT_LIMIT = 4000  # characters of a check's output that reach the model


class WorkspaceProvider(Protocol):
    """What checks and builds need from `honk.workspace.Workspaces`."""

    def locked(self, ref: WorkspaceRef) -> AbstractContextManager[None]: ...

    def sync(self, ref: WorkspaceRef) -> WorkspaceState: ...

    def diff_is_empty(self, ref: WorkspaceRef) -> bool: ...

    def repo_config(self, ref: WorkspaceRef, base_sha: str | None = None) -> RepoConfig: ...

    def protected_changes(self, ref: WorkspaceRef) -> list[str]: ...

    def tree(self, ref: WorkspaceRef) -> str: ...

    def diff_stat(self, ref: WorkspaceRef) -> str: ...


def request_artifacts_dir(settings: Settings, request_id: str) -> Path:
    # `safe_name` leaves ordinary ids (workflow ids) as they are and keeps odd ones inside.
    return settings.artifacts_dir / safe_name(request_id)


def logs_dir(settings: Settings, request_id: str) -> Path:
    return request_artifacts_dir(settings, request_id) / "logs"


def config_error(exc: RepoConfigError) -> HonkError:
    """A broken `.honk.toml` does not fix itself on retry: fail the step at once."""
    return permanent(str(exc), "ConfigError")


class Checks:
    def __init__(self, settings: Settings, workspaces: WorkspaceProvider | None = None) -> None:
        self.settings = settings
        self.workspaces = workspaces or Workspaces(settings)

    def run(self, task: ChecksTask) -> ChecksOutcome:
        """Run every check of the base branch's configuration on the workspace's tree."""
        ref = task.workspace
        # Held throughout: another step of this request on this host (a parallel build
        # target) would otherwise reset and `git clean` the tree under the running checks.
        with self.workspaces.locked(ref):
            with heartbeating("preparing workspace"):
                synced = self.workspaces.sync(ref)
                root, head_sha = synced.path, synced.head_sha
                diff_empty = self.workspaces.diff_is_empty(ref)
            try:
                config = self.workspaces.repo_config(ref, base_sha=synced.base_sha)  # the base branch's, not the tree's
            except RepoConfigError as exc:
                raise config_error(exc) from None
            protected = self.workspaces.protected_changes(ref)
            stat = "" if diff_empty else self.workspaces.diff_stat(ref)
            tree = self.workspaces.tree(ref)
            reused = passed_before(self.settings, ref.repo, tree, config)
            if reused is None:
                runs = run_checks_in(self.settings, root, config, ref.repo, ref.request_id, f"attempt{task.attempt}")
                remember_passed(self.settings, ref.repo, tree, config, runs)
            else:
                runs = reused
                log.info("checks passed on this tree before; not run again", extra={"tree": tree})

        outcome = ChecksOutcome(
            passed=all(run.passed for run in runs),
            head_sha=head_sha,
            runs=runs,
            diff_empty=diff_empty,
            protected_changes=protected,
            reused=reused is not None,
            diff_stat=stat,
        )
        log.info(
            "checks finished",
            extra={
                "request_id": ref.request_id,
                "attempt": task.attempt,
                "head_sha": head_sha,
                "passed": outcome.passed,
                "failed": [run.name for run in runs if not run.passed],
                "detected": config.detected,
            },
        )
        return outcome


def run_checks_in(
    settings: Settings, root: Path, config: RepoConfig, repo: str, request_id: str, label: str
) -> list[CheckRun]:
    """Run every check on the tree at `root` as it is now, in the repository's environment
    (the agent's verifier and the merge step use this too). Raises `EnvironmentProblem` when
    the checks could not run for reasons of their environment rather than of the code."""
    prepared = prepare_environment(settings, repo, root, config)
    sandbox = prepared.sandbox(Sandbox.from_settings(settings), root)
    variables = prepared.variables(root)
    runs = []
    for spec in config.checks:
        if cancelled():
            raise CancelledError("checks cancelled")
        log_path = logs_dir(settings, request_id) / f"check-{spec.name}-{label}.log"
        result = run_command(
            spec.run,
            root,
            timeout_s=spec.timeout_seconds,
            env_extra={**variables, **spec.env},
            log_path=log_path,
            tail_limit=OUTPUT_LIMIT,
            sandbox=sandbox,
        )
        runs.append(
            CheckRun(
                name=spec.name,
                command=list(spec.run),
                exit_code=result.exit_code,
                duration_s=result.duration_s,
                output=redact(result.output_tail),
                log_path=str(log_path),
                timed_out=result.timed_out,
            )
        )
    problem = environment_problem(runs, root)
    if problem:
        log.warning("checks hit an environment problem", extra={"request_id": request_id, "problem": problem})
        raise EnvironmentProblem(with_snippet(redact(problem), config))
    return runs
