"""Before a deploy: do the running requests still replay on this code?

Fetches the history of every running ChangeRequestWorkflow in the namespace and replays it
against the local workflow code with the same Temporal configuration the workers use. A
request that does not replay would be stuck after the deploy (NondeterminismError): guard the
change with `workflow.patched` (README "Changing the workflow safely") before deploying.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any

from temporalio.client import Client, WorkflowHistory
from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.worker import Replayer

from honk.config.settings import Settings
from honk.workers.temporal import HonkPlugin
from honk.workflows.change_request import ChangeRequestWorkflow
from honk.workflows.contract import WORKFLOW_TYPE


@functools.cache
def _runtime() -> Runtime:
    """The SDK core reports each nondeterministic run as a warning on stdout; send those to
    Python logging (stderr) instead, so `honk replay --json` prints only its verdicts."""
    forward = LogForwardingConfig(logger=logging.getLogger("temporalio.replay"))
    logging_config = LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"), forwarding=forward)
    return Runtime(telemetry=TelemetryConfig(logging=logging_config))


def replayer(settings: Settings, workflow: type = ChangeRequestWorkflow, **options: Any) -> Replayer:
    """A `Replayer` of the workflow with the same configuration as the workers (histories
    are encrypted with the same keys)."""
    return Replayer(workflows=[workflow], plugins=[HonkPlugin(settings)], runtime=_runtime(), **options)


@dataclass(frozen=True)
class ReplayVerdict:
    request_id: str
    run_id: str
    compatible: bool
    problem: str | None = None


async def running_histories(client: Client, *, limit: int = 10_000) -> list[WorkflowHistory]:
    query = f'WorkflowType = "{WORKFLOW_TYPE}" AND ExecutionStatus = "Running"'
    histories = []
    async for execution in client.list_workflows(query, limit=limit):
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        histories.append(await handle.fetch_history())
    return histories


async def check_running(
    client: Client, settings: Settings, *, workflow: type = ChangeRequestWorkflow, limit: int = 10_000
) -> list[ReplayVerdict]:
    """One verdict per running request: compatible with the local code or not, and why."""
    histories = await running_histories(client, limit=limit)
    check = replayer(settings, workflow)
    verdicts = []
    for history in histories:
        result = await check.replay_workflow(history, raise_on_replay_failure=False)
        failure = result.replay_failure
        run_id = history.events[0].workflow_execution_started_event_attributes.original_execution_run_id
        verdicts.append(
            ReplayVerdict(
                request_id=history.workflow_id,
                run_id=run_id,
                compatible=failure is None,
                problem=None if failure is None else f"{type(failure).__name__}: {failure}",
            )
        )
    return verdicts
