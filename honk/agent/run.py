"""One agent round: prepare the workspace, run the backend within its budget, review the
diff, commit and push.

Changes are committed after every editing turn and pushed at least every CHECKPOINT_PUSH_S
seconds and at the end, so a retried activity (another worker, after a crash) continues from
the pushed branch rather than from scratch.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace
from pathlib import Path

from honk import liveness, telemetry
from honk.agent.backend import AgentBackend, AgentContext, AgentRun, Budget
from honk.agent.judge import review
from honk.agent.messages import MessagesBackend, make_client
from honk.agent.pricing import Meter
from honk.agent.tools import WorkspaceTools
from honk.check_results import passed_before, remember_passed
from honk.checks import config_error, run_checks_in
from honk.config.protect import NOTHING_PROTECTED
from honk.config.repository import RepoConfig, RepoConfigError
from honk.config.settings import Settings
from honk.environments import prepare_environment
from honk.git.runner import open_repo, run_git
from honk.merge import absorb_base, rebase_onto_base
from honk.redact import redact
from honk.workflows.contract import AgentOutcome, AgentTask, ChecksOutcome, WorkspaceRef
from honk.workspace import Workspaces

log = logging.getLogger(__name__)

# Work in progress reaches the remote at most this often (and always at the round's end): a
# crashed worker's retry resumes from there, losing at most this much of the agent's work.
CHECKPOINT_PUSH_S = 15.0


def file_states(root: Path, paths: set[str]) -> tuple:
    """What git's own index compares to notice a changed file (size, times, inode), for
    each of `paths`; a file written by anyone since changes its ctime at least."""
    states: list[tuple[object, ...]] = []
    for rel in sorted(paths):
        try:
            st = os.lstat(root / rel)
        except OSError:
            states.append((rel, None))
            continue
        states.append((rel, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode))
    return tuple(states)


def make_backend(settings: Settings) -> AgentBackend:
    if settings.agent_backend == "claude-code":
        from honk.agent.claude_code import ClaudeCodeBackend  # optional extra

        return ClaudeCodeBackend(settings)
    return MessagesBackend(settings)


class AgentRunner:
    def __init__(self, settings: Settings, backend: AgentBackend | None = None) -> None:
        self.settings = settings
        self.workspaces = Workspaces(settings)
        self.backend = backend or make_backend(settings)

    def run(self, task: AgentTask, attempt: int = 1) -> AgentOutcome:
        """Run one round; `attempt` > 1 means an interrupted run of it may have left work."""
        ref = task.workspace
        synced = self.workspaces.sync(ref)
        root = synced.path
        liveness.beat({"round": task.round, "attempt": task.attempt, "turn": 0})
        conflicted: list[str] = []
        if task.update_base:
            task, conflicted = self._absorb_base(root, task)
        try:
            # The base branch's: an agent that rewrites `.honk.toml` changes nothing it obeys.
            config, protected = self.workspaces.base_config(ref, base_sha=None if task.update_base else synced.base_sha)
        except RepoConfigError as exc:
            raise config_error(exc) from None
        base_protected = protected
        if task.allow_protected_changes:
            protected = NOTHING_PROTECTED
        # Before the model spends anything: a broken environment fails the request here.
        prepare_environment(self.settings, ref.repo, root, config)
        meter = Meter()
        checks_run = 0
        tools: WorkspaceTools

        def run_checks() -> str:
            nonlocal checks_run
            checks_run += 1
            # Committed first (locally), so the result is keyed by the exact tree the CHECKING
            # stage will see and is not run again there.
            checkpoint_local(f"honk: checked (turn {checks_run})\n\n{task.instruction}")
            tree = self.workspaces.tree(ref)
            runs = run_checks_in(
                self.settings, root, config, ref.repo, ref.request_id, f"agent{task.invocation}-{checks_run}"
            )
            remember_passed(self.settings, ref.repo, tree, config, runs)
            report = ChecksOutcome(passed=all(r.passed for r in runs), head_sha="", runs=runs)
            if not runs:
                return "This repository has no checks configured."
            return "All checks passed." if report.passed else report.failure_report()

        committed_as: tuple | None = None  # the changed paths' file states at the last commit

        def checkpoint_local(message: str) -> str | None:
            nonlocal committed_as
            if committed_as is not None and file_states(root, tools.changed_paths) == committed_as:
                return None  # nothing the agent changed has been touched since it was committed
            sha = self.workspaces.commit_paths(ref, tools.changed_paths, message)
            committed_as = file_states(root, tools.changed_paths)
            return sha

        last_push = time.monotonic()  # a quick round pushes once, at its end

        def checkpoint(turn: int) -> None:
            nonlocal last_push
            committed = checkpoint_local(f"honk: work in progress (turn {turn})\n\n{task.instruction}")
            if committed and time.monotonic() - last_push >= CHECKPOINT_PUSH_S:
                self.workspaces.push(ref)
                last_push = time.monotonic()

        tools = WorkspaceTools(root, run_checks, protected=protected)
        tools.changed_paths.update(conflicted)  # the agent's commit concludes the merge
        ctx = AgentContext(
            root=root,
            tools=tools,
            budget=Budget.of(self.settings, config.agent),
            instructions_file=config.agent.instructions_file,
            checkpoint=checkpoint,
            changed_files=lambda: self.workspaces.changed_files(ref),
            beat=_beat,
            resumed=self._resumed(ref, attempt),
            meter=meter,
        )
        run = self.backend.run(ctx, task)
        judge_enabled = config.agent.judge if config.agent.judge is not None else self.settings.judge
        if run.status == "finished" and judge_enabled:
            run = self._judged(ctx, task, run, root)
        # The summary is model output: it goes to commits, pages, chat and history, so it is
        # redacted once, here, where it enters Honk.
        summary = redact(run.summary)
        committed = checkpoint_local(f"honk: round {task.round}, attempt {task.attempt}\n\n{summary}")
        head = self.workspaces.push(ref)
        changed = self.workspaces.changed_files(ref)
        status = run.status
        if status == "finished" and not committed and not changed:
            status = "no_changes"
        telemetry.annotate(
            backend=self.backend.name,
            status=status,
            turns=run.turns,
            tokens=meter.tokens,
            cost_usd=meter.total.cost_usd,
            changed_files=len(changed),
        )
        log.info(
            "agent run done",
            extra={
                "request_id": ref.request_id,
                "backend": self.backend.name,
                "status": status,
                "turns": run.turns,
                "tokens": meter.tokens,
                "cost_usd": meter.total.cost_usd,
            },
        )
        return AgentOutcome(
            status=status,
            summary=summary,
            changed_files=changed,
            head_sha=head,
            backend=self.backend.name,
            model=run.model or self.settings.model,
            turns=run.turns,
            usage=meter.total,
            usage_by_model=meter.by_model,
            checks=self._verified(ref, config, base_protected.among(changed), head) if status == "finished" else None,
        )

    def _verified(self, ref: WorkspaceRef, config: RepoConfig, protected: list[str], head: str) -> ChecksOutcome | None:
        """The agent's own passing check run of exactly the pushed tree, as the CHECKING stage
        would report it (so it need not run at all); None when the stage must run them."""
        runs = passed_before(self.settings, ref.repo, self.workspaces.tree(ref), config)
        if runs is None:
            return None
        diff_empty = self.workspaces.diff_is_empty(ref)
        return ChecksOutcome(
            passed=True,
            head_sha=head,
            runs=runs,
            diff_empty=diff_empty,
            protected_changes=protected,
            reused=True,
            diff_stat="" if diff_empty else self.workspaces.diff_stat(ref),
        )

    def _judged(self, ctx: AgentContext, task: AgentTask, run: AgentRun, root: Path) -> AgentRun:
        """Review the diff; one veto sends the reason back to the agent for one more round."""
        for veto_round in range(2):
            ctx.checkpoint(run.turns)
            verdict = review(
                make_client(self.settings),
                self.settings.model,
                task.instruction,
                self._diff(root, task),
                ctx.meter or Meter(),
            )
            if verdict.approve:
                return run
            log.info("judge vetoed", extra={"request_id": task.workspace.request_id, "reason": verdict.reason})
            if veto_round == 1:
                return AgentRun(
                    "vetoed", f"The reviewer vetoed the change: {verdict.reason}", run.meter, run.turns, run.model
                )
            ctx.budget = replace(ctx.budget, max_turns=max(1, ctx.budget.max_turns - run.turns))
            retry = task.model_copy(
                update={"feedback": [*task.feedback, f"A reviewer vetoed your change: {verdict.reason}"]}
            )
            again = self.backend.run(ctx, retry)
            run = AgentRun(again.status, again.summary, again.meter, run.turns + again.turns, again.model)
            if run.status != "finished":
                return run
        return run

    def _absorb_base(self, root: Path, task: AgentTask) -> tuple[AgentTask, list[str]]:
        ref = task.workspace
        with open_repo(root) as repo:
            conflicted = rebase_onto_base(repo, ref) if task.rebase else absorb_base(repo, ref)
        if not conflicted:
            return task, []
        return task.model_copy(
            update={
                "feedback": [
                    *task.feedback,
                    (
                        f"Your change was re-applied on the latest {ref.base_branch}"
                        if task.rebase
                        else f"The latest {ref.base_branch} is merged into your branch"
                    )
                    + f"; resolve the conflict markers in: {', '.join(conflicted)}",
                ]
            }
        ), conflicted

    def _diff(self, root: Path, task: AgentTask) -> str:
        with open_repo(root) as repo:
            return run_git(repo, "diff", "--no-color", f"origin/{task.workspace.base_branch}...HEAD", strip=False)

    def _resumed(self, ref, attempt: int) -> str:
        """On a retried attempt, tell the model what the interrupted run already did."""
        if attempt > 1:
            files = self.workspaces.changed_files(ref)
            return "Files already changed: " + (", ".join(files) if files else "none")
        return ""


def _beat(turn: int, meter: Meter) -> None:
    liveness.beat({"turn": turn, "tokens": meter.tokens, "cost_usd": meter.total.cost_usd})
