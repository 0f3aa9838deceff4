"""Tracing and structured logs: one trace from the chat message to the merge, the agent's
turns as child spans, and every log line of a request carrying its request and trace ids.

Runs the real stack (dev server, real activities, the fake Messages API) with workers and
requests going through the client factory, and an in-memory span exporter on the process's
tracer provider."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
import os
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from honkstack import Stack, needs_android
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio import workflow
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from honk import telemetry
from honk.activities.adapter import adapting
from honk.logs import ContextFilter, JsonFormatter, request_context
from honk.workers.temporal import connect
from honk.workflows.contract import (
    ACTIVITY_AGENT,
    ACTIVITY_BUILD,
    ACTIVITY_CHECKS,
    ACTIVITY_CLEANUP,
    ACTIVITY_MERGE,
    ACTIVITY_NOTIFY,
    ACTIVITY_PREPARE,
    ACTIVITY_PUBLISH,
    WORKFLOW_TYPE,
    RequestStatus,
    Stage,
)


@pytest.fixture(scope="module")
def spans():
    exporter = InMemorySpanExporter()
    telemetry.setup_tracing("honk-test").add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.clear()
    exporter.shutdown()  # later tests' spans are not kept


@pytest.fixture
def log_lines():
    """JSON lines as `configure_logging` writes them (same formatter and filter)."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _hex(value: int, width: int = 32) -> str:
    return format(value, f"0{width}x")


