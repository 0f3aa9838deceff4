"""What check runs mean beyond pass/fail: environment problems told apart from code
failures, and passing results remembered by the tree they ran on so the same tree is not
checked twice (the agent's verifier run, then the CHECKING stage)."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

from pydantic import ValidationError

from honk.config.repository import RepoConfig
from honk.config.settings import Settings
from honk.workflows.contract import CheckRun
from honk.workspace.paths import safe_name

log = logging.getLogger(__name__)

_LOG_TAIL_BYTES = 256 * 1024
_MISSING_MODULE = re.compile(r"ModuleNotFoundError: No module named '([A-Za-z0-9_.]+)'")
_NOT_FOUND = re.compile(r"(?:command not found: (\S+)|(\S+): (?:command )?not found$)", re.MULTILINE)
_NETWORK = re.compile(
    r"Temporary failure in name resolution|Network is unreachable|getaddrinfo (?:ENOTFOUND|EAI_AGAIN)"
    r"|Could not resolve host|NewConnectionError|Failed to establish a new connection|ENETUNREACH"
)


def _text(run: CheckRun) -> str:
    """The end of the full log (the trimmed output may have dropped the telling line)."""
    try:
        with open(run.log_path or "", "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - _LOG_TAIL_BYTES))
            return f.read().decode("utf-8", "replace") + "\n" + run.output
    except OSError:
        return run.output


def _in_workspace(module: str, root: Path) -> bool:
    """The missing module is the project's own: then the code is at fault, not the setup."""
    top = module.split(".")[0]
    return any((base / top).exists() or (base / f"{top}.py").exists() for base in (root, root / "src"))


def environment_problem(runs: list[CheckRun], root: Path) -> str | None:
    """Why the checks could not run, when the reason is their environment; else None."""
    for run in runs:
        if run.passed:
            continue
        text = _text(run)
        if run.exit_code == 127:
            found = _NOT_FOUND.search(text)
            program = next((g for g in found.groups() if g), run.command[0]) if found else run.command[0]
            return f"Check `{run.name}`: command not found: {program} (it is not installed in the sandbox)"
        missing = [m for m in _MISSING_MODULE.findall(text) if not _in_workspace(m, root)]
        if missing:
            return (
                f"Check `{run.name}`: the test environment lacks the Python module `{missing[0]}` "
                f"(ModuleNotFoundError: No module named '{missing[0]}'): add the package that provides it "
                "to the environment's setup or to the project's test requirements"
            )
        if _NETWORK.search(text):
            return (
                f"Check `{run.name}` tried to reach the network, which checks cannot do in the sandbox: "
                "fetch what it needs in [environment] setup, which may use the network"
            )
    return None


# --------------------------------------------------------------------------- reuse


def config_key(config: RepoConfig) -> str:
    body = json.dumps(
        {"checks": [c.model_dump() for c in config.checks], "environment": config.environment.model_dump()},
        sort_keys=True,
    )
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def _path(settings: Settings, repo: str, tree: str, config: RepoConfig) -> Path:
    return settings.data_dir / "check-results" / safe_name(repo) / f"{tree}-{config_key(config)}.json"


def remember_passed(settings: Settings, repo: str, tree: str, config: RepoConfig, runs: list[CheckRun]) -> None:
    if not tree or not runs or not all(r.passed for r in runs):
        return
    path = _path(settings, repo, tree, config)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([r.model_dump(mode="json") for r in runs]))
    tmp.replace(path)


def passed_before(settings: Settings, repo: str, tree: str, config: RepoConfig) -> list[CheckRun] | None:
    """The runs that passed on exactly this tree with exactly this configuration, if any."""
    path = _path(settings, repo, tree, config)
    try:
        runs = [CheckRun.model_validate(r) for r in json.loads(path.read_text())]
    except (OSError, ValueError, ValidationError):
        return None
    return runs if runs and all(r.passed for r in runs) else None
