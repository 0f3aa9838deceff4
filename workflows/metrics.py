"""Honk's workflow metrics, recorded through `workflow.metric_meter()`.

The SDK's workflow meter records nothing while a workflow replays, so these calls are safe in
workflow code: a replay after a crash does not count a request twice. They land on the
worker's Prometheus endpoint (HONK_METRICS_PORT) beside the SDK's own metrics, with the
labels the SDK adds (namespace, task_queue, workflow_type). Names are part of the
operations contract (dashboards, alerts): see README "Observability".
"""

from __future__ import annotations

from temporalio import workflow

from honk.workflows.contract import AgentOutcome, BuildOutcome, BuildTargetRef

REQUESTS_FINISHED = "honk_requests_finished"  # counter, exported as ..._total
REQUEST_DURATION = "honk_request_duration_seconds"
STAGE_DURATION = "honk_stage_duration_seconds"
AGENT_RUNS = "honk_agent_runs"
AGENT_TOKENS = "honk_agent_tokens"
AGENT_COST = "honk_agent_cost_dollars"
AGENT_TURNS = "honk_agent_turns"
CHECK_ATTEMPTS = "honk_check_attempts"
BUILD_DURATION = "honk_build_duration_seconds"
DECISIONS = "honk_decisions"


def _meter():
    return workflow.metric_meter()


def request_finished(repo: str, outcome: str, seconds: float) -> None:
    meter = _meter()
    meter.create_counter(REQUESTS_FINISHED, "Requests that ended, by outcome").add(
        1, {"repo": repo, "outcome": outcome}
    )
    meter.create_histogram_float(REQUEST_DURATION, "Time from request to its end", "s").record(
        max(seconds, 0.0), {"repo": repo, "outcome": outcome}
    )


def stage_left(repo: str, stage: str, seconds: float) -> None:
    _meter().create_histogram_float(STAGE_DURATION, "Time spent in a stage", "s").record(
        max(seconds, 0.0), {"repo": repo, "stage": stage}
    )


def agent_run(repo: str, outcome: AgentOutcome) -> None:
    """One agent invocation: its status, turns, and tokens and dollars per model."""
    status, model, turns = outcome.status, outcome.model, outcome.turns
    usage_by_model = outcome.usage_by_model or ({model: outcome.usage} if model else {})
    meter = _meter()
    meter.create_counter(AGENT_RUNS, "Agent runs, by status").add(1, {"repo": repo, "status": status, "model": model})
    meter.create_histogram(AGENT_TURNS, "Model turns per agent run").record(max(turns, 0), {"repo": repo})
    tokens = meter.create_counter(AGENT_TOKENS, "Model tokens used by the agent, by kind")
    cost = meter.create_histogram_float(AGENT_COST, "Dollars per agent run and model (sum: total spend)", "USD")
    for name, usage in usage_by_model.items():
        for kind, amount in (
            ("input", usage.input_tokens),
            ("output", usage.output_tokens),
            ("cache_read", usage.cache_read_tokens),
            ("cache_write", usage.cache_write_tokens),
        ):
            if amount:
                tokens.add(amount, {"repo": repo, "model": name, "kind": kind})
        cost.record(max(usage.cost_usd, 0.0), {"repo": repo, "model": name})


def check_attempt(repo: str, passed: bool) -> None:
    _meter().create_counter(CHECK_ATTEMPTS, "Check runs after an agent edit, by outcome").add(
        1, {"repo": repo, "outcome": "passed" if passed else "failed"}
    )


def build_finished(repo: str, target: str, seconds: float, ok: bool) -> None:
    _meter().create_histogram_float(BUILD_DURATION, "Build duration per target", "s").record(
        max(seconds, 0.0), {"repo": repo, "target": target, "outcome": "ok" if ok else "failed"}
    )


def builds_finished(repo: str, targets: list[BuildTargetRef], results: list, seconds: float) -> None:
    """One build per target; a failed one took `seconds` (the time until all finished)."""
    for t, r in zip(targets, results, strict=True):
        ok = isinstance(r, BuildOutcome)
        build_finished(repo, t.name, r.duration_s if ok else seconds, ok=ok)


def decision(action: str, accepted: bool) -> None:
    _meter().create_counter(DECISIONS, "Decisions (approve, request changes, cancel), accepted or refused").add(
        1, {"action": action, "outcome": "accepted" if accepted else "refused"}
    )