@needs_android
async def test_one_trace_from_a_signed_chat_event_to_merge(dev_env, tmp_path, task_queue, spans, log_lines):
    from slack_fake import TEAM, SlackFake, mention
    from test_chat import ALICE, BOB, CHANNEL, RunningChat, new_ts, with_slack, write_registry

    from honk.changes import slack_request_id
    from honk.chat.server import Chat

    with SlackFake() as fake:
        stack = Stack(dev_env, tmp_path, task_queue)
        stack.settings = with_slack(stack.settings, fake)  # the notify activity posts to the fake
        client = await stack.use_factory_client()
        stack.start_worker()
        registry = write_registry(tmp_path, stack.remote, stack.settings.data_dir)
        try:
            async with RunningChat(Chat(stack.settings, client, registry=registry)) as chat:
                ts = new_ts()
                request_id = slack_request_id(TEAM, CHANNEL, ts)
                # A correctly signed Events API request, as Slack sends it.
                assert (
                    await chat.event(
                        mention("Change the greeting to say 'Hello from the bus!'", user=BOB, channel=CHANNEL, ts=ts)
                    )
                    == 200
                )
                await stack.wait_stage(request_id, Stage.AWAITING_APPROVAL, timeout=120)
                # The approval comes later, from another message: its own trace (linked by Temporal).
                handle = client.get_workflow_handle(request_id, result_type=RequestStatus)
                await handle.signal("approve", {"by": ALICE})
                result = await asyncio.wait_for(handle.result(), 90)
                assert result.stage == Stage.MERGED, result.last_error
                await chat.chat.service.drain()
        finally:
            await stack.close()

    root = next(
        s
        for s in spans.get_finished_spans()
        if s.name == "chat.start_from_mention"
        and any(
            x.name == "request.start"
            and x.attributes.get("honk.request_id") == request_id
            and x.context.trace_id == s.context.trace_id
            for x in spans.get_finished_spans()
        )
    )
    trace_id = root.context.trace_id
    ours = [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]
    by_id = {s.context.span_id: s for s in ours}
    names = Counter(s.name for s in ours)

    # One tree: every span but the chat root has its parent in the same trace.
    roots = [s for s in ours if s.parent is None]
    # The chat service's HTTP server span (FastAPI's) for the signed request is the root.
    assert [s.name for s in roots] == ["POST /slack/events"]
    assert root.parent is not None and root.parent.span_id in by_id
    orphans = [s.name for s in ours if s.parent is not None and s.parent.span_id not in by_id]
    assert not orphans, f"spans whose parent is missing from the trace: {orphans}"

    if os.environ.get("HONK_DUMP_TRACE"):

        def dump(span, depth=0):
            lines = ["  " * depth + span.name]
            for child in sorted(
                (s for s in ours if s.parent and s.parent.span_id == span.context.span_id), key=lambda s: s.start_time
            ):
                lines += dump(child, depth + 1)
            return lines

        Path(os.environ["HONK_DUMP_TRACE"]).write_text("\n".join(dump(roots[0])) + "\n")

    # From the chat message through the workflow and each of its activities to the merge.
    for name in (
        "request.start",
        f"StartWorkflow:{WORKFLOW_TYPE}",
        f"RunWorkflow:{WORKFLOW_TYPE}",
        f"CompleteWorkflow:{WORKFLOW_TYPE}",
    ):
        assert names[name] == 1, (name, names)
    for activity in (
        ACTIVITY_PREPARE,
        ACTIVITY_AGENT,
        ACTIVITY_BUILD,
        ACTIVITY_PUBLISH,
        ACTIVITY_NOTIFY,
        ACTIVITY_MERGE,
        ACTIVITY_CLEANUP,
    ):
        assert names[f"RunActivity:{activity}"] >= 1, (activity, sorted(names))
        assert names[f"StartActivity:{activity}"] >= 1, (activity, sorted(names))

    def ancestors(span) -> list[str]:
        chain = []
        while span.parent is not None:
            span = by_id[span.parent.span_id]
            chain.append(span.name)
        return chain

    merge = next(s for s in ours if s.name == f"RunActivity:{ACTIVITY_MERGE}")
    chain = ancestors(merge)
    assert chain[chain.index(f"StartWorkflow:{WORKFLOW_TYPE}") : chain.index("chat.start_from_mention") + 1] == [
        f"StartWorkflow:{WORKFLOW_TYPE}",
        "request.start",
        "chat.start_from_mention",
    ]
    assert chain[-1] == "POST /slack/events"

    # The agent's turns are children of the agent activity; its tool calls children of turns.
    agent = next(s for s in ours if s.name == f"RunActivity:{ACTIVITY_AGENT}")
    turns = [s for s in ours if s.name == "agent.turn"]
    assert turns and all(t.parent.span_id == agent.context.span_id for t in turns)
    assert [t.attributes["honk.turn"] for t in turns] == list(range(1, len(turns) + 1))
    tools = [s for s in ours if s.name == "agent.tool"]
    assert tools and all(by_id[t.parent.span_id].name == "agent.turn" for t in tools)
    assert {"edit_file", "finish"} <= {t.attributes["honk.tool"] for t in tools}
    calls = [s for s in ours if s.name == "agent.model_call"]
    assert len(calls) == len(turns)
    assert agent.attributes["honk.status"] == "finished" and agent.attributes["honk.tokens"] > 0

    # Git operations, the checks' and build's commands and the uploads are in it too. The
    # checks ran once: in the agent's own verifier run (its tree then skips the checks step)
    # or in the checks step.
    git_ops = {s.attributes["git.command"] for s in ours if s.name.startswith("git ")}
    assert {"fetch", "push", "commit"} <= git_ops, git_ops
    assert any(s.name == "command" and s.attributes["honk.exit_code"] == 0 for s in ours)
    checks = [s for s in ours if s.name == "command" and s.attributes["honk.log"].startswith("check-")]
    assert len(checks) == 1, [s.attributes["honk.log"] for s in checks]
    assert {"agent.tool", f"RunActivity:{ACTIVITY_CHECKS}"} & set(ancestors(checks[0])), ancestors(checks[0])
    builds = [s for s in ours if s.name == "build"]
    assert builds and ancestors(builds[0])[0] == f"RunActivity:{ACTIVITY_BUILD}"
    assert any(s.name == "upload" for s in ours)

    # Every line logged inside the request's activities names the request and the trace.
    outside = ("honk.chat", "honk.workers", "honk.cli", "honk.slack.sdk")
    lines = [
        line for line in log_lines() if line["logger"].startswith("honk.") and not line["logger"].startswith(outside)
    ]
    assert lines, "the activities logged nothing"
    for line in lines:
        assert line.get("request_id", "").startswith(request_id), line
        assert line.get("trace_id") == _hex(trace_id), line
    assert {line["msg"] for line in lines} >= {"agent run done", "command finished"}


