"""The diff reviewer ("judge"): does the change do what was asked, and only that?

Obvious scope creep is caught by rules that need no model (deleted or disabled tests,
dependency downgrades); otherwise one model call compares the diff with the request and
answers through a forced `verdict` tool.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import anthropic
from anthropic.types import ToolParam

from honk import telemetry
from honk.agent.messages import model_error
from honk.agent.pricing import Meter

JUDGE_SYSTEM = (
    "You review a code change made by a coding agent for an engineer's request. Approve it "
    "when it does what was asked without scope creep. Veto it when it deletes or disables "
    "tests, downgrades dependencies, rewrites unrelated code, or does something else than "
    "asked. Answer with the verdict tool; give a one-sentence reason the agent can act on."
)
VERDICT_TOOL: ToolParam = {
    "name": "verdict",
    "description": "Your decision on the change.",
    "input_schema": {
        "type": "object",
        "properties": {"approve": {"type": "boolean"}, "reason": {"type": "string"}},
        "required": ["approve", "reason"],
    },
}
MAX_DIFF = 60_000
TEST_PATH = re.compile(
    r"(^|/)(tests?|__tests__|spec)(/|$)|(^|/)test_[^/]*$|_test\.[a-z]+$|\.(test|spec)\.[a-z]+$|Test\.(java|kt)$"
)
SKIP_MARKERS = re.compile(
    r"^\+.*(@pytest\.mark\.skip|@unittest\.skip|@Ignore|@Disabled|\bxit\(|\bxdescribe\(|\bit\.skip\(|\bdescribe\.skip\(|\btest\.skip\()"
)
PINNED = re.compile(r"^([-+])\s*\"?([A-Za-z0-9_.\-]+)\"?\s*(?:==|:|=)\s*\"?[\^~>=v]*([0-9]+(?:\.[0-9]+)*)")


@dataclass
class Verdict:
    approve: bool
    reason: str


def rule_findings(diff: str) -> list[str]:
    """Scope creep visible in the diff itself."""
    findings: list[str] = []
    for chunk in diff.split("diff --git a/")[1:]:
        path = chunk.split(" ", 1)[0]
        header = chunk.split("\n@@", 1)[0]
        if "\ndeleted file mode" in header and TEST_PATH.search(path):
            findings.append(f"it deletes the test file {path}")
    for line in diff.splitlines():
        if SKIP_MARKERS.search(line):
            findings.append(f"it disables a test: {line[1:].strip()[:120]}")
    removed: dict[str, tuple[int, ...]] = {}
    for line in diff.splitlines():
        m = PINNED.match(line)
        if not m:
            continue
        version = tuple(int(p) for p in m.group(3).split("."))
        if m.group(1) == "-":
            removed[m.group(2)] = version
        elif m.group(2) in removed and version < removed[m.group(2)]:
            findings.append(f"it downgrades {m.group(2)}")
    return list(dict.fromkeys(findings))


@telemetry.traced(
    "agent.judge",
    attrs=lambda client, model, *a, **k: {"model": model},
    result=lambda verdict: {"approve": verdict.approve},
)
def review(client: anthropic.Anthropic, model: str, instruction: str, diff: str, meter: Meter) -> Verdict:
    findings = rule_findings(diff)
    if findings:
        return Verdict(False, "The change " + "; ".join(findings) + ". That is outside the request.")
    shown = diff if len(diff) <= MAX_DIFF else diff[:MAX_DIFF] + "\n[… diff trimmed …]"
    try:
        reply = client.messages.create(
            model=model,
            max_tokens=1024,
            system=JUDGE_SYSTEM,
            tools=[VERDICT_TOOL],
            tool_choice={"type": "tool", "name": "verdict"},
            messages=[{"role": "user", "content": f"<request>\n{instruction}\n</request>\n\n<diff>\n{shown}\n</diff>"}],
        )
    except anthropic.APIError as exc:
        raise model_error(exc) from None
    meter.add(reply.model or model, reply.usage)
    call = next((b for b in reply.content if b.type == "tool_use"), None)
    if call is None or not isinstance(call.input, dict):
        return Verdict(True, "The reviewer gave no verdict; approved by default.")
    return Verdict(bool(call.input.get("approve", True)), str(call.input.get("reason", "")).strip())
