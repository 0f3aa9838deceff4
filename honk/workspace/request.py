"""What a request's WorkspaceRef may hold, and how its failures are reported and logged."""

from __future__ import annotations

from typing import Any

from honk.errors import HonkError, permanent
from honk.git.refs import valid_branch
from honk.redact import redact
from honk.workflows.contract import WorkspaceRef


def validate_ref(ref: WorkspaceRef) -> None:
    """Values become git arguments: refuse anything git could read as an option or that
    would point the work branch at the base."""
    problems = []
    if not ref.remote or ref.remote.startswith("-"):
        problems.append(f"invalid remote {redact(ref.remote)!r}")
    for label, branch in (("base", ref.base_branch), ("work", ref.work_branch)):
        if not valid_branch(branch):
            problems.append(f"invalid {label} branch name {branch!r}")
    if ref.work_branch == ref.base_branch:
        problems.append(f"work branch must differ from base branch {ref.base_branch!r}")
    if problems:
        raise permanent("; ".join(problems), "InvalidWorkspace")


def remote_error(ref: WorkspaceRef, problem: str) -> HonkError:
    """The remote refused in a way no retry fixes (missing, unauthorised, no base branch)."""
    return permanent(
        f"remote {redact(ref.remote)} (base branch {ref.base_branch!r}, work branch {ref.work_branch!r}): {problem}",
        "RemoteError",
    )


def log_fields(ref: WorkspaceRef, **more: Any) -> dict[str, Any]:
    return {
        "request_id": ref.request_id,
        "repo": ref.repo,
        "remote": redact(ref.remote),
        "work_branch": ref.work_branch,
        **more,
    }
