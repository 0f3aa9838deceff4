"""The coding agent step: a backend edits the workspace, Honk commits and pushes the round.

Backends implement `AgentBackend`. The one here is the *scripted* model: a recorded list of
replies (file edits) chosen by matching the request, used by the offline demo and the tests
in place of Claude. It says so in every summary, so nobody mistakes it for a real model.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.merge import absorb_base
from activities.workspace import Workspaces, open_repo
from honk.settings import Settings
from workflows.contract import ACTIVITY_AGENT, AgentOutcome, AgentTask, Usage

log = logging.getLogger(__name__)

DEFAULT_SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "scripted-model.json"


@dataclass
class AgentRun:
    status: str
    summary: str
    usage: Usage


class AgentBackend(Protocol):
    name: str

    def run(self, root: Path, task: AgentTask) -> AgentRun: ...


# --------------------------------------------------------------------------- scripted model


class Edit(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    path: str
    replace: str | None = None
    with_: str | None = Field(None, alias="with")
    write: str | None = None
    delete: bool = False

    @model_validator(mode="after")
    def _one_kind(self) -> Edit:
        kinds = [self.replace is not None, self.write is not None, self.delete]
        if sum(kinds) != 1:
            raise ValueError(f"edit of {self.path!r} needs exactly one of replace/write/delete")
        if self.replace is not None and self.with_ is None:
            raise ValueError(f"edit of {self.path!r}: 'replace' needs 'with'")
        return self


class Reply(BaseModel):
    model_config = ConfigDict(extra="forbid")

    when: str = Field(description="regular expression searched in the instruction")
    round: int | None = None
    attempt: int | None = None
    feedback: str | None = Field(None, description="regular expression searched in the feedback")
    summary: str
    edits: list[Edit] = Field(default_factory=list)

    def matches(self, task: AgentTask) -> bool:
        if not re.search(self.when, task.instruction, re.IGNORECASE):
            return False
        if self.round is not None and self.round != task.round:
            return False
        if self.attempt is not None and self.attempt != task.attempt:
            return False
        if self.feedback is not None:
            return bool(re.search(self.feedback, "\n".join(task.feedback), re.IGNORECASE))
        return True


class Script(BaseModel):
    model_config = ConfigDict(extra="forbid")

    replies: list[Reply]


class ScriptedBackend:
    """Applies recorded edits; the demo's clearly labelled offline stand-in for Claude."""

    name = "scripted"

    def __init__(self, script_path: Path) -> None:
        self.script_path = script_path

    def load(self) -> Script:
        try:
            return Script.model_validate(json.loads(self.script_path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise ApplicationError(
                f"scripted model file {self.script_path} does not exist (set HONK_AGENT_SCRIPT)",
                type="ConfigError", non_retryable=True,
            ) from None
        except (ValueError, ValidationError) as exc:
            raise ApplicationError(
                f"scripted model file {self.script_path} is invalid: {exc}",
                type="ConfigError", non_retryable=True,
            ) from None

    def run(self, root: Path, task: AgentTask) -> AgentRun:
        reply = next((r for r in self.load().replies if r.matches(task)), None)
        if reply is None:
            return AgentRun("no_changes", "[scripted model] no recorded reply matches this request", Usage())
        for edit in reply.edits:
            apply_edit(root, edit)
        return AgentRun("finished", f"[scripted model] {reply.summary}", Usage())


def confined(root: Path, relative: str) -> Path:
    """Resolve a path the agent names, refusing anything outside the workspace or in .git."""
    candidate = (root / relative).resolve()
    root = root.resolve()
    if Path(relative).is_absolute() or not candidate.is_relative_to(root):
        raise ApplicationError(f"path {relative!r} is outside the workspace", type="ScriptError", non_retryable=True)
    if ".git" in candidate.relative_to(root).parts:
        raise ApplicationError(f"path {relative!r} is inside .git", type="ScriptError", non_retryable=True)
    return candidate


def apply_edit(root: Path, edit: Edit) -> None:
    target = confined(root, edit.path)
    if edit.delete:
        target.unlink(missing_ok=True)
        return
    if edit.write is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(edit.write, encoding="utf-8")
        return
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ApplicationError(f"{edit.path} does not exist", type="ScriptError", non_retryable=True) from None
    if edit.replace not in text:
        raise ApplicationError(
            f"{edit.path} does not contain the text to replace: {edit.replace!r}",
            type="ScriptError", non_retryable=True,
        )
    target.write_text(text.replace(edit.replace, edit.with_ or "", 1), encoding="utf-8")


# --------------------------------------------------------------------------- the activity


def make_backend(settings: Settings) -> AgentBackend:
    return ScriptedBackend(settings.agent_script or DEFAULT_SCRIPT)


class AgentActivities:
    def __init__(self, settings: Settings, backend: AgentBackend | None = None) -> None:
        self.workspaces = Workspaces(settings)
        self.backend = backend or make_backend(settings)

    @activity.defn(name=ACTIVITY_AGENT)
    def run_agent(self, task: AgentTask) -> AgentOutcome:
        ref = task.workspace
        root = self.workspaces.ensure(ref)
        activity.heartbeat({"round": task.round, "attempt": task.attempt})
        if task.update_base:
            with open_repo(root) as repo:
                conflicted = absorb_base(repo, ref)
            if conflicted:
                task = task.model_copy(update={"feedback": [
                    *task.feedback,
                    f"The latest {ref.base_branch} is merged into your branch; resolve the "
                    f"conflict markers in: {', '.join(conflicted)}",
                ]})
        result = self.backend.run(root, task)
        message = f"honk: round {task.round}, attempt {task.attempt}\n\n{result.summary}"
        committed = self.workspaces.commit_all(ref, message)
        head = self.workspaces.push(ref)
        changed = self.workspaces.changed_files(ref)
        log.info(
            "agent round done",
            extra={"request_id": ref.request_id, "backend": self.backend.name, "status": result.status,
                   "committed": committed, "changed_files": len(changed)},
        )
        status = result.status if committed or result.status != "finished" else "no_changes"
        return AgentOutcome(
            status=status,  # type: ignore[arg-type]
            summary=result.summary, changed_files=changed, head_sha=head,
            backend=self.backend.name, usage=result.usage,
        )
