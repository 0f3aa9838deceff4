"""The `run_agent` activity: one agent round (honk/agent/run.py) inside Temporal."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from temporalio import activity

from honk.activities.adapter import adapting
from honk.agent.backend import AgentBackend
from honk.config.settings import Settings
from honk.workflows.contract import ACTIVITY_AGENT, AgentOutcome, AgentTask

if TYPE_CHECKING:
    from honk.agent.run import AgentRunner

# The agent's module brings the model client library, most of a worker's import time: it
# loads on first use, or from `honk.workers.main`'s warm-up once the worker polls.
AGENT_MODULE = "honk.agent.run"


class AgentActivities:
    def __init__(self, settings: Settings, backend: AgentBackend | None = None) -> None:
        self.settings = settings
        self._backend = backend
        self._runner: AgentRunner | None = None
        self._lock = threading.Lock()
        if settings.agent_backend != "messages" or backend is not None:
            self.runner  # noqa: B018 - an optional backend's missing extra fails the worker's start

    @property
    def runner(self) -> AgentRunner:
        with self._lock:
            if self._runner is None:
                from honk.agent.run import AgentRunner

                self._runner = AgentRunner(self.settings, self._backend)
            return self._runner

    @property
    def backend(self) -> AgentBackend:
        return self.runner.backend

    @activity.defn(name=ACTIVITY_AGENT)
    def run_agent(self, task: AgentTask) -> AgentOutcome:
        with adapting():
            return self.runner.run(task, attempt=activity.info().attempt if activity.in_activity() else 1)
