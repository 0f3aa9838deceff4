"""Every activity step of a change request, declared once: its name, what it takes and what
it returns. The workflow calls steps through these declarations, so a wrong argument or
result is a type error; a test checks the worker registers exactly these, with matching
annotations. Part of the contract: no side effects (the workflow sandbox imports it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from honk.workflows.contract import (
    ACTIVITY_AGENT,
    ACTIVITY_BUILD,
    ACTIVITY_CHECKS,
    ACTIVITY_CLEANUP,
    ACTIVITY_MERGE,
    ACTIVITY_NOTIFY,
    ACTIVITY_PREPARE,
    ACTIVITY_PUBLISH,
    AgentOutcome,
    AgentTask,
    BuildOutcome,
    BuildTask,
    ChecksOutcome,
    ChecksTask,
    CleanupTask,
    MergeOutcome,
    MergeTask,
    Notice,
    PreparedWorkspace,
    Published,
    PublishTask,
    WorkspaceRef,
)

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass(frozen=True)
class Step(Generic[In, Out]):
    """One activity: registered under `name`, called with an `input`, returns an `output`."""

    name: str
    input: type[In]
    output: type[Out]


PREPARE = Step(ACTIVITY_PREPARE, WorkspaceRef, PreparedWorkspace)
AGENT = Step(ACTIVITY_AGENT, AgentTask, AgentOutcome)
CHECKS = Step(ACTIVITY_CHECKS, ChecksTask, ChecksOutcome)
BUILD = Step(ACTIVITY_BUILD, BuildTask, BuildOutcome)
PUBLISH = Step(ACTIVITY_PUBLISH, PublishTask, Published)
NOTIFY = Step(ACTIVITY_NOTIFY, Notice, type(None))
MERGE = Step(ACTIVITY_MERGE, MergeTask, MergeOutcome)
CLEANUP = Step(ACTIVITY_CLEANUP, CleanupTask, type(None))

STEPS: tuple[Step, ...] = (PREPARE, AGENT, CHECKS, BUILD, PUBLISH, NOTIFY, MERGE, CLEANUP)
