"""What confines the Claude Code backend (honk/agent/claude_code.py) to the workspace.

- Tools: only the file tools plus Honk's own MCP tools; everything else (shell, web, sub-agents)
  is disallowed by name, so a newer CLI that adds them to its base set still keeps them away.
- `refusal`: the PreToolUse hook's verdict on one call: paths (symlinks included) must resolve
  inside the workspace and never into `.git` (checked by `WorkspaceTools.resolve`, the same
  rules as the default backend); shell commands and pushes are refused.
- The CLI process sees a scrubbed environment: a temporary HOME and TMPDIR, the model endpoint
  and key from Honk's settings, and nothing else from the worker (a launcher execs the CLI with
  only the allowed variables, because the SDK hands its child the worker's whole environment).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from honk.agent.tools import ToolError, WorkspaceTools
from honk.commands import command_env
from honk.config.settings import Settings
from honk.errors import HonkError

SERVER = "honk"  # the in-process MCP server's name; its tools are mcp__honk__<name>
FILE_TOOLS = ("Read", "Edit", "Write", "Glob", "Grep")
HONK_TOOLS = tuple(f"mcp__{SERVER}__{name}" for name in ("run_checks", "delete_file", "finish"))
ALLOWED_TOOLS = frozenset(FILE_TOOLS + HONK_TOOLS)
# Never offered (the `tools` list already leaves them out); listed so a newer CLI that adds
# them to the base set still keeps them away from the model.
DISALLOWED_TOOLS = (
    "Bash",
    "BashOutput",
    "KillShell",
    "WebFetch",
    "WebSearch",
    "NotebookEdit",
    "Task",
    "Agent",
    "Skill",
    "SlashCommand",
    "TodoWrite",
    "ExitPlanMode",
)
# Calls that change files: they wait for a running checkpoint and mark the work dirty.
EDITING_TOOLS = frozenset({"Edit", "Write", "MultiEdit", "NotebookEdit", f"mcp__{SERVER}__delete_file"})
PATH_KEYS = ("file_path", "path", "notebook_path")
GLOB_MAGIC = re.compile(r"[*?\[{]")
PUSH = re.compile(r"\bpush\b", re.IGNORECASE)
# Set by the SDK for its own protocol with the CLI; nothing secret.
SDK_ENV = (
    "CLAUDE_CODE_ENTRYPOINT",
    "CLAUDE_AGENT_SDK_VERSION",
    "CLAUDE_CODE_SDK_READS_SESSION_STATE",
    "CLAUDE_AGENT_SDK_CLIENT_APP",
    "CLAUDE_CODE_ENABLE_SDK_FILE_CHECKPOINTING",
    "PWD",
)


# --------------------------------------------------------------------------- confinement


def _inside(path: Path, roots: tuple[Path, ...]) -> Path | None:
    """`path` (absolute) relative to the first root that contains it lexically, else None."""
    for root in roots:
        if path.is_relative_to(root):
            return path.relative_to(root)
    return None


def _check_path(tools: WorkspaceTools, roots: tuple[Path, ...], value: str) -> tuple[str, Path]:
    """Raise ToolError unless `value` names something inside the workspace, outside .git;
    the name relative to the workspace and where it resolves."""
    if value.startswith("~"):
        raise ToolError(f"{value!r} is outside the repository")
    raw = Path(value)
    if raw.is_absolute():
        relative = _inside(raw, roots)
        if relative is None:
            raise ToolError(f"{value!r} is outside the repository")
        value = relative.as_posix() or "."
    return value, tools.resolve(value)


def edited_path(tools: WorkspaceTools, args: dict[str, Any], roots: tuple[Path, ...]) -> str | None:
    """The workspace path an Edit/Write/MultiEdit/NotebookEdit call changes (as committed)."""
    value = args.get("file_path") or args.get("notebook_path")
    if not isinstance(value, str) or not value:
        return None
    raw = Path(value)
    if raw.is_absolute():
        relative = _inside(raw, tuple(dict.fromkeys((tools.root, *roots))))
        if relative is None:
            return None
        value = relative.as_posix()
    try:
        return tools.shown(tools.resolve(value))
    except ToolError:
        return None


def _pattern_root(pattern: str) -> str:
    """The literal directory a glob pattern starts from (`src/**/*.py` -> `src`)."""
    parts = Path(pattern).parts
    literal = []
    for part in parts:
        if GLOB_MAGIC.search(part):
            break
        literal.append(part)
    return str(Path(*literal)) if literal else "."


def refusal(tools: WorkspaceTools, tool: str, args: dict[str, Any], roots: tuple[Path, ...] = ()) -> str | None:
    """Why this tool call must not run, or None. The same rules as the default backend's tools."""
    roots = tuple(dict.fromkeys((tools.root, *roots)))
    if any(isinstance(args.get(k), str) for k in ("command", "cmd", "script")):
        if any(PUSH.search(str(args.get(k, ""))) for k in ("command", "cmd", "script")):
            return "Pushing is Honk's job: the agent never pushes (Honk commits and pushes your work)."
        return "There is no shell in this session; use the file tools and mcp__honk__run_checks."
    if tool not in ALLOWED_TOOLS:
        return f"{tool} is not available to Honk's agent; use the file tools and mcp__honk__run_checks."
    try:
        for key in PATH_KEYS:
            value = args.get(key)
            if value is None or value == "":
                continue
            if not isinstance(value, str):
                raise ToolError(f"{key} must be a string")
            relative, target = _check_path(tools, roots, value)
            if tool in EDITING_TOOLS:
                tools.changeable(relative, target)  # protected paths: the team's, not the agent's
        for key in ("pattern", "glob"):
            value = args.get(key)
            if tool == "Grep" and key == "pattern":
                continue  # a regular expression, not a path
            if isinstance(value, str) and value:
                if ".." in Path(value).parts or ".git" in Path(value).parts:
                    raise ToolError(f"the pattern {value!r} leaves the repository or enters .git")
                _check_path(tools, roots, _pattern_root(value))
        if tool == "MultiEdit" and not args.get("file_path"):
            raise ToolError("a path is required")
    except ToolError as exc:
        return f"Refused: {exc}. Work only inside the repository (never .git)."
    return None


