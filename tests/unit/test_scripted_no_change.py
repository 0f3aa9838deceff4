"""The scripted model explains a change it could not make (README's flow run twice), instead
of claiming the recorded summary."""

from __future__ import annotations

from honk.cli.scripted_model import DEFAULT_SCRIPT, ScriptedModel

PROMPT = "<request>\nMake the greeting friendlier\n</request>\n<round>1</round>\n<attempt>1</attempt>"


def conversation(error: bool) -> list[dict]:
    result = {"type": "tool_result", "tool_use_id": "t1", "content": "old_text not found in res/values/strings.xml"}
    if error:
        result["is_error"] = True
    else:
        result["content"] = "edited res/values/strings.xml"
    return [
        {"role": "user", "content": PROMPT},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "edit_file", "input": {}}]},
        {"role": "user", "content": [result]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t2", "name": "run_checks", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t2", "content": "ok"}]},
    ]


def finish_summary(model: ScriptedModel, messages: list[dict]) -> str:
    reply = model.respond({"model": "m", "messages": messages, "tools": [], "system": "agent"})
    (call,) = [b for b in reply["content"] if b["type"] == "tool_use"]
    assert call["name"] == "finish"
    return call["input"]["summary"]


def test_readme_request_has_a_scripted_reply_and_a_failed_edit_says_why():
    model = ScriptedModel.from_file(DEFAULT_SCRIPT)
    assert "friendlier" in model.match(PROMPT)["summary"]
    assert "friendlier" in finish_summary(model, conversation(error=False))
    why = finish_summary(model, conversation(error=True))
    assert why.startswith("[scripted model] No change made: the recorded edit did not apply (old_text not found")
    assert "already contains the requested text '<string name=\"greeting\">Hi there, welcome aboard!</string>'" in why
    assert "Run `honk demo` to start the sample remote over" in why