@workflow.defn(name="LoggingProbe")
class LoggingProbe:
    @workflow.run
    async def run(self) -> str:
        workflow.logger.info("inside the workflow")
        return "ok"


async def test_workflow_log_lines_carry_request_and_trace_ids(dev_env, task_queue, spans, log_lines):
    from honk.config.settings import load_settings

    settings = load_settings(temporal_address=dev_env.client.service_client.config.target_host, task_queue=task_queue)
    client = await connect(settings)
    workflow_id = f"probe-{uuid.uuid4().hex[:8]}"
    # Sandboxed as the real workflow is; this test module's imports pass through.
    runner = SandboxedWorkflowRunner(SandboxRestrictions.default.with_passthrough_all_modules())
    async with Worker(client, task_queue=task_queue, workflows=[LoggingProbe], workflow_runner=runner):
        with telemetry.start_span("chat.app_mention") as root:
            await client.execute_workflow(
                "LoggingProbe", id=workflow_id, task_queue=task_queue, execution_timeout=timedelta(seconds=30)
            )
    line = next(x for x in log_lines() if x["msg"].startswith("inside the workflow"))
    assert line["request_id"] == workflow_id
    assert line["trace_id"] == _hex(root.get_span_context().trace_id)


def test_log_lines_outside_temporal_use_the_request_context_and_current_span(spans, log_lines):
    log = logging.getLogger("honk.chat")
    with request_context("honk-slack-T1-C1-1.2"), telemetry.start_span("chat.reply") as current:
        log.info("reply sent")
    log.info("not about a request")
    first, second = [x for x in log_lines() if x["logger"] == "honk.chat"]
    assert first["request_id"] == "honk-slack-T1-C1-1.2"
    assert first["trace_id"] == _hex(current.get_span_context().trace_id)
    assert first["span_id"] == _hex(current.get_span_context().span_id, 16)
    assert "request_id" not in second and "trace_id" not in second
    # An explicit `extra=` wins over the context.
    with request_context("other"):
        log.info("explicit", extra={"request_id": "mine"})
    assert log_lines()[-1]["request_id"] == "mine"


async def test_activity_adapters_stamp_log_lines_with_the_workflow_id(log_lines):
    """The domain never asks Temporal which request it serves: `adapting()` says so."""
    log = logging.getLogger("honk.domain")

    def work() -> None:
        with adapting():
            log.info("inside an activity")
        with adapting(request_id="honk-explicit"):
            log.info("named by the adapter")

    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_id="honk-slack-T1-C1-9.9")
    env.run(work)
    log.info("after the activity")
    inside, named, after = [x for x in log_lines() if x["logger"] == "honk.domain"]
    assert inside["request_id"] == "honk-slack-T1-C1-9.9"
    assert named["request_id"] == "honk-explicit"
    assert "request_id" not in after


def test_spans_go_over_otlp_http_only_when_an_endpoint_is_set(monkeypatch):
    import http.server
    import threading

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    for name in telemetry.OTLP_ENDPOINT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    quiet = telemetry.make_tracer_provider("honk-test")
    assert not quiet._active_span_processor._span_processors  # noqa: SLF001 - nothing exports

    received: list[tuple[str, bytes]] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            received.append((self.path, self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        provider = telemetry.make_tracer_provider("honk-worker")
        assert any(isinstance(p, BatchSpanProcessor) for p in provider._active_span_processor._span_processors)  # noqa: SLF001
        with provider.get_tracer("test").start_as_current_span("git fetch"):
            pass
        assert provider.force_flush(10_000)
        provider.shutdown()
    finally:
        server.shutdown()
        server.server_close()
    path, body = received[0]
    assert path == "/v1/traces"
    request = ExportTraceServiceRequest.FromString(body)
    resource = request.resource_spans[0]
    assert {a.key: a.value.string_value for a in resource.resource.attributes}["service.name"] == "honk-worker"
    assert resource.scope_spans[0].spans[0].name == "git fetch"
