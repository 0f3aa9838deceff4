"""What a change request says: the details card, commit message, timeline and notice texts.

Pure functions of the contract models, so the workflow keeps reading like the process and the
words are tested without a server. Running requests replay through these: change a text only
knowing that its old wording stays in their histories.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from honk.workflows.contract import (
    AgentOutcome,
    ArtifactInfo,
    BuildOutcome,
    BuildTargetRef,
    ChangeRequest,
    ChecksOutcome,
    Decision,
    PublishTask,
    RequestState,
    Stage,
    protected_changes_text,
)
from honk.workflows.contract_review import Review, first_files, review, short_stat

READY_FOR_REVIEW = "Ready for review: approve & merge, request changes, or cancel."
EXPIRED = "No decision before the approval deadline; the work branch was removed."


def web_page(request: ChangeRequest) -> str | None:
    """The repository's web page: the registry's `web_url`, else one derived from an
    https or ssh remote on a forge (GitHub, GitLab, Gitea all serve /tree/<branch>)."""
    if request.web_url:
        return request.web_url.rstrip("/")
    remote = request.remote.strip()
    found = re.match(
        r"^(?:https?://(?:[^@/]+@)?|ssh://(?:[^@/]+@)?|[^@/:]+@)([^/:]+)(?::\d+)?[:/](.+?)(?:\.git)?/?$", remote
    )
    if not found or remote.startswith(("file:", "/")):
        return None
    return f"https://{found.group(1)}/{found.group(2)}"


def compare_page(request: ChangeRequest, branch: str) -> str | None:
    """The forge's view of the change: `<web>/compare/<base>...<branch>` (GitLab: `/-/compare/`),
    or None when the repository has no known web page (a local or unknown remote)."""
    page = web_page(request)
    if page is None:
        return None
    gitlab = "gitlab" in page.split("/")[2].lower()
    return f"{page}{'/-' if gitlab else ''}/compare/{request.base_branch}...{branch}"


def reviewed(request: ChangeRequest, state: RequestState, checks: str = "") -> Review:
    """What the approver is shown: the diff stat, the changed files and where to read them."""
    return review(state.diff_stat, state.changed_files, state.links.work_branch, state.links.compare, checks)


def summary_task(
    request: ChangeRequest, state: RequestState, edited: AgentOutcome, checks: ChecksOutcome, age: timedelta
) -> PublishTask:
    """The summary page of a change with nothing to build: a publish without artifacts."""
    return PublishTask(
        request_id=state.request_id,
        repo=request.repo,
        build_number=int(age.total_seconds()),  # unique per publish, like build numbers
        commit=checks.head_sha,
        instruction=request.instruction,
        summary=edited.summary,
        artifacts=[],
        protected_changes=state.protected_changes,
        review=reviewed(request, state, checks_finished(checks)),
    )


def _code(text: str) -> str:
    """Inline markdown code that a file name cannot break out of."""
    return "`" + text.replace("`", "'").replace("\n", " ") + "`"


def _link(label: str, url: str) -> str:
    """A markdown link; brackets in the label and parentheses in the URL escaped."""
    return f"[{label.replace('[', '(').replace(']', ')')}]({url.replace('(', '%28').replace(')', '%29')})"


def card(request: ChangeRequest, state: RequestState) -> str:
    """The markdown card the Temporal UI shows as the workflow's current details: the
    instruction quoted (a blank line ends the quote), then the links, clickable."""
    s, links = state, state.links
    quoted = "\n".join(f"> {line}" if line.strip() else ">" for line in s.instruction.splitlines() or [""])
    lines = [
        f"### {s.stage.value}",
        "",
        f"**{request.repo}** · requested by {s.requester} · round {s.round}, attempt {s.attempt}",
        "",
        quoted,
        "",
    ]
    if links.work_branch:
        page = web_page(request)
        branch = _link(links.work_branch, f"{page}/tree/{links.work_branch}") if page else links.work_branch
        lines.append(f"- Work branch: {branch}")
    if links.compare:
        lines.append(f"- Compare: {_link('changes on ' + request.base_branch, links.compare)}")
    if links.install_page:
        lines.append(f"- Install page: {_link(links.install_page, links.install_page)}")
    if links.summary_page:
        lines.append(f"- Summary page: {_link(links.summary_page, links.summary_page)}")
    if links.merged_commit:
        page = web_page(request)
        commit = _link(links.merged_commit, f"{page}/commit/{links.merged_commit}") if page else links.merged_commit
        lines.append(f"- Merged commit: {commit}")
    if s.usage.input_tokens or s.usage.output_tokens:
        lines.append(
            f"- Tokens: {s.usage.input_tokens} in / {s.usage.output_tokens} out / "
            f"{s.usage.cache_read_tokens} cache read · ${s.usage.cost_usd:.4f}"
        )
    if s.changed_files:
        shown, more = first_files(s.changed_files)
        lines.append("- Changed files: " + ", ".join(map(_code, shown)) + (f" and {more} more" if more else ""))
    if s.diff_stat:  # fenced: a backtick in a file name cannot close the block
        lines.append("\n```\n" + short_stat(s.diff_stat, 1500).replace("`", "'") + "\n```")
    if s.protected_changes:
        lines.append(f"\n**{protected_changes_text(s.protected_changes)}**")
    if s.last_error and s.stage == Stage.FAILED:
        lines.append(f"\n**Error:** {s.last_error[:500]}")
    return "\n".join(lines).rstrip() + "\n"


def commit_title(instruction: str) -> str:
    first = instruction.strip().splitlines()[0] if instruction.strip() else "change"
    return first if len(first) <= 72 else first[:69] + "..."


def commit_body(requester: str, summary: str | None) -> str:
    parts = [f"Requested through Honk by {requester}."]
    if summary:
        parts.append(summary)
    return "\n\n".join(parts)


SUBJECT_LIMIT = 72


def commit_subject(instruction: str, summary: str | None = None) -> str:
    """A subject people would write: the instruction's first line (else the agent's summary's),
    capitalised, without a trailing period, cut at a word boundary within 72 characters."""
    lines = [line.strip() for text in (instruction, summary or "") for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else "Change requested through Honk"
    first = first.rstrip(".")
    first = first[:1].upper() + first[1:]
    if len(first) <= SUBJECT_LIMIT:
        return first
    cut = first[: SUBJECT_LIMIT - 1]
    if " " in cut:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:-") + "…"


def merge_body(requester: str, summaries: dict[int, str], reviews: list[str]) -> str:
    """Each round's summary, the reviewers' feedback that led to the next, and who asked."""
    parts = []
    several = len(summaries) > 1
    for number in sorted(summaries):
        text = summaries[number].strip()
        parts.append(f"Round {number}: {text}" if several else text)
    if reviews:
        parts.append("Review feedback:\n" + "\n".join(f"- {r}" for r in reviews))
    parts.append(f"Requested through Honk by {requester}.")
    return "\n\n".join(p for p in parts if p)


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
    return (
        "the agent made no change to the repository"
        + (f" (it said: {edited.summary})" if edited.summary else "")
        + "; nothing to review. If the base branch already does what was asked, there is nothing to do;"
        " otherwise start a new request that says what should differ."
    )


def checks_finished(outcome: ChecksOutcome) -> str:
    verdicts = ", ".join(f"{r.name} {'ok' if r.passed else 'FAILED'}" for r in outcome.runs)
    if outcome.reused:
        text = f"Checks passed on this tree during the agent's run; not run again: {verdicts}"
    else:
        text = f"Checks {'passed' if outcome.passed else 'failed'}: {verdicts or 'none configured'}"
    warning = protected_changes_text(outcome.protected_changes)
    return f"{text}. {warning}" if warning else text


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


def duration(span: timedelta | None) -> str:
    minutes = round((span or timedelta(0)).total_seconds() / 60)
    if minutes < 120:
        return f"{minutes} minute" + ("" if minutes == 1 else "s")
    return f"{minutes / 60:.0f} hours"


def no_worker(queue: str, waited: timedelta | None) -> str:
    return (
        f"no worker is serving queue {queue!r} (nothing picked the work up within {duration(waited)}); "
        "start a worker for that queue or fix the target's task_queue in .honk.toml"
    )


def build_blocked(failures: list[str]) -> str:
    return "The build cannot run:\n" + "\n".join(failures)


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
    return f"Merged into {base} as {sha}: the cancel came too late, the merge had already started"


CANCEL_AFTER_MERGE = "Cancel requested after the merge; the change is on the base, so the request stays merged"


def cancel_after_merge_failed(failure: str) -> str:
    return f"Cancelled while merging; nothing was merged ({failure})"
