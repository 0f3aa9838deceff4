"""The second agent backend: Claude Code, driven through `claude-agent-sdk` (optional extra).

Claude Code runs as a subprocess in the workspace with the same limits as the default backend:

- Tools: only the file tools (Read, Edit, Write, Glob, Grep) plus Honk's own in-process MCP
  tools `run_checks`, `delete_file` and `finish`, which run through `WorkspaceTools` (the same
  confined code and the same trimmed check output as the default backend). No shell, no web.
- A PreToolUse hook refuses every other call, every path outside the workspace or inside
  `.git`, and shell commands; the CLI sees a scrubbed environment and loads no settings,
  hooks or plugins from the repository (honk/agent/claude_code_confinement.py).
- Budgets: turns (`max_turns`), dollars (`max_budget_usd` and Honk's meter), tokens and wall
  clock (the run is interrupted); the partial work is committed and pushed either way.
- Heartbeats on every message, checkpoints (commit + push) after turns that edited files,
  usage and cost from the CLI's result metered per model, errors mapped like `model_error`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.exceptions import CancelledError

from honk import liveness
from honk.agent.backend import AgentContext, AgentRun
from honk.agent.claude_code_confinement import (
    ALLOWED_TOOLS,
    DISALLOWED_TOOLS,
    EDITING_TOOLS,
    FILE_TOOLS,
    SDK_ENV,
    SERVER,
    cli_environment,
    edited_path,
    refusal,
    write_launcher,
)
from honk.agent.claude_code_reports import MessageUsage, result_error, usage_of
from honk.agent.pricing import Meter
from honk.agent.prompt import system_prompt, user_prompt
from honk.config.settings import Settings, SettingsError
from honk.errors import HonkError
from honk.workflows.contract import AgentTask

log = logging.getLogger(__name__)

EXTRA_HINT = "pip install 'honk[claude-code]'"
INTERRUPT_GRACE_S = 15.0
BEAT_EVERY_S = 5.0

TOOLS_NOTE = """\

In this session your tools have Claude Code's names: explore with Glob, Grep and Read; change \
files with Edit (read a file before editing it) and Write; delete a file with \
mcp__honk__delete_file; verify with mcp__honk__run_checks. Paths may be relative to the \
repository root or absolute inside it. When the change is complete and the checks pass, end \
your turn with a two-line summary for the reviewer (or call mcp__honk__finish with it)."""


def load_sdk() -> Any:
    """The SDK module, or a start-up error that names the extra to install."""
    try:
        import claude_agent_sdk
    except ImportError as exc:
        raise SettingsError(
            f"HONK_AGENT_BACKEND=claude-code needs the optional extra claude-code ({EXTRA_HINT}): {exc}"
        ) from None
    return claude_agent_sdk


def bundled_cli(sdk: Any) -> str:
    """The Claude Code CLI shipped inside the SDK's wheel, else one on PATH."""
    bundled = Path(sdk.__file__).parent / "_bundled" / ("claude.exe" if os.name == "nt" else "claude")
    if bundled.is_file():
        return str(bundled)
    found = shutil.which("claude")
    if not found:
        raise SettingsError(f"the Claude Code CLI is missing from claude-agent-sdk; reinstall it ({EXTRA_HINT})")
    return found


# --------------------------------------------------------------------------- the backend


@dataclass
class _Run:
    """What one Claude Code run has seen so far."""

    ctx: AgentContext
    meter: Meter  # this run only, priced by Honk (heartbeats and budgets while running)
    started: float = field(default_factory=time.monotonic)
    turn: int = 0
    seen: set[str] = field(default_factory=set)  # message ids already counted
    model: str = ""
    finished: str | None = None  # the summary passed to mcp__honk__finish
    stop: str | None = None  # which budget ran out
    assistant_error: str | None = None
    result: Any = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # checkpoints vs. edits
    last_beat: float = 0.0

    def view(self) -> Meter:
        """Everything metered so far: earlier runs of this activity plus this run."""
        view = Meter()
        for source in ([self.ctx.meter] if self.ctx.meter else []) + [self.meter]:
            for model, usage in source.by_model.items():
                view.add_usage(model, usage)
        return view

    def beat(self) -> None:
        self.last_beat = time.monotonic()
        self.ctx.beat(self.turn, self.view())

    async def checkpoint(self) -> None:
        if not self.ctx.tools.changed:
            return
        async with self.lock:
            self.ctx.tools.changed = False
            await asyncio.to_thread(self.ctx.checkpoint, self.turn)


