"""What clients (CLI, demo, chat) do with change requests, through the contract only."""

from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.client import (
    WorkflowExecutionStatus as Status,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.service import RPCError, RPCStatusCode

from honk import telemetry
from honk.config.registry import Registry, RegistryError
from honk.config.settings import Settings
from honk.workflows.contract import (
    ACTIONS,
    QUERY_STATUS,
    SA_REPO,
    SA_REQUESTER,
    SA_STAGE,
    UPDATE_DECIDE,
    WORKFLOW_TYPE,
    ApprovalPolicy,
    ChangeRequest,
    DecisionOutcome,
    DecisionUpdate,
    Origin,
    RequestOptions,
    RequestStatus,
    Stage,
)

MAX_INSTRUCTION = 4000
MEMO_INSTRUCTION = "instruction"


class RequestError(Exception):
    """A client-side problem the user can fix; the message says what."""


class Refused(RequestError):
    """The workflow refused a decision; the message says why and who may decide."""


@dataclass
class Listed:
    request_id: str
    repo: str
    stage: str
    requester: str
    started: datetime | None
    status: str
    instruction: str = ""


def new_request_id(repo: str) -> str:
    return f"honk-{repo}-{secrets.token_hex(4)}"


_SLACK_ID = re.compile(r"^[A-Z0-9]{2,40}$")
_SLACK_TS = re.compile(r"^[0-9]{1,12}\.[0-9]{1,9}$")


def slack_request_id(team: str, channel: str, thread_ts: str) -> str:
    """The id of the request started in a Slack thread. Derived from the thread alone, so a
    retried event, a double click or a second chat replica all name the same workflow."""
    if not (_SLACK_ID.match(team or "") and _SLACK_ID.match(channel or "") and _SLACK_TS.match(thread_ts or "")):
        raise RequestError(f"not a Slack thread reference: team={team!r} channel={channel!r} ts={thread_ts!r}")
    return f"honk-slack-{team}-{channel}-{thread_ts}"


@telemetry.traced(
    "request.start",
    attrs=lambda *a, **k: {
        "repo": k.get("repo"),
        "requester": k.get("requester"),
        "origin": k["origin"].kind if k.get("origin") is not None else "cli",
    },
    result=lambda handle: {"request_id": handle.id},
)
async def start_request(
    client: Client,
    settings: Settings,
    registry: Registry,
    *,
    repo: str,
    instruction: str,
    requester: str,
    origin: Origin | None = None,
    request_id: str | None = None,
    options: RequestOptions | None = None,
    id_conflict_policy: WorkflowIDConflictPolicy = WorkflowIDConflictPolicy.FAIL,
) -> WorkflowHandle:
    """Start a request. With a derived `request_id`, a second start of the same id raises
    `WorkflowAlreadyStartedError` (FAIL, the default: the caller learns it was a duplicate)
    or returns the running one (USE_EXISTING); a closed one is never started again."""
    instruction = instruction.strip()
    if not instruction:
        raise RequestError("the instruction is empty: say what should change")
    if len(instruction) > MAX_INSTRUCTION:
        raise RequestError(f"the instruction is {len(instruction)} characters; the limit is {MAX_INSTRUCTION}")
    entry = registry.get(repo)
    if not entry.may_request(requester):
        raise RegistryError(f"{requester} may not request changes to {repo}")
    options = options or RequestOptions()
    options = options.model_copy(update={"merge_strategy": entry.merge_strategy})
    request = ChangeRequest(
        repo=entry.name,
        remote=entry.remote,
        instruction=instruction,
        requester=requester,
        approvers=entry.approvers,
        origin=origin or Origin(),
        base_branch=entry.base_branch,
        options=options,
        web_url=entry.web_url,
        policy=ApprovalPolicy(
            allow_self_approval=entry.allow_self_approval,
            min_approvers=entry.min_approvers,
            protected_paths=entry.protected_paths,
            protected_approvers=entry.protected_approvers,
        ),
    )
    handle = await client.start_workflow(
        WORKFLOW_TYPE,
        request,
        id=request_id or new_request_id(entry.name),
        task_queue=settings.task_queue,
        result_type=RequestStatus,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        id_conflict_policy=id_conflict_policy,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(SA_REPO, entry.name),
                SearchAttributePair(SA_STAGE, Stage.RECEIVED.value),
                SearchAttributePair(SA_REQUESTER, requester),
            ]
        ),
        static_summary=instruction[:400],
        # Listed with the request (a list does not carry the summary); encoded like payloads.
        memo={MEMO_INSTRUCTION: instruction[:400]},
        static_details=f"Repository **{entry.name}** · requested by {requester}",
    )
    telemetry.count(
        client,
        "honk_requests_started",
        "Requests started, by repository and origin",
        repo=entry.name,
        origin=request.origin.kind,
    )
    return handle


