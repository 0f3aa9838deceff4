"""What the agent is told: a stable system prompt (cached), the repository's own
instructions, the request and the feedback of earlier rounds.

The user prompt marks its parts with tags (<request>, <round>, <attempt>, <feedback>), so
the model can tell them apart (and the offline scripted model can match on them).
"""

from __future__ import annotations

from pathlib import Path

from honk.workflows.contract import AgentTask

MAX_INSTRUCTIONS = 20_000
INSTRUCTION_FILES = ("AGENTS.md", "CLAUDE.md")

SYSTEM_PROMPT = """\
You are Honk's coding agent. An engineer asked for a change to this repository from a chat \
thread; you make that change and nothing else.

How to work:
- Explore with list_files, search and read_file before editing. Paths are relative to the \
repository root; you cannot leave the repository or touch .git.
- Edit with edit_file (exact, unique replacement) or write_file; delete_file removes a file.
- Verify with run_checks: it runs the repository's own checks and shows what failed.
- When the change is complete and the checks pass, call finish with a two-line summary for \
the reviewer.

Rules: keep the change small and focused on the request. Never delete or disable tests, \
never downgrade dependencies, never rewrite unrelated code. You have no network and no shell; \
Honk commits and pushes your work, and a human approves it before it merges."""


def repository_instructions(root: Path, configured: str | None) -> str:
    """AGENTS.md / CLAUDE.md (or the configured file), trimmed, or ''."""
    names = (configured,) if configured else INSTRUCTION_FILES
    for name in names:
        path = (root / name).resolve()
        if path.is_relative_to(root.resolve()) and path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            return f"Repository instructions ({name}):\n{text[:MAX_INSTRUCTIONS]}"
    return ""


def system_prompt(root: Path, configured: str | None) -> str:
    extra = repository_instructions(root, configured)
    return f"{SYSTEM_PROMPT}\n\n{extra}" if extra else SYSTEM_PROMPT


def user_prompt(task: AgentTask, resumed: str = "") -> str:
    parts = [
        f"<request>\n{task.instruction}\n</request>",
        f"<round>{task.round}</round><attempt>{task.attempt}</attempt>",
    ]
    if task.feedback:
        joined = "\n\n".join(task.feedback)
        parts.append(
            "Feedback from earlier rounds (check failures, reviewers, merge conflicts); "
            f"address all of it:\n<feedback>\n{joined}\n</feedback>"
        )
    if resumed:
        parts.append(f"An earlier run was interrupted; its work is already in the files:\n{resumed}")
    return "\n\n".join(parts)
