"""Every declared step is exactly one registered activity with the step's name and types, and
the worker registers nothing else. No server needed."""

from __future__ import annotations

import inspect
import typing

from temporalio.activity import _Definition

from honk.config.settings import Settings
from honk.workers.main import honk_activities
from honk.workflows.steps import STEPS


def test_every_step_is_one_registered_activity_with_its_types(tmp_path):
    registered = {}
    for fn in honk_activities(Settings(data_dir=tmp_path / "data", encryption_keys=None)):
        definition = _Definition.must_from_callable(fn)
        assert definition.name not in registered, f"{definition.name} registered twice"
        registered[definition.name] = fn

    assert sorted(registered) == sorted(step.name for step in STEPS), "registered activities are the declared steps"
    assert len({step.name for step in STEPS}) == len(STEPS), "each step declared once"
    for step in STEPS:
        fn = registered[step.name]
        hints = typing.get_type_hints(fn)
        params = list(inspect.signature(fn).parameters.values())
        assert len(params) == 1, f"{step.name} takes one argument"
        assert hints[params[0].name] is step.input, f"{step.name} takes {step.input.__name__}"
        assert hints["return"] is step.output, f"{step.name} returns {step.output.__name__}"