# --------------------------------------------------------------------------- the CLI's environment


def cli_environment(settings: Settings, home: Path, budget_seconds: float) -> dict[str, str]:
    """What the CLI process may see: the scrubbed base every repository command gets, plus the
    model endpoint and key from Honk's settings (never from the worker's environment)."""
    if settings.anthropic_api_key is None and settings.anthropic_base_url is None:
        raise HonkError(
            "no model configured: set HONK_ANTHROPIC_API_KEY (or ANTHROPIC_API_KEY)",
            kind="ConfigError",
            retryable=False,
        )
    env = command_env(None, home)
    env.update(
        ANTHROPIC_API_KEY=settings.anthropic_api_key.get_secret_value() if settings.anthropic_api_key else "unset",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_AUTOUPDATER="1",
        DISABLE_TELEMETRY="1",
        DISABLE_ERROR_REPORTING="1",
        CLAUDE_CONFIG_DIR=str(home / ".claude"),
        CLAUDE_CODE_TMPDIR=env["TMPDIR"],
        CLAUDE_CODE_MAX_RETRIES="2",  # as the default backend's client; Temporal retries the rest
        API_TIMEOUT_MS=str(int(settings.model_timeout_s * 1000)),
        MCP_TOOL_TIMEOUT=str(int(max(budget_seconds, 60) * 1000)),  # checks may take minutes
    )
    if settings.anthropic_base_url:
        env["ANTHROPIC_BASE_URL"] = settings.anthropic_base_url
    return env


LAUNCHER = """\
#!{python} -IS
# Honk's launcher for the Claude Code CLI: the SDK hands its child the worker's whole
# environment; keep only what Honk allowed, then become the CLI.
import os, sys
KEEP = {keep!r}
env = {{k: v for k, v in os.environ.items() if k in KEEP}}
os.execve({cli!r}, [{cli!r}, *sys.argv[1:]], env)
"""


def write_launcher(directory: Path, cli: str, keep: set[str]) -> Path:
    """An executable that runs `cli` with only the variables named in `keep` (names only:
    the values travel through the process environment, never through a file or argv)."""
    path = directory / "claude"
    path.write_text(LAUNCHER.format(python=sys.executable, keep=sorted(keep), cli=cli), encoding="utf-8")
    path.chmod(0o700)
    return path
