"""Every recorded history of ChangeRequestWorkflow replays against the current code.

A request may wait days for approval while new worker code is deployed; if the new code
issues different commands for the same history, the request is stuck (NondeterminismError).
The fixtures in tests/workflow/histories/ are real runs of every path of the workflow (merged, repaired
checks, request-changes rounds, cancel in each stage, expiry, merge repair, continue-as-new,
failures). Re-record them after a deliberate, patched change with
`HONK_RECORD_HISTORIES=1 .venv/bin/pytest tests/workflow/test_workflow.py` (see README "Changing the workflow safely").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from changed_workflows import ExtraNotification, SwappedCalls
from temporalio.client import WorkflowHistory
from temporalio.workflow import NondeterminismError

from honk.config.settings import Settings
from honk.workers.replay import replayer
from honk.workflows.change_request import ChangeRequestWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def load(path: Path) -> WorkflowHistory:
    text = path.read_text(encoding="utf-8")
    first = json.loads(text)["events"][0]
    workflow_id = first.get("workflowExecutionStartedEventAttributes", {}).get("workflowId") or path.stem
    return WorkflowHistory.from_json(workflow_id, text)


async def replay(path: Path, workflow_class: type = ChangeRequestWorkflow) -> None:
    """Replay through the workers' own configuration (converter, codec, interceptors)."""
    await replayer(Settings(encryption_keys=None), workflow_class).replay_workflow(load(path))


def test_every_path_has_a_recorded_history():
    names = {p.stem for p in HISTORIES}
    for path in (
        "happy_path",
        "checks_fail_then_pass",
        "request_changes",
        "cancel_in_each_waiting_stage",
        "approval_timeout",
        "merge_conflict",
        "continue_as_new",
        "checks_never_pass",
    ):
        assert any(path in name for name in names), f"no recorded history for {path}"


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_recorded_history_replays_on_the_current_code(path):
    await replay(path)


async def test_the_replay_check_catches_an_added_activity_call():
    happy = next(p for p in HISTORIES if "happy_path" in p.stem)
    await replay(happy)  # the real code replays...
    with pytest.raises(NondeterminismError):
        await replay(happy, ExtraNotification)  # ...the changed copy does not


async def test_the_replay_check_catches_swapped_activity_calls():
    happy = next(p for p in HISTORIES if "happy_path" in p.stem)
    with pytest.raises(NondeterminismError):
        await replay(happy, SwappedCalls)


def patched_with(path: Path, patch_id: str) -> bool:
    from conftest import payload_texts

    events = json.loads(path.read_text(encoding="utf-8"))["events"]
    return any(patch_id in text for e in events if "markerRecordedEventAttributes" in e for text in payload_texts(e))


async def test_the_example_patch_replays_before_and_after_it():
    """`bounded-waits` (workflows/limits.py): runs recorded before it take the old fixed
    timeouts, runs recorded after it carry its marker; both must replay."""
    from honk.workflows.patches import BOUNDED_WAITS

    after = [p for p in HISTORIES if patched_with(p, BOUNDED_WAITS)]
    before = [p for p in HISTORIES if "happy_path" in p.stem and p not in after]
    assert before and any("happy_path" in p.stem for p in after)
    for path in before + after:
        await replay(path)
