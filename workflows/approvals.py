"""What an approval binds to, and who may give one (issue 12): the rules a request started on
this code applies on top of the rule book in ``decisions`` (requests started before keep the
old rules; see ``ChangeRequestWorkflow.binding``)."""

from __future__ import annotations

from fnmatch import fnmatch

from honk.workflows import wording
from honk.workflows.contract import Action, ChangeRequest, Decision, RequestState

MIN_SHA = 4  # git's shortest abbreviation
MAX_ID = 100
KEEP_IDS = 500  # decision ids remembered for repeats


def refusal(
    request: ChangeRequest, state: RequestState, action: Action, decision: Decision, approved: bool
) -> str | None:
    """Why this decision may not be applied under the binding rules, or None."""
    who = decision.by.strip()
    if len(decision.id) > MAX_ID:
        return f"'id' is {len(decision.id)} characters; the limit is {MAX_ID}"
    if action == "request_changes" and approved:
        return f"the change was approved by {state.approved_by} and is being merged"
    if action != "approve":
        return None
    policy = request.policy
    if not policy.allow_self_approval and who == request.requester:
        return wording.self_approval(who, request.repo)
    if state.pending_feedback:
        first = state.pending_feedback[0]
        return wording.changes_pending(first.by, first.at)
    named = decision.commit.strip().lower()
    tested = (state.tested_sha or "").lower()
    if named and (len(named) < MIN_SHA or not tested.startswith(named)):
        return wording.stale_approval(f"commit {named[:12]}", state.tested_sha, state.build_number)
    if decision.build is not None and decision.build != state.build_number:
        return wording.stale_approval(f"build #{decision.build}", state.tested_sha, state.build_number)
    protected = [f for f in state.changed_files if any(fnmatch(f, p) for p in policy.protected_paths)]
    if protected and who not in policy.protected_approvers:
        return wording.protected_paths(who, protected)
    if who in state.approvals:
        return f"{who} already approved this commit; {policy.min_approvers - len(state.approvals)} other approver(s) needed"
    return None


def seen(state: RequestState, decision: Decision) -> bool:
    return bool(decision.id) and decision.id in state.decision_ids


def remember(state: RequestState, decision: Decision) -> None:
    if decision.id and decision.id not in state.decision_ids:
        state.decision_ids = [*state.decision_ids[-(KEEP_IDS - 1) :], decision.id]


def approve(request: ChangeRequest, state: RequestState, who: str) -> tuple[bool, str]:
    """Count one approval of the commit awaiting approval; True when enough have come."""
    state.approvals.append(who)
    state.approved_sha = state.tested_sha
    missing = max(request.policy.min_approvers - len(state.approvals), 0)
    if not missing:
        state.approved_by = ", ".join(state.approvals)
    return not missing, wording.approved(who, state.tested_sha, state.build_number, missing)


def reset(state: RequestState) -> None:
    """A new commit awaits approval: earlier approvals do not carry over."""
    state.approvals = []
    state.approved_by = None
    state.approved_sha = None