async def find_request(client: Client, request_id: str):
    """The request's description, or None when there is no request with that id."""
    try:
        return await describe(client, request_id)
    except RequestError:
        return None


async def describe(client: Client, request_id: str):
    try:
        return await client.get_workflow_handle(request_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise RequestError(f"no request with id {request_id!r}") from None
        raise


async def get_status(client: Client, request_id: str, *, query_timeout: float = 10.0) -> RequestStatus:
    """The request's full view: its result once closed, otherwise the live query."""
    info = await describe(client, request_id)
    handle = client.get_workflow_handle(request_id, result_type=RequestStatus)
    if info.status == Status.COMPLETED:
        return await handle.result()
    try:
        return await handle.query(QUERY_STATUS, result_type=RequestStatus, rpc_timeout=timedelta(seconds=query_timeout))
    except RPCError as exc:
        if info.status == Status.RUNNING:
            raise RequestError(
                f"request {request_id} is running but no worker answered its status query "
                f"(start one with `honk worker` or `honk dev`): {exc.message}"
            ) from None
        raise RequestError(f"request {request_id} ended as {info.status.name}: {exc.message}") from None


async def decide(
    client: Client,
    request_id: str,
    action: str,
    by: str,
    text: str = "",
    *,
    commit: str = "",
    answer_within: float = 10.0,
) -> DecisionOutcome:
    """Send a decision through the validated update for an immediate yes/no. When no worker
    answers in time, fall back to the durable signal; it is applied (or refused and recorded)
    when a worker picks the request up. Both carry one id, so the workflow applies it once."""
    if action not in ACTIONS:
        raise RequestError(f"unknown action {action!r}")
    info = await describe(client, request_id)
    if info.status != Status.RUNNING:
        raise RequestError(f"request {request_id} has already ended ({info.status.name})")
    handle = client.get_workflow_handle(request_id)
    fields = {"by": by, "text": text, "id": uuid.uuid4().hex, "commit": commit}
    payload = DecisionUpdate.model_validate({"action": action, **fields})
    try:
        outcome = await handle.execute_update(
            UPDATE_DECIDE,
            payload,
            result_type=DecisionOutcome,
            rpc_timeout=timedelta(seconds=answer_within),
        )
        if not outcome.accepted:  # refused on the merits, and recorded in the timeline
            raise Refused(f"refused: {outcome.message}")
        return outcome
    except WorkflowUpdateFailedError as exc:
        reason = getattr(exc.cause, "message", None) or str(exc.cause)
        raise Refused(f"refused: {reason}") from None
    except (WorkflowUpdateRPCTimeoutOrCancelledError, RPCError):
        await handle.signal(action, fields)
        return DecisionOutcome(
            accepted=True,
            stage=Stage.RECEIVED,
            message="no worker answered in time; the decision was queued as a signal and will be "
            "applied (or refused and recorded) when a worker runs",
        )


async def list_requests(
    client: Client, *, stage: str | None = None, repo: str | None = None, limit: int = 50
) -> list[Listed]:
    clauses = [f"WorkflowType = '{WORKFLOW_TYPE}'"]
    if stage:
        stage = stage.upper()
        if stage not in Stage.__members__:
            raise RequestError(f"unknown stage {stage!r}; stages: {', '.join(Stage.__members__)}")
        clauses.append(f"{SA_STAGE.name} = '{stage}'")
    if repo:
        if "'" in repo or "\\" in repo:
            raise RequestError(f"invalid repository name {repo!r}")
        clauses.append(f"{SA_REPO.name} = '{repo}'")
    rows: list[Listed] = []
    async for wf in client.list_workflows(" AND ".join(clauses), limit=limit):
        sa = wf.typed_search_attributes
        instruction = str((await wf.memo()).get(MEMO_INSTRUCTION) or "")
        if not instruction:  # started before the memo existed: its summary says it
            instruction = await _summary(client, wf.id)
        rows.append(
            Listed(
                request_id=wf.id,
                repo=sa.get(SA_REPO) or "",
                stage=sa.get(SA_STAGE) or "",
                requester=sa.get(SA_REQUESTER) or "",
                started=wf.start_time,
                status=wf.status.name if wf.status else "",
                instruction=instruction,
            )
        )
    return rows


async def _summary(client: Client, request_id: str) -> str:
    try:
        return await (await client.get_workflow_handle(request_id).describe()).static_summary() or ""
    except RPCError:
        return ""


async def follow(client: Client, request_id: str, *, every: float = 0.5) -> AsyncIterator[RequestStatus]:
    """Yield the status each time it changes, until the request ends."""
    seen = None
    while True:
        try:
            current = await get_status(client, request_id)
        except RequestError:
            info = await describe(client, request_id)
            if info.status != Status.RUNNING:
                raise
            await asyncio.sleep(every)
            continue
        key = (current.stage, len(current.timeline))
        if key != seen:
            seen = key
            yield current
        if current.stage.terminal:
            return
        await asyncio.sleep(every)
