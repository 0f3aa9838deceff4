"""The `run_agent` activity: one agent round (honk/agent/run.py) inside Temporal."""

from __future__ import annotations

from temporalio import activity

from honk.activities.adapter import adapting
from honk.agent.backend import AgentBackend
from honk.agent.run import AgentRunner
from honk.config.settings import Settings
from honk.workflows.contract import ACTIVITY_AGENT, AgentOutcome, AgentTask


class AgentActivities:
    def __init__(self, settings: Settings, backend: AgentBackend | None = None) -> None:
        self.runner = AgentRunner(settings, backend)

    @property
    def backend(self) -> AgentBackend:
        return self.runner.backend

    @activity.defn(name=ACTIVITY_AGENT)
    def run_agent(self, task: AgentTask) -> AgentOutcome:
        with adapting():
            return self.runner.run(task, attempt=activity.info().attempt if activity.in_activity() else 1)
