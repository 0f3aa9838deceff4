"""What a change request says: the details card, commit message, timeline and notice texts.

Pure functions of the contract models, so the workflow keeps reading like the process and the
words are tested without a server. Running requests replay through these: change a text only
knowing that its old wording stays in their histories.
"""

from __future__ import annotations

from datetime import datetime

from honk.workflows.contract import (
    AgentOutcome,
    ArtifactInfo,
    BuildOutcome,
    BuildTargetRef,
    ChangeRequest,
    ChecksOutcome,
    Decision,
    RequestState,
    Stage,
)

READY_FOR_REVIEW = "Ready for review: approve & merge, request changes, or cancel."
EXPIRED = "No decision before the approval deadline; the work branch was removed."


def card(request: ChangeRequest, state: RequestState) -> str:
    """The markdown card the Temporal UI shows as the workflow's current details."""
    s, links = state, state.links
    lines = [
        f"### {s.stage.value}",
        f"**{request.repo}** · requested by {s.requester} · round {s.round}, attempt {s.attempt}",
        "",
        f"> {s.instruction}",
    ]
    for label, value in (
        ("Work branch", links.work_branch),
        ("Install page", links.install_page),
        ("Merged commit", links.merged_commit),
    ):
        if value:
            lines.append(f"- {label}: `{value}`")
    if s.usage.input_tokens or s.usage.output_tokens:
        lines.append(
            f"- Tokens: {s.usage.input_tokens} in / {s.usage.output_tokens} out / "
            f"{s.usage.cache_read_tokens} cache read · ${s.usage.cost_usd:.4f}"
        )
    if s.last_error and s.stage == Stage.FAILED:
        lines.append(f"\n**Error:** {s.last_error[:500]}")
    return "\n".join(lines)


def commit_title(instruction: str) -> str:
    first = instruction.strip().splitlines()[0] if instruction.strip() else "change"
    return first if len(first) <= 72 else first[:69] + "..."


def commit_body(requester: str, summary: str | None) -> str:
    parts = [f"Requested through Honk by {requester}."]
    if summary:
        parts.append(summary)
    return "\n\n".join(parts)


def agent_finished(outcome: AgentOutcome) -> str:
    changed = ", ".join(outcome.changed_files[:5]) or "no files"
    return (
        f"Agent ({outcome.backend}, {outcome.model}, {outcome.turns} turns) {outcome.status}: "
        f"{outcome.summary} [{changed}]"
    )


def editing(round: int, attempt: int) -> str:
    return f"Agent editing (round {round}, attempt {attempt})"


def attempt_failed(attempt: int) -> str:
    return f"Attempt {attempt} failed; sending the failure back to the agent"


def no_change(edited: AgentOutcome) -> str:
    return "the agent made no change to the repository" + (f" (it said: {edited.summary})" if edited.summary else "")


def checks_finished(outcome: ChecksOutcome) -> str:
    verdicts = ", ".join(f"{r.name} {'ok' if r.passed else 'FAILED'}" for r in outcome.runs)
    return f"Checks {'passed' if outcome.passed else 'failed'}: {verdicts or 'none configured'}"


def checks_still_failing(attempt: int, round: int, failure: str) -> str:
    return f"checks still failing after {attempt} attempts in round {round}:\n{failure}"


def building(targets: list[BuildTargetRef]) -> str:
    return "Building " + ", ".join(t.name + (f" (on {t.task_queue})" if t.task_queue else "") for t in targets)


def artifact(a: ArtifactInfo) -> str:
    """The file and what it says about itself: the id and version a phone will install."""
    app = a.package or a.bundle_id
    version = a.version_name + (f" ({a.version_code})" if a.version_code else "") if a.version_name else a.version_code
    about = " ".join(x for x in (app, version) if x)
    return f"{a.name} ({a.size} bytes{', ' + about if about else ''})"


def built(outcome: BuildOutcome) -> str:
    return f"Built {outcome.target} in {outcome.duration_s:.0f}s: " + ", ".join(artifact(a) for a in outcome.artifacts)


def reminder(deadline: datetime) -> str:
    return f"Reminder: this request expires at {deadline:%Y-%m-%d %H:%M} UTC unless approved."


def merge_gave_up(failure: Exception, repairs: int) -> str:
    return f"{failure} (gave up after {repairs} repair rounds; resolve it by hand or start a new request)"


def cancelled(cancellation: Decision | None) -> str:
    if cancellation is None:
        return "Cancelled"
    words = cancellation.text.strip()
    return f"Cancelled by {cancellation.by}" + (f": {words}" if words else "")


def refused(action: str, by: str, refusal: str) -> tuple[str, str]:
    """The timeline entry and the thread notice for a refused decision."""
    return (
        f"Refused {action} from {by or 'unknown'}: {refusal}",
        f"{by or 'Someone'} tried to {action.replace('_', ' ')}: {refusal}",
    )


# --------------------------------------------------------------------------- approvals


def short(sha: str | None) -> str:
    return (sha or "unknown")[:12]


def approved(who: str, sha: str | None, build: int | None, missing: int) -> str:
    what = f"commit {short(sha)}" + (f", build #{build}" if build else "")
    more = f"; {missing} more approval{'s' if missing > 1 else ''} needed" if missing else ""
    return f"Approved by {who} ({what}){more}"


def stale_approval(named: str, sha: str | None, build: int | None) -> str:
    offered = f"commit {short(sha)}" + (f" (build #{build})" if build else "")
    return f"the approval names {named}, but what awaits approval is {offered}; review that and approve it"


def changes_pending(by: str, at: datetime) -> str:
    return f"changes were requested at {at:%Y-%m-%d %H:%M} UTC by {by}; approve the next build"


def self_approval(who: str, repo: str) -> str:
    return (
        f"{who} requested this change and {repo} does not allow approving your own change "
        "(allow_self_approval = false); ask another approver"
    )


def protected_paths(who: str, paths: list[str]) -> str:
    return f"{who} may not approve changes to protected paths ({', '.join(paths[:5])}); ask a protected approver"


def needs_new_approval(sha: str | None) -> str:
    return f"The change was repaired (now commit {short(sha)}); it needs a new approval"


def merged_despite_cancel(base: str, sha: str) -> str:
    return f"Merged into {base} as {sha}: the cancel arrived while the merge was running, and the push had happened"


def cancel_after_merge_failed(failure: str) -> str:
    return f"Cancelled while merging; nothing was merged ({failure})"
