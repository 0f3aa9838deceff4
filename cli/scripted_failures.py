"""What the scripted model says when its recorded edits did not apply: usually the sample
already has the change (README's flow run twice), and the user should hear that, not the
recorded summary of a change that never happened."""

from __future__ import annotations

from typing import Any


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")


def finish_saying_why(reply: dict[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """When the recorded edits failed (their text is not in the file, usually because the
    change is already there), finish saying so and what to do, not with the recorded summary."""
    failed = [
        _text(block.get("content", ""))
        for m in messages
        if m.get("role") == "user" and isinstance(m.get("content"), list)
        for block in m["content"]
        if isinstance(block, dict) and block.get("type") == "tool_result" and block.get("is_error")
    ]
    if not failed:
        return None
    wanted = next((e.get("with") for e in reply["edits"] if "with" in e), None)
    summary = (
        "[scripted model] No change made: the recorded edit did not apply ("
        + "; ".join(f[:200] for f in failed[:2])
        + ")."
        + (f" The file probably already contains the requested text {wanted.strip()!r}." if wanted else "")
        + " Run `honk demo` to start the sample remote over, or ask for a change it does not have yet."
    )
    return {"tools": [{"name": "finish", "input": {"summary": summary}}]}
