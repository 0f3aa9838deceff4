"""The default agent backend through the real `anthropic` client against the fake Messages
API: the repair loop, budgets, the judge, faults, confinement, caching and trimming."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from anthropic_fake import API_KEY, FakeAnthropic, Fault
from honkstack import Stack
from repos import make_remote, remote_file
from temporalio.exceptions import ApplicationError

from honk.activities.agent import AgentActivities
from honk.agent.tools import WorkspaceTools
from honk.config.settings import load_settings
from honk.workflows.contract import AgentTask, Stage, WorkspaceRef

CALC_BUG = "def add(a, b):\n    return a - b\n"
CALC_FIXED = "def add(a, b):\n    return a + b\n"
TEST_CALC = (
    "import unittest\nfrom calc import add\n\n\nclass AddTest(unittest.TestCase):\n"
    "    def test_add(self):\n        self.assertEqual(add(2, 2), 4)\n"
)
HONK_TOML = '[[checks]]\nname = "unit"\nrun = ["python3", "-m", "unittest", "-q"]\ntimeout_seconds = 60\n'

FIX_CALC = {
    "when": "crash in add",
    "summary": "Fixed add().",
    "turns": [
        {"text": "Let me look.", "tools": [{"name": "read_file", "input": {"path": "calc.py"}}]},
        {"tools": [{"name": "run_checks", "input": {}}]},
        {"tools": [{"name": "edit_file", "input": {"path": "calc.py", "old_text": "a - b", "new_text": "a + b"}}]},
        {"tools": [{"name": "run_checks", "input": {}}]},
        {"tools": [{"name": "finish", "input": {"summary": "add() subtracted; it adds now. The unit check passes."}}]},
    ],
}


def calc_repo(path: Path, extra: dict[str, str] | None = None) -> Path:
    """A bare remote of a tiny Python project whose test fails."""
    files = {"calc.py": CALC_BUG, "test_calc.py": TEST_CALC, ".honk.toml": HONK_TOML, **(extra or {})}
    return make_remote(path, files, name="calc", message="calc")


def ref_for(remote: Path, request_id: str = "honk-calc-1") -> WorkspaceRef:
    return WorkspaceRef(
        request_id=request_id,
        repo="calc",
        remote=str(remote),
        base_branch="main",
        work_branch=f"honk/{request_id.removeprefix('honk-')}",
    )


def task_for(ref: WorkspaceRef, instruction: str, **kw) -> AgentTask:
    return AgentTask(workspace=ref, instruction=instruction, round=1, attempt=1, invocation=1, **kw)


@pytest.fixture
def agent(tmp_path):
    """An AgentActivities wired to a fake Messages API with the given script."""
    fakes = []

    def make(script: dict, **settings) -> tuple[AgentActivities, FakeAnthropic]:
        fake = FakeAnthropic(script).start()
        fakes.append(fake)
        s = load_settings(
            data_dir=tmp_path / "data",
            anthropic_base_url=fake.url,
            anthropic_api_key=settings.pop("key", API_KEY),
            model="scripted-model",
            **settings,
        )
        return AgentActivities(s), fake

    yield make
    for fake in fakes:
        fake.stop()


# --------------------------------------------------------------------------- end to end


async def test_agent_repairs_failing_test_and_workflow_shows_usage(dev_env, tmp_path, task_queue):
    remote = calc_repo(tmp_path)
    stack = Stack(dev_env, tmp_path / "stack", task_queue, script={"replies": [FIX_CALC]})
    stack.remote = remote
    stack.registry.repos["hello-android"].remote = str(remote)
    stack.start_worker()
    try:
        handle = await stack.request("Fix the crash in add")
        status = await stack.wait_stage(handle.id, Stage.AWAITING_APPROVAL)
        tool_results = stack.model.tool_results()
        await handle.signal("cancel", {"by": "bob"})
        await asyncio.wait_for(handle.result(), 60)
    finally:
        await stack.close()

    checks = [r["content"] for r in tool_results if "unit" in r["content"] or "passed" in r["content"]]
    assert "AssertionError" in checks[0] and "4" in checks[0], "the model saw the trimmed failure"
    assert checks[-1] == "All checks passed."
    assert status.usage.input_tokens > 0 and status.usage.output_tokens > 0
    assert status.usage.cost_usd > 0 and status.usage.cache_read_tokens > 0
    assert set(status.usage_by_model) == {"scripted-model"}
    agent_note = next(e.message for e in status.timeline if e.message.startswith("Agent ("))
    assert "5 turns" in agent_note and "add() subtracted" in agent_note


async def test_turn_budget_stops_a_model_that_never_finishes(dev_env, tmp_path, task_queue):
    script = {
        "replies": [
            {
                "when": "endless",
                "repeat_last_turn": True,
                "turns": [
                    {"tools": [{"name": "write_file", "input": {"path": "notes.txt", "content": "still thinking\n"}}]},
                    {"tools": [{"name": "read_file", "input": {"path": "notes.txt"}}]},
                ],
            }
        ]
    }
    stack = Stack(dev_env, tmp_path, task_queue, script=script)
    stack.settings = stack.settings.model_copy(update={"agent_max_turns": 4})
    stack.start_worker()
    try:
        handle = await stack.request("An endless task")
        result = await asyncio.wait_for(handle.result(), 120)
    finally:
        await stack.close()
    assert result.stage == Stage.FAILED
    assert "the turn budget (4) ran out" in result.last_error
    assert result.links.work_branch in result.last_error
    assert "notes.txt" in result.last_error, "says what was done"
    assert stack.remote_file("notes.txt", result.links.work_branch) == "still thinking", "partial work kept"
    messages = len(stack.model.message_requests())
    assert messages == 4, "exactly the budgeted number of model calls"
    notices = (stack.settings.data_dir / "notifications" / f"{handle.id}.jsonl").read_text()
    assert "turn budget" in notices, "the requester is told"


# --------------------------------------------------------------------------- judge


def test_judge_vetoes_a_deleted_test_and_the_agent_gets_the_reason(agent, tmp_path):
    remote = calc_repo(tmp_path)
    script = {
        "replies": [
            {
                "when": "speed up",
                "feedback": "deletes the test file",
                "summary": "Restored the test; fixed add instead.",
                "edits": [
                    {"path": "test_calc.py", "write": TEST_CALC},
                    {"path": "calc.py", "replace": "a - b", "with": "a + b"},
                ],
            },
            {
                "when": "speed up",
                "summary": "Removed the slow test.",
                "edits": [{"path": "test_calc.py", "delete": True}],
            },
        ]
    }
    activities, fake = agent(script)
    outcome = activities.run_agent(task_for(ref_for(remote), "Speed up the test suite"))
    assert outcome.status == "finished", outcome.summary
    prompts = [r.body["messages"][0]["content"] for r in fake.message_requests()]
    vetoed = [p for p in prompts if "A reviewer vetoed your change" in p]
    assert vetoed and "deletes the test file test_calc.py" in vetoed[0]
    assert remote_file(remote, "honk/calc-1", "test_calc.py") == TEST_CALC.rstrip("\n")


def test_judge_veto_twice_reports_vetoed(agent, tmp_path):
    remote = calc_repo(tmp_path)
    script = {
        "replies": [{"when": "speed up", "summary": "Removed it.", "edits": [{"path": "test_calc.py", "delete": True}]}]
    }
    activities, _ = agent(script)
    outcome = activities.run_agent(task_for(ref_for(remote), "Speed up the test suite"))
    assert outcome.status == "vetoed" and "deletes the test file" in outcome.summary


def test_judge_model_verdict_is_used_when_rules_pass(agent, tmp_path):
    remote = calc_repo(tmp_path)
    script = {
        "replies": [
            {
                "when": "crash in add",
                "summary": "Rewrote everything.",
                "edits": [{"path": "calc.py", "replace": "a - b", "with": "a + b"}],
                "verdict": {"approve": False, "reason": "It rewrites unrelated code."},
            }
        ]
    }
    activities, fake = agent(script)
    outcome = activities.run_agent(task_for(ref_for(remote), "Fix the crash in add"))
    assert outcome.status == "vetoed" and "It rewrites unrelated code." in outcome.summary
    judge_calls = [r for r in fake.message_requests() if "You review a code change" in str(r.body.get("system"))]
    assert len(judge_calls) == 2 and "<diff>" in judge_calls[0].body["messages"][0]["content"]


# --------------------------------------------------------------------------- faults


def test_overloaded_then_rate_limited_then_success_recovers(agent, tmp_path):
    remote = calc_repo(tmp_path)
    activities, fake = agent({"replies": [FIX_CALC]}, judge=False)
    fake.inject(Fault(529, retry_after=0.05), Fault(429, retry_after=0.05))
    outcome = activities.run_agent(task_for(ref_for(remote), "Fix the crash in add"))
    assert outcome.status == "finished"
    statuses = [r.status for r in fake.requests if r.path.startswith("/v1/messages")]
    assert statuses[:3] == [529, 429, 200]


def test_unauthorised_fails_fast_with_a_clear_message(agent, tmp_path):
    remote = calc_repo(tmp_path)
    activities, fake = agent({"replies": [FIX_CALC]}, key="sk-ant-wrong")
    with pytest.raises(ApplicationError) as failed:
        activities.run_agent(task_for(ref_for(remote), "Fix the crash in add"))
    assert failed.value.non_retryable and failed.value.type == "ModelRequestRejected"
    assert "401" in failed.value.message and "HONK_ANTHROPIC_API_KEY" in failed.value.message
    assert "sk-ant-wrong" not in failed.value.message
    assert len([r for r in fake.requests if r.path.startswith("/v1/messages")]) == 1, "no retries on 401"


def test_persistent_overload_is_retryable_with_the_servers_delay(agent, tmp_path):
    remote = calc_repo(tmp_path)
    activities, fake = agent({"replies": [FIX_CALC]})
    fake.inject(*[Fault(529, retry_after=0.01)] * 2, Fault(529, retry_after=7))
    with pytest.raises(ApplicationError) as failed:
        activities.run_agent(task_for(ref_for(remote), "Fix the crash in add"))
    assert not failed.value.non_retryable and failed.value.type == "ModelUnavailable"
    assert failed.value.next_retry_delay.total_seconds() == 7


def test_auth_header_styles_are_both_accepted(agent, tmp_path):
    import json
    import urllib.error
    import urllib.request

    import anthropic

    _, fake = agent({"replies": []})
    reply = anthropic.Anthropic(api_key=API_KEY, base_url=fake.url).messages.create(
        model="scripted-model", max_tokens=10, messages=[{"role": "user", "content": "<request>\nhi\n</request>"}]
    )
    assert reply.model == "scripted-model"
    body = json.dumps({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}).encode()

    def post(headers: dict[str, str]) -> int:
        request = urllib.request.Request(
            f"{fake.url}/v1/messages", data=body, method="POST", headers={"content-type": "application/json", **headers}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    assert post({"x-api-key": API_KEY}) == 200  # Claude Code's style
    assert post({"authorization": f"Bearer {API_KEY}"}) == 200
    assert post({"x-api-key": "sk-ant-wrong"}) == 401
    sent = fake.requests[0].headers
    assert sent.get("authorization") == f"Bearer {API_KEY}" or sent.get("x-api-key") == API_KEY


# --------------------------------------------------------------------------- confinement


@pytest.mark.parametrize(
    "call",
    [
        ("read_file", {"path": "../outside.txt"}),
        ("read_file", {"path": "/etc/passwd"}),
        ("read_file", {"path": "escape/outside.txt"}),
        ("write_file", {"path": "escape/new.txt", "content": "x"}),
        ("write_file", {"path": ".git/config", "content": "[core]"}),
        ("edit_file", {"path": ".git/HEAD", "old_text": "ref", "new_text": "x"}),
        ("write_file", {"path": "sub/../../outside.txt", "content": "x"}),
        ("delete_file", {"path": "gitlink/config"}),
        ("list_files", {"path": ".."}),
    ],
)
def test_every_escape_is_refused_as_a_tool_error(tmp_path, call):
    root = tmp_path / "ws"
    (root / ".git").mkdir(parents=True)
    (root / ".git" / "config").write_text("[core]\n")
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "sub").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "outside.txt").write_text("secret")
    (tmp_path / "outside.txt").write_text("secret")
    (root / "escape").symlink_to(outside)
    (root / "gitlink").symlink_to(root / ".git")
    tools = WorkspaceTools(root, run_checks=lambda: "")
    name, args = call
    result = tools.call(name, args)
    assert result.is_error, result.text
    assert (tmp_path / "outside.txt").read_text() == "secret"
    assert (root / ".git" / "config").read_text() == "[core]\n"
    assert not (outside / "new.txt").exists() and not tools.changed


def test_escape_attempt_through_the_model_is_reported_back(agent, tmp_path):
    remote = calc_repo(tmp_path)
    script = {
        "replies": [
            {
                "when": "peek",
                "turns": [
                    {
                        "tools": [
                            {"name": "read_file", "input": {"path": "../../../../etc/passwd"}},
                            {
                                "name": "write_file",
                                "input": {"path": ".git/hooks/pre-commit", "content": "#!/bin/sh\n"},
                            },
                        ]
                    },
                    {"tools": [{"name": "finish", "input": {"summary": "Gave up."}}]},
                ],
            }
        ]
    }
    activities, fake = agent(script, judge=False)
    outcome = activities.run_agent(task_for(ref_for(remote), "peek"))
    results = fake.tool_results()
    assert [r["is_error"] for r in results[:2]] == [True, True]
    assert "outside the repository" in results[0]["content"] and ".git" in results[1]["content"]
    assert outcome.status == "no_changes"


# --------------------------------------------------------------------------- prompt, caching, trimming


def test_cached_prefix_and_trimmed_check_output(agent, tmp_path):
    noisy = (
        '[[checks]]\nname = "noisy"\nrun = ["python3", "-c", "import sys\\nfor i in range(30000): '
        "print('progress line', i, 'x' * 40)\\nprint('FAILED test_noise - AssertionError: boom')\\n"
        'sys.exit(1)"]\n'
    )
    remote = calc_repo(tmp_path, {".honk.toml": noisy, "AGENTS.md": "Always keep add() pure.\n"})
    script = {
        "replies": [
            {
                "when": "check",
                "turns": [
                    {"tools": [{"name": "run_checks", "input": {}}]},
                    {"tools": [{"name": "finish", "input": {"summary": "Looked at the checks."}}]},
                ],
            }
        ]
    }
    activities, fake = agent(script, judge=False)
    activities.run_agent(task_for(ref_for(remote), "check things"))

    log = next((tmp_path / "data" / "artifacts" / "honk-calc-1" / "logs").glob("check-noisy-agent*.log"))
    assert log.stat().st_size > 1_000_000
    result = fake.tool_results()[0]["content"]
    assert len(result.encode()) <= 4096 and "AssertionError: boom" in result

    requests = fake.message_requests()
    for request in requests:
        assert request.body["system"][0]["cache_control"] == {"type": "ephemeral"}
        assert request.body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
        assert "Always keep add() pure." in request.body["system"][0]["text"], "AGENTS.md in the prompt"
    assert [r.body.get("stream") for r in requests] == [True, True], "streamed (SSE)"
