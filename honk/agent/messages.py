"""The default agent backend: a tool-use loop on the Anthropic Messages API.

One model call a turn (streamed), the tools run locally on the workspace, usage and cost are
metered per model, budgets fail closed (the work so far is kept and pushed), and Anthropic
errors become retryable failures (keeping the server's pacing) or clear permanent ones.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import Any

import anthropic
from temporalio.exceptions import CancelledError

from honk import liveness, telemetry
from honk.agent.backend import AgentContext, AgentRun
from honk.agent.pricing import Meter
from honk.agent.prompt import system_prompt, user_prompt
from honk.agent.tools import DEFINITIONS
from honk.config.settings import Settings
from honk.errors import HonkError
from honk.ratelimit import retry_after
from honk.workflows.contract import AgentTask

log = logging.getLogger(__name__)

MAX_OUTPUT_TOKENS = 8192
CACHE = {"type": "ephemeral"}


# One client per endpoint and key for the worker's life: building one loads the CA bundle
# into a new SSL context (~40 ms) and opens a new connection pool; clients are thread-safe.
_CLIENTS: dict[tuple[str, str | None, float], anthropic.Anthropic] = {}
_CLIENTS_LOCK = threading.Lock()


def make_client(settings: Settings) -> anthropic.Anthropic:
    if settings.anthropic_api_key is None and settings.anthropic_base_url is None:
        raise HonkError(
            "no model configured: set HONK_ANTHROPIC_API_KEY (or ANTHROPIC_API_KEY)",
            kind="ConfigError",
            retryable=False,
        )
    key = settings.anthropic_api_key.get_secret_value() if settings.anthropic_api_key else "unset"
    which = (key, settings.anthropic_base_url, settings.model_timeout_s)
    with _CLIENTS_LOCK:
        if which not in _CLIENTS:
            _CLIENTS[which] = anthropic.Anthropic(
                api_key=key,
                base_url=settings.anthropic_base_url,
                max_retries=2,
                timeout=settings.model_timeout_s,
            )
        return _CLIENTS[which]


def model_error(exc: anthropic.APIError) -> HonkError:
    """Map an Anthropic failure to a retry decision, keeping the server's pacing."""
    status = getattr(exc, "status_code", None)
    if isinstance(
        exc,
        (
            anthropic.AuthenticationError,
            anthropic.PermissionDeniedError,
            anthropic.BadRequestError,
            anthropic.NotFoundError,
        ),
    ):
        hint = " Check HONK_ANTHROPIC_API_KEY." if status in (401, 403) else ""
        return HonkError(
            f"the model API refused the request ({status}): {exc.message}.{hint}",
            kind="ModelRequestRejected",
            retryable=False,
        )
    response = getattr(exc, "response", None)
    seconds = retry_after(response.headers) if response is not None else None
    return HonkError(
        f"the model API is unavailable ({status or type(exc).__name__}): {exc.message}",
        kind="ModelUnavailable",
        retry_after=timedelta(seconds=seconds) if seconds is not None else None,
    )


class MessagesBackend:
    name = "messages"

    def __init__(self, settings: Settings, client: anthropic.Anthropic | None = None) -> None:
        self.settings = settings
        self._client = client

    @property
    def client(self) -> anthropic.Anthropic:
        if self._client is None:
            self._client = make_client(self.settings)
        return self._client

    def run(self, ctx: AgentContext, task: AgentTask) -> AgentRun:
        model = self.settings.model
        system = [{"type": "text", "text": system_prompt(ctx.root, ctx.instructions_file), "cache_control": CACHE}]
        tools: list[dict[str, Any]] = [dict(d) for d in DEFINITIONS]
        tools[-1] = {**tools[-1], "cache_control": CACHE}  # tools + system: the cached prefix
        messages: list[dict[str, Any]] = [{"role": "user", "content": user_prompt(task, ctx.resumed)}]
        meter = ctx.meter or Meter()
        started = time.monotonic()
        turn = 0
        while True:
            if liveness.cancelled():  # the request was cancelled: stop before the next call
                raise CancelledError("agent run cancelled")
            if turn >= ctx.budget.max_turns:
                return self._exhausted(ctx, meter, turn, f"the turn budget ({ctx.budget.max_turns})")
            if time.monotonic() - started > ctx.budget.max_seconds:
                return self._exhausted(ctx, meter, turn, f"the time budget ({ctx.budget.max_seconds / 60:.0f} min)")
            turn += 1
            # One span per turn: the model call and the tool calls it asked for.
            with telemetry.span("agent.turn", turn=turn, model=model) as turn_span:
                reply = self._call(model, system, tools, messages, turn, meter)
                ctx.beat(turn, meter)
                messages.append({"role": "assistant", "content": reply.content})
                calls = [b for b in reply.content if b.type == "tool_use"]
                turn_span.set_attributes(
                    {"honk.tool_calls": len(calls), "honk.tokens": meter.tokens, "honk.cost_usd": meter.total.cost_usd}
                )
                if not calls:
                    text = " ".join(b.text for b in reply.content if b.type == "text").strip()
                    return AgentRun("finished", text or "The model ended without a summary.", meter, turn, model)
                results, finished = [], None
                for call in calls:
                    with telemetry.span("agent.tool", tool=call.name) as tool_span:
                        result = ctx.tools.call(call.name, call.input if isinstance(call.input, dict) else {})
                        tool_span.set_attribute("honk.is_error", result.is_error)
                    finished = finished or result.finished
                    results.append(
                        {
                            "type": "tool_result",
                            "tool_use_id": call.id,
                            "content": result.text,
                            "is_error": result.is_error,
                        }
                    )
                messages.append({"role": "user", "content": results})
                if ctx.tools.changed:
                    ctx.checkpoint(turn)  # partial work survives a crash or a budget stop
                    ctx.tools.changed = False
                if finished:
                    return AgentRun("finished", finished, meter, turn, model)
            if meter.tokens > ctx.budget.max_tokens:
                return self._exhausted(ctx, meter, turn, f"the token budget ({ctx.budget.max_tokens})")
            if meter.total.cost_usd > ctx.budget.max_dollars:
                return self._exhausted(ctx, meter, turn, f"the cost budget (${ctx.budget.max_dollars:.2f})")

    def _call(self, model: str, system: list, tools: list, messages: list, turn: int, meter: Meter):
        try:
            with (
                liveness.heartbeating({"turn": turn, "tokens": meter.tokens}),
                telemetry.span("agent.model_call", model=model, turn=turn),
            ):
                with self.client.messages.stream(
                    model=model,
                    max_tokens=MAX_OUTPUT_TOKENS,
                    system=system,
                    tools=tools,
                    messages=messages,
                ) as stream:
                    reply = stream.get_final_message()
        except anthropic.APIError as exc:
            raise model_error(exc) from None
        meter.add(reply.model or model, reply.usage)
        log.info(
            "agent turn",
            extra={
                "turn": turn,
                "stop_reason": reply.stop_reason,
                "tokens": meter.tokens,
                "cost_usd": meter.total.cost_usd,
            },
        )
        return reply

    @staticmethod
    def _exhausted(ctx: AgentContext, meter: Meter, turns: int, which: str) -> AgentRun:
        ctx.checkpoint(turns)
        return AgentRun(
            "budget_exhausted",
            f"Stopped after {turns} turns: {which} ran out. "
            f"Work so far: {', '.join(ctx.changed_files()) or 'no files changed'}.",
            meter,
            turns,
            "",
        )
