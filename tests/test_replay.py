"""Histories recorded by the workflow before the typed-steps restructuring (happy path,
request changes with refusals, cancel, expiry, merge repairs, both runs of a continue-as-new)
replay unchanged through the replayer the workers' configuration builds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory

from honk.config.settings import Settings
from honk.workers.temporal import replayer

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_history_replays(path):
    history = WorkflowHistory.from_json(path.stem, json.loads(path.read_text()))
    result = await replayer(Settings(encryption_keys=None)).replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
