"""The public contract of a Honk change request.

The Temporal UI, scripts (`temporal workflow signal ...`), the chat service and the CLI all
depend on these names and shapes; workflows and activities exchange only these models.
Keep this module free of side effects: the workflow sandbox imports it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import Enum
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from temporalio.common import SearchAttributeKey

from honk.workflows.contract_review import Review
from honk.workflows.contract_review import protected_changes_text as protected_changes_text

WORKFLOW_TYPE = "ChangeRequestWorkflow"
DEFAULT_TASK_QUEUE = "honk"

# Signals are durable even when no worker runs; the update answers at once.
SIGNAL_APPROVE = "approve"
SIGNAL_REQUEST_CHANGES = "request_changes"
SIGNAL_CANCEL = "cancel"
# The user's actions; each is also the name of its signal (one name per action everywhere).
Action = Literal["approve", "request_changes", "cancel"]
ACTIONS: tuple[Action, ...] = ("approve", "request_changes", "cancel")
UPDATE_DECIDE = "decide"
QUERY_STATUS = "status"

# Activity names; steps.py declares each with its types. Test stand-ins register under them.
ACTIVITY_PREPARE = "prepare_workspace"
ACTIVITY_AGENT = "run_agent"
ACTIVITY_CHECKS = "run_checks"
ACTIVITY_BUILD = "build_target"
ACTIVITY_PUBLISH = "publish_build"
ACTIVITY_NOTIFY = "notify"
ACTIVITY_MERGE = "merge_change"
ACTIVITY_CLEANUP = "cleanup_workspace"

SA_REPO = SearchAttributeKey.for_keyword("HonkRepo")
SA_STAGE = SearchAttributeKey.for_keyword("HonkStage")
SA_REQUESTER = SearchAttributeKey.for_keyword("HonkRequester")
SEARCH_ATTRIBUTES = (SA_REPO, SA_STAGE, SA_REQUESTER)


class Stage(str, Enum):
    RECEIVED = "RECEIVED"
    PREPARING = "PREPARING"
    EDITING = "EDITING"
    CHECKING = "CHECKING"
    BUILDING = "BUILDING"
    PUBLISHING = "PUBLISHING"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    MERGING = "MERGING"
    MERGED = "MERGED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"

    @property
    def terminal(self) -> bool:
        return self in (Stage.MERGED, Stage.FAILED, Stage.CANCELLED, Stage.EXPIRED)


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Origin(Model):
    """Where the request came from; replies go back there."""

    kind: Literal["cli", "slack"] = "cli"
    team: str | None = None
    channel: str | None = None
    thread_ts: str | None = None
    user: str | None = Field(None, description="who asked, in the chat's terms (a Slack user id)")


class RequestOptions(Model):
    max_check_attempts: int = Field(3, ge=1, le=20, description="agent↔checks repairs per round")
    max_rounds: int = Field(5, ge=1, le=50, description="request-changes rounds")
    max_merge_repairs: int = Field(2, ge=0, le=10, description="merge conflict / failing tree repairs")
    approval_timeout: timedelta = timedelta(days=7)
    reminder_before: timedelta = timedelta(days=1)
    merge_strategy: Literal["squash", "merge", "rebase"] = "squash"
    history_limit: int = Field(10_000, ge=50, description="continue-as-new past this many events")
    heartbeat_timeout: timedelta = Field(timedelta(seconds=60), description="silent worker: retry elsewhere")
    queue_wait: timedelta = Field(timedelta(minutes=10), gt=timedelta(0), description="no worker on a queue: fail")
    outage_tolerance: timedelta = Field(timedelta(minutes=30), ge=timedelta(0), description="retry through outages")
    # Let the agent change protected paths (.honk.toml, check scripts, CI configuration).
    allow_protected_changes: bool = False


class Decision(Model):
    """Payload of the approve / request_changes / cancel signals and of the decide update, e.g.
    ``{"by": "U123", "text": "blue"}`` (older ``comment`` reads as text). README "Approvals"."""

    by: str = ""
    text: str = Field("", validation_alias=AliasChoices("text", "comment"))
    id: str = Field("", description="the same id is applied once")
    commit: str = Field("", description="approve: the commit the approver reviewed")
    build: int | None = Field(None, description="approve: the build number the approver installed")


class DecisionUpdate(Decision):
    action: Action


class DecisionOutcome(Model):
    accepted: bool
    message: str
    stage: Stage


NoteKind = Literal["stage", "info", "decision", "refused", "warning", "error"]


class TimelineEntry(Model):
    at: datetime
    stage: Stage
    message: str
    kind: NoteKind = "info"


class Links(Model):
    work_branch: str | None = None
    build: str | None = None
    install_page: str | None = None
    merged_commit: str | None = None
    install_qr: str | None = Field(None, description="PNG QR code of the install page link")
    compare: str | None = Field(None, description="the forge's compare view of the work branch")
    summary_page: str | None = Field(None, description="the change's review page when nothing is built")


class Usage(Model):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0

    def plus(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            cost_usd=round(self.cost_usd + other.cost_usd, 6),
        )


class Feedback(Model):
    """A request_changes text waiting for the agent's next round."""

    by: str
    text: str
    at: datetime