class ClaudeCodeBackend:
    name = "claude-code"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sdk = load_sdk()
        self.cli = bundled_cli(self.sdk)

    def run(self, ctx: AgentContext, task: AgentTask) -> AgentRun:
        # The activity is synchronous (a worker thread without an event loop); the SDK is async.
        return asyncio.run(self._run(ctx, task))

    # ----------------------------------------------------------------------- one run

    async def _run(self, ctx: AgentContext, task: AgentTask) -> AgentRun:
        sdk = self.sdk
        state = _Run(ctx, Meter())
        with tempfile.TemporaryDirectory(prefix="honk-claude-", ignore_cleanup_errors=True) as scratch:
            home = Path(scratch) / "home"
            home.mkdir()
            env = cli_environment(self.settings, home, ctx.budget.max_seconds)
            launcher = write_launcher(Path(scratch), self.cli, set(env) | set(SDK_ENV))
            spent = ctx.meter.total.cost_usd if ctx.meter else 0.0
            options = sdk.ClaudeAgentOptions(
                cwd=str(ctx.root),
                cli_path=str(launcher),
                env=env,
                model=self.settings.model,
                system_prompt=system_prompt(ctx.root, ctx.instructions_file) + TOOLS_NOTE,
                tools=list(FILE_TOOLS),
                allowed_tools=sorted(ALLOWED_TOOLS),
                disallowed_tools=list(DISALLOWED_TOOLS),
                permission_mode="acceptEdits",
                mcp_servers={SERVER: self._honk_server(state)},
                strict_mcp_config=True,
                setting_sources=[],  # no settings (or their hooks) from the repository or a home
                hooks={"PreToolUse": [sdk.HookMatcher(hooks=[self._guard(state)], on_failure="block")]},
                max_turns=ctx.budget.max_turns,
                max_budget_usd=max(0.01, ctx.budget.max_dollars - spent),
                verbatim_prompts=True,  # no @file expansion of text that came from chat
                client_app="honk",
                stderr=lambda line: log.debug("claude code: %s", line),
            )
            try:
                async with sdk.ClaudeSDKClient(options) as client:
                    await client.query(user_prompt(task, ctx.resumed))
                    await self._drive(client, state)
            except (HonkError, CancelledError):
                raise
            except sdk.CLINotFoundError as exc:
                raise HonkError(f"Claude Code could not start: {exc}", kind="ConfigError", retryable=False) from None
            except sdk.ClaudeSDKError as exc:
                raise HonkError(f"Claude Code failed: {exc}", kind="ClaudeCodeError") from None
        return self._outcome(state)

    async def _drive(self, client: Any, state: _Run) -> None:
        """Consume messages until the result, enforcing the wall clock and cancellation."""
        budget = state.ctx.budget
        consumer = asyncio.create_task(self._consume(client, state))
        interrupted_at: float | None = None
        try:
            while not consumer.done():
                await asyncio.wait({consumer}, timeout=0.5)
                if consumer.done():
                    break
                if liveness.cancelled():
                    raise CancelledError("agent run cancelled")
                now = time.monotonic()
                if state.stop is None and now - state.started > budget.max_seconds:
                    state.stop = f"the time budget ({budget.max_seconds / 60:.0f} min)"
                if state.stop is not None and interrupted_at is None:
                    interrupted_at = now
                    await client.interrupt()
                if interrupted_at is not None and now - interrupted_at > INTERRUPT_GRACE_S:
                    break  # the CLI did not wind down: leaving the client kills it
                if now - state.last_beat > BEAT_EVERY_S:
                    state.beat()  # also during a long model call or check
            if consumer.done():
                consumer.result()  # re-raise what went wrong while reading
        finally:
            if not consumer.done():
                consumer.cancel()
                await asyncio.gather(consumer, return_exceptions=True)

    async def _consume(self, client: Any, state: _Run) -> None:
        sdk = self.sdk
        budget = state.ctx.budget
        async for message in client.receive_response():
            if isinstance(message, sdk.AssistantMessage):
                if message.error:
                    state.assistant_error = message.error
                key = message.message_id or message.uuid or str(id(message))
                if key not in state.seen:  # one model call can arrive as several messages
                    state.seen.add(key)
                    await state.checkpoint()  # the previous turn's edits are all done now
                    if message.model and message.model != "<synthetic>":
                        state.turn += 1
                        state.model = message.model
                        state.meter.add(message.model, MessageUsage(message.usage))
                if state.stop is None and state.view().tokens > budget.max_tokens:
                    state.stop = f"the token budget ({budget.max_tokens})"
                elif state.stop is None and state.view().total.cost_usd > budget.max_dollars:
                    state.stop = f"the cost budget (${budget.max_dollars:.2f})"
            elif isinstance(message, sdk.ResultMessage):
                state.result = message
            state.beat()

    def _outcome(self, state: _Run) -> AgentRun:
        ctx, result = state.ctx, state.result
        model = state.model or self.settings.model
        meter = ctx.meter if ctx.meter is not None else Meter()
        if result is not None and (result.model_usage or result.usage):
            # The CLI's own accounting is authoritative for what it sent.
            if result.model_usage:
                for name, data in result.model_usage.items():
                    meter.add_usage(name, usage_of(dict(data), data.get("costUSD", 0)))
            else:
                meter.add_usage(model, usage_of(result.usage, result.total_cost_usd or 0))
        else:
            for name, usage in state.meter.by_model.items():
                meter.add_usage(name, usage)
        turns = state.turn
        log.info(
            "claude code run",
            extra={
                "turns": turns,
                "tokens": meter.tokens,
                "cost_usd": meter.total.cost_usd,
                "subtype": getattr(result, "subtype", None),
                "stop": state.stop,
            },
        )
        subtype = getattr(result, "subtype", "")
        if state.stop is None and subtype == "error_max_turns":
            state.stop = f"the turn budget ({ctx.budget.max_turns})"
        elif state.stop is None and subtype == "error_max_budget_usd":
            state.stop = f"the cost budget (${ctx.budget.max_dollars:.2f})"
        if state.stop is not None:
            ctx.checkpoint(turns)
            ctx.tools.changed = False
            return AgentRun(
                "budget_exhausted",
                f"Stopped after {turns} turns: {state.stop} ran out. "
                f"Work so far: {', '.join(ctx.changed_files()) or 'no files changed'}.",
                meter,
                turns,
                model,
            )
        error = result_error(result, state.assistant_error) if (result is None or result.is_error) else None
        if error is not None:
            if ctx.tools.changed:
                ctx.checkpoint(turns)  # keep what was done; a retry resumes from the branch
                ctx.tools.changed = False
            raise error
        if ctx.tools.changed:
            ctx.checkpoint(turns)
            ctx.tools.changed = False
        summary = state.finished or (result.result or "").strip() or "The model ended without a summary."
        return AgentRun("finished", summary, meter, turns, model)

    # ----------------------------------------------------------------------- Honk's tools and guard

    def _honk_server(self, state: _Run) -> Any:
        sdk, tools = self.sdk, state.ctx.tools

        async def call(name: str, args: dict[str, Any]) -> dict[str, Any]:
            result = await asyncio.to_thread(tools.call, name, args)
            if result.finished:
                state.finished = result.finished
                text = "Recorded. End your turn now with the same summary."
            else:
                text = result.text
            return {"content": [{"type": "text", "text": text}], "is_error": result.is_error}

        @sdk.tool("run_checks", "Run the repository's checks on the current files and report failures.", {})
        async def run_checks(args: dict[str, Any]) -> dict[str, Any]:
            return await call("run_checks", {})

        @sdk.tool(
            "delete_file",
            "Delete a file (path relative to the repository root).",
            {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
        )
        async def delete_file(args: dict[str, Any]) -> dict[str, Any]:
            return await call("delete_file", {"path": args.get("path")})

        @sdk.tool(
            "finish",
            "Call when the change is complete, with a short summary for the reviewer.",
            {"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"]},
        )
        async def finish(args: dict[str, Any]) -> dict[str, Any]:
            return await call("finish", {"summary": str(args.get("summary") or "")})

        return sdk.create_sdk_mcp_server(SERVER, tools=[run_checks, delete_file, finish])

    def _guard(self, state: _Run):
        tools = state.ctx.tools
        roots = (Path(os.path.abspath(state.ctx.root)), tools.root)

        async def pre_tool_use(data: dict[str, Any], tool_use_id: str | None, context: Any) -> dict[str, Any]:
            name = str(data.get("tool_name", ""))
            args = data.get("tool_input") or {}
            reason = refusal(tools, name, args if isinstance(args, dict) else {}, roots)
            if reason is not None:
                log.info("claude code tool refused", extra={"tool": name, "reason": reason})
                return {
                    "hookSpecificOutput": {
                        "hookEventName": "PreToolUse",
                        "permissionDecision": "deny",
                        "permissionDecisionReason": reason,
                    }
                }
            if name in EDITING_TOOLS:
                target = edited_path(tools, args if isinstance(args, dict) else {}, roots)
                async with state.lock:  # never while a checkpoint is committing
                    tools.changed = True
                    if target is not None:
                        tools.changed_paths.add(target)
            return {}  # no opinion: allowed_tools and acceptEdits decide

        return pre_tool_use
