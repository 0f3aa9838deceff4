"""What every agent backend gets and returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from honk.agent.pricing import Meter
from honk.agent.tools import WorkspaceTools
from honk.config.repository import AgentSpec
from honk.config.settings import Settings
from honk.workflows.contract import AgentTask


@dataclass(frozen=True)
class Budget:
    max_turns: int
    max_tokens: int
    max_dollars: float
    max_seconds: float

    @classmethod
    def of(cls, settings: Settings, repo: AgentSpec) -> Budget:
        """The repository may lower the service's limits, never raise them."""

        def lower(service: float, wanted: float | None) -> float:
            return min(service, wanted) if wanted is not None else service

        return cls(
            max_turns=int(lower(settings.agent_max_turns, repo.max_turns)),
            max_tokens=int(lower(settings.agent_max_tokens, repo.max_tokens)),
            max_dollars=lower(settings.agent_max_dollars, repo.max_dollars),
            max_seconds=lower(settings.agent_max_minutes, repo.max_minutes) * 60,
        )


@dataclass
class AgentContext:
    root: Path
    tools: WorkspaceTools
    budget: Budget
    instructions_file: str | None
    checkpoint: Callable[[int], None]  # commit and push the work so far
    changed_files: Callable[[], list[str]]
    beat: Callable[[int, Meter], None]
    resumed: str = ""
    meter: Meter | None = field(default=None)


@dataclass
class AgentRun:
    status: str  # finished | budget_exhausted
    summary: str
    meter: Meter
    turns: int
    model: str


class AgentBackend(Protocol):
    name: str

    def run(self, ctx: AgentContext, task: AgentTask) -> AgentRun: ...