class ApprovalPolicy(Model):
    """Who may approve, per repository (registry ``honk.toml``)."""

    allow_self_approval: bool = Field(True, description="the requester may approve their own change")
    min_approvers: int = Field(1, ge=1, le=10, description="distinct approvers needed before merging")
    protected_paths: list[str] = Field(default_factory=list, description="glob patterns")
    protected_approvers: list[str] = Field(default_factory=list, description="may approve protected_paths")


class ChangeRequest(Model):
    """The one input of ChangeRequestWorkflow. The starter resolves the repository from the
    registry, so the workflow carries everything it needs (and nothing secret)."""

    repo: str
    remote: str
    instruction: str
    requester: str
    approvers: list[str] = Field(default_factory=list, description="'*' allows anyone")
    origin: Origin = Field(default_factory=Origin)
    base_branch: str = "main"
    options: RequestOptions = Field(default_factory=RequestOptions)
    # The repository's web page (registry `web_url`), for clickable branch links; optional.
    web_url: str | None = None
    policy: ApprovalPolicy = Field(default_factory=ApprovalPolicy)
    # Set only by continue-as-new: the state the previous run handed over.
    carried: RequestState | None = None


class ArtifactInfo(Model):
    target: str
    name: str
    path: str
    sha256: str
    size: int
    url: str | None = None
    stored_key: str | None = Field(
        None, description="already in a shared artifact store (uploaded by the build worker)"
    )
    # What the artifact says about itself (read from the file); None when it does not say.
    kind: Literal["apk", "aab", "ipa", "ota", "file"] = "file"
    content_type: str | None = None
    app_name: str | None = None
    package: str | None = Field(None, description="Android application id")
    bundle_id: str | None = Field(None, description="iOS CFBundleIdentifier")
    version_name: str | None = Field(None, description="versionName / CFBundleShortVersionString")
    version_code: str | None = Field(None, description="versionCode / CFBundleVersion")
    min_os: str | None = Field(None, description="minSdkVersion / MinimumOSVersion")
    signer_sha256: str | None = Field(None, description="SHA-256 of the APK signing certificate")
    platforms: list[str] = Field(default_factory=list, description="OTA bundle: android, ios")
    runtime_version: str | None = Field(None, description="OTA bundle: Expo runtime version")
    install_url: str | None = Field(None, description="iOS: the itms-services:// install link")


class Progress(Model):
    """How far a request has come: the fields of both the carried state and the view."""

    request_id: str
    repo: str
    instruction: str
    requester: str
    stage: Stage = Stage.RECEIVED
    round: int = 0
    attempt: int = 0
    agent_runs: int = 0
    builds: int = 0
    timeline: list[TimelineEntry] = Field(default_factory=list)
    links: Links = Field(default_factory=Links)
    artifacts: list[ArtifactInfo] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    usage_by_model: dict[str, Usage] = Field(default_factory=dict)
    last_error: str | None = None
    last_summary: str | None = None
    pending_feedback: list[Feedback] = Field(default_factory=list, description="request_changes texts queued")
    round_summaries: dict[int, str] = Field(default_factory=dict, description="the agent's last summary of each round")
    reviews: list[str] = Field(default_factory=list, description="reviewers' feedback, as given to the agent")
    tested_sha: str | None = None
    # Protected paths (.honk.toml, check scripts, CI) the change modifies, as last checked.
    protected_changes: list[str] = Field(default_factory=list)
    build_number: int | None = Field(None, description="the build awaiting approval")
    changed_files: list[str] = Field(default_factory=list, description="paths the change touches")
    diff_stat: str | None = Field(None, description="git diff --stat of the change, as last checked")
    approved_by: str | None = None
    approved_sha: str | None = Field(None, description="the commit the approval binds to")
    approvals: list[str] = Field(default_factory=list, description="distinct approvers of the current commit")
    decision_ids: list[str] = Field(default_factory=list, description="decisions applied (repeats are ignored)")
    approval_deadline: datetime | None = None
    reminded: bool = False
    continued: int = 0


class RequestState(Progress):
    """The workflow's own record: mutated as the request moves, handed over whole on
    continue-as-new (``ChangeRequest.carried``)."""

    prepared: PreparedWorkspace | None = None  # what the workspace declares: targets, checks

    def view(self) -> RequestStatus:
        return RequestStatus.model_validate(self.model_dump())


class RequestStatus(Progress):
    """What the `status` query shows and the workflow returns (a snapshot of the state);
    scripts, the chat service and the CLI read these fields."""


class WorkspaceRef(Model):
    """Identifies a request's workspace; any worker can rebuild it from the remote."""

    request_id: str
    repo: str
    remote: str
    base_branch: str
    work_branch: str
    # The work branch tip Honk last pushed, when known: a host still holding the workspace
    # there resets it instead of fetching. Unset where the newest base matters (merge, repair).
    head_sha: str | None = None


