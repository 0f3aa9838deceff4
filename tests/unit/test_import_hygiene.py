"""Each entry point loads only the layers it needs; the layers themselves are checked by
import-linter (pyproject `[tool.importlinter]`), these pin what a process actually loads."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = ROOT / "honk"
LAYER_LINKS = {"workflows", "activities", "workers", "chat", "cli"}  # symlinks into honk/


def loaded_after(statement: str) -> set[str]:
    """Module names present after running `statement` in a fresh interpreter."""
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("module", ["honk.config.registry", "honk.config.settings"])
def test_reading_configuration_loads_neither_git_nor_activities(module):
    loaded = loaded_after(f"import {module}")
    assert "git" not in loaded, "reading configuration must not load GitPython"
    assert not {m for m in loaded if m.startswith("honk.activities")}
    assert not {m for m in loaded if m.startswith("honk.workers")}


def test_the_chat_service_loads_no_activity_and_no_workflow_code():
    loaded = loaded_after("import honk.chat.server")
    assert not {m for m in loaded if m.startswith("honk.activities")}
    assert "honk.workflows.change_request" not in loaded


def test_the_contract_is_a_leaf():
    allowed_roots = {"__future__", "datetime", "enum", "typing", "dataclasses", "collections", "pydantic"}
    for path in (ROOT / "workflows").glob("contract*.py"):
        for name in imports_of(path):
            root = name.split(".")[0]
            # A sibling contract module (e.g. contract_review) is held to the same rule by this glob.
            sibling = name.startswith("honk.workflows.contract")
            assert root in allowed_roots or sibling or name.startswith("temporalio.common"), (path.name, name)


def test_the_workflow_imports_only_the_contract_and_temporalio():
    for path in (ROOT / "workflows").glob("*.py"):
        for name in imports_of(path):
            if name.startswith("honk."):
                assert name == "honk.workflows" or name.startswith("honk.workflows."), (path.name, name)


def domain_files() -> list[Path]:
    return [p for p in DOMAIN.rglob("*.py") if p.relative_to(DOMAIN).parts[0] not in LAYER_LINKS]


def test_a_new_request_runs_only_the_workflow_module_afresh_in_its_sandbox():
    """Each request's sandbox executes change_request.py anew (no state shared between runs);
    the pure modules it uses come from the worker. A fresh copy of each cost every request
    ~5 ms before its first step, and memory for as long as it waits."""
    code = (
        "import asyncio, json, sys\n"
        "import temporalio.workflow\n"
        "from honk.workers.temporal import with_passthrough\n"
        "from honk.workflows.change_request import ChangeRequestWorkflow\n"
        "ran = []\n"
        "sys.addaudithook(lambda event, args: event == 'exec' and ran.append(getattr(args[0], 'co_filename', '')))\n"
        "defn = temporalio.workflow._Definition.must_from_class(ChangeRequestWorkflow)\n"
        "async def create():\n"
        "    with_passthrough(None).prepare_workflow(defn)  # builds one sandboxed instance\n"
        "asyncio.run(create())\n"
        "print(json.dumps(sorted({f for f in ran if f.endswith('.py')})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    ran = {
        Path(f).relative_to(ROOT).as_posix()
        for f in json.loads(out.stdout.strip().splitlines()[-1])
        if f.startswith(str(DOMAIN))
    }
    assert "honk/workflows/change_request.py" in ran, "the workflow module itself is loaded per request"
    assert ran <= {"honk/__init__.py", "honk/workflows/__init__.py", "honk/workflows/change_request.py"}, ran


def test_the_domain_library_never_uses_the_temporal_worker_api():
    forbidden = ("temporalio.activity", "temporalio.worker", "temporalio.exceptions.ApplicationError")
    offenders = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in domain_files()
        for name in imports_of(path)
        if name.startswith(forbidden)
    }
    assert not offenders


def test_activities_are_thin_adapters():
    for path in (ROOT / "activities").glob("*.py"):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines <= 150, f"{path.name} has {lines} lines: domain logic belongs in honk/"


def test_no_source_file_is_longer_than_450_lines():
    sources = domain_files()
    for folder in LAYER_LINKS:
        sources += list((ROOT / folder).rglob("*.py"))
    long = {
        str(p.relative_to(ROOT)): n for p in sources if (n := len(p.read_text(encoding="utf-8").splitlines())) > 450
    }
    assert not long


def test_every_domain_module_belongs_to_a_layer():
    """A new module under honk/ must be placed in the import-linter layers (pyproject)."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["id"] == "layers")["layers"]
    listed = {name.strip() for layer in layers for name in layer.replace("|", ":").split(":")}
    children = {
        f"honk.{p.stem if p.is_file() else p.name}"
        for p in DOMAIN.iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())
    }
    children -= {f"honk.{name}" for name in LAYER_LINKS | {"workflows"}}
    assert not children - listed, f"not in any import-linter layer: {sorted(children - listed)}"