class BuildTargetRef(Model):
    name: str
    task_queue: str | None = None
    timeout_s: int | None = Field(None, description="the target's configured build timeout")


class PreparedWorkspace(Model):
    base_sha: str
    head_sha: str
    resumed: bool = False
    targets: list[BuildTargetRef] = Field(default_factory=list)
    checks: list[str] = Field(default_factory=list)
    checks_timeout_s: int | None = Field(None, description="the configured check timeouts, added up")


class AgentTask(Model):
    workspace: WorkspaceRef
    instruction: str
    feedback: list[str] = Field(default_factory=list)
    round: int
    attempt: int
    invocation: int
    update_base: bool = Field(False, description="merge the latest base in first (conflict repair)")
    allow_protected_changes: bool = Field(
        False, description="the agent may change protected paths (.honk.toml, check scripts, CI)"
    )
    rebase: bool = Field(False, description="with update_base: rebase onto the base instead of merging it in")


class CheckRun(Model):
    name: str
    command: list[str]
    exit_code: int | None
    duration_s: float
    output: str = Field("", description="trimmed: what matters for fixing it")
    log_path: str | None = None
    timed_out: bool = False

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


class ChecksOutcome(Model):
    passed: bool
    head_sha: str
    runs: list[CheckRun] = Field(default_factory=list)
    diff_empty: bool = False
    # Protected paths (.honk.toml, check scripts, CI) this change modifies.
    protected_changes: list[str] = Field(default_factory=list)
    reused: bool = Field(False, description="these runs passed on the same tree during the agent's run")
    diff_stat: str = Field("", description="git diff --stat of the checked commit against the base")

    def failure_report(self) -> str:
        parts = []
        for run in self.runs:
            if not run.passed:
                why = "timed out" if run.timed_out else f"exit code {run.exit_code}"
                parts.append(f"Check `{run.name}` failed ({why}):\n{run.output}".rstrip())
        return "\n\n".join(parts)


class AgentOutcome(Model):
    status: Literal["finished", "no_changes", "budget_exhausted", "vetoed"] = "finished"
    summary: str
    changed_files: list[str] = Field(default_factory=list)
    head_sha: str
    backend: str
    model: str = ""
    turns: int = 0
    usage: Usage = Field(default_factory=Usage)
    usage_by_model: dict[str, Usage] = Field(default_factory=dict)
    # The agent's own passing run of the pushed tree; the CHECKING stage takes it as it is.
    checks: ChecksOutcome | None = None


class ChecksTask(Model):
    workspace: WorkspaceRef
    attempt: int


class BuildTask(Model):
    workspace: WorkspaceRef
    target: str
    build_number: int
    in_place: bool = Field(False, description="the only target, on the main queue: build in the request's workspace")


class BuildOutcome(Model):
    target: str
    head_sha: str
    artifacts: list[ArtifactInfo]
    log_path: str | None = None
    duration_s: float = 0.0


class PublishTask(Model):
    request_id: str
    repo: str
    build_number: int
    commit: str
    instruction: str
    summary: str
    artifacts: list[ArtifactInfo]
    protected_changes: list[str] = Field(default_factory=list)
    review: Review | None = Field(None, description="diff stat, files, branch link; alone: a summary page")


class Published(Model):
    install_page_url: str
    artifacts: list[ArtifactInfo]
    # A QR code of `install_page_url` for the chat step: a PNG beside the page (its link and
    # the file on the publishing worker) and the same code as inline SVG.
    qr_png_url: str | None = None
    qr_png_path: str | None = None
    qr_svg: str | None = None
    manifest_url: str | None = Field(None, description="iOS manifest.plist, when there is an IPA")
    expires_at: datetime | None = Field(None, description="when the links stop working")


NoticeEvent = Literal[
    "status", "received", "build_ready", "needs_approval", "reminder", "refused", "merged", "failed", "cancelled",
    "expired", "feedback_queued",
]  # fmt: skip
# Events that leave the request's status message alone; every other one rewrites it.
BESIDE_STATUS: tuple[NoticeEvent, ...] = ("refused", "reminder", "feedback_queued")


class Notice(Model):
    request_id: str
    repo: str
    event: NoticeEvent
    stage: Stage
    text: str
    origin: Origin = Field(default_factory=Origin)
    links: Links = Field(default_factory=Links)
    protected_changes: list[str] = Field(default_factory=list, description="shown with the approval request")
    review: Review | None = Field(None, description="what changed, with the approval request")


class MergeTask(Model):
    workspace: WorkspaceRef
    strategy: Literal["squash", "merge", "rebase"] = "squash"
    title: str
    body: str = ""
    requested_by: str
    approved_by: str
    tested_sha: str


class MergeOutcome(Model):
    commit_sha: str
    already_merged: bool = False
    base_moved: bool = False
    rechecked: bool = Field(False, description="checks re-ran on the combined tree before the push")


class CleanupTask(Model):
    workspace: WorkspaceRef
    delete_remote_branch: bool = True
    expect_sha: str | None = Field(None, description="delete the work branch only while its tip is this")


ChangeRequest.model_rebuild()
