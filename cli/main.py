"""The `honk` command line."""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from honk.changes import (
    RequestError,
    decide,
    follow,
    get_status,
    list_requests,
    start_request,
)
from honk.cli import serve as honk_serve
from honk.cli import setup as honk_setup
from honk.cli.devstack import DevStackError
from honk.cli.display import render_status, timeline_line
from honk.config.registry import RegistryError, load_registry
from honk.config.settings import Settings, SettingsError, load_settings
from honk.telemetry import MetricsUnavailable
from honk.workers.temporal import TemporalUnavailable, connect
from honk.workflows.contract import Action, Stage

app = typer.Typer(
    help="Honk: a chat message becomes a merged, tested, built and installed change.",
    no_args_is_help=True,
    add_completion=False,
)
out = Console()
err = Console(stderr=True)

USER_ERRORS = (SettingsError, TemporalUnavailable, RequestError, RegistryError, DevStackError, MetricsUnavailable)


def command(fn: Callable[..., Coroutine[Any, Any, int | None]]) -> Callable[..., None]:
    """Run an async command; user errors print one clear line and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            code = asyncio.run(fn(*args, **kwargs))
        except USER_ERRORS as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        finally:
            # Free the Temporal client (and its native threads' hold on Python objects) while
            # the interpreter still runs: left to shutdown, a short-lived client process can
            # abort in PyGILState_Release (temporalio/sdk-python#300).
            gc.collect()
        raise typer.Exit(code or 0)

    return wrapper


def settings() -> Settings:
    return load_settings()


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@app.command()
@command
async def request(
    instruction: str = typer.Argument(..., help="what should change, in plain words"),
    repo: str = typer.Option(..., "--repo", "-r", help="repository name from the registry"),
    by: str | None = typer.Option(None, help="requester (default: HONK_USER or $USER)"),
    wait: bool = typer.Option(False, "--wait", help="follow progress until a decision is needed or it ends"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> int:
    """Start a change request."""
    s = settings()
    registry = load_registry(s.registry, s.data_dir)
    client = await connect(s)
    handle = await start_request(client, s, registry, repo=repo, instruction=instruction, requester=by or s.user)
    if not wait:
        if as_json:
            print_json({"request_id": handle.id, "stage": Stage.RECEIVED.value})
        else:
            out.print(f"Started [bold]{handle.id}[/]. Follow it with `honk watch {handle.id}`.")
        return 0
    return await _follow(client, handle.id, as_json=as_json, until_waiting=True)


async def _follow(client, request_id: str, *, as_json: bool, until_waiting: bool) -> int:
    shown = 0
    last = None
    async for status in follow(client, request_id):
        last = status
        if not as_json:
            for entry in status.timeline[shown:]:
                out.print(timeline_line(entry), highlight=False)
        shown = len(status.timeline)
        if until_waiting and status.stage == Stage.AWAITING_APPROVAL:
            break
    if last is None:
        return 1
    if as_json:
        print_json(last.model_dump(mode="json"))
    elif last.stage == Stage.AWAITING_APPROVAL:
        out.print(
            f"\nWaiting for approval. Install: {last.links.install_page or '-'}\n"
            f"Approve with `honk approve {request_id}`."
        )
    return 0 if last.stage in (Stage.MERGED, Stage.AWAITING_APPROVAL) else 1


async def _decide(request_id: str, action: Action, by: str | None, text: str, as_json: bool, commit: str = "") -> int:
    s = settings()
    client = await connect(s)
    outcome = await decide(client, request_id, action, by or s.user, text, commit=commit)
    if as_json:
        print_json(outcome.model_dump(mode="json"))
    else:
        out.print(outcome.message)
    return 0


@app.command()
@command
async def approve(
    request_id: str = typer.Argument(..., metavar="ID"),
    comment: str = typer.Option("", "--comment", "-m"),
    by: str | None = typer.Option(None, help="approver (default: HONK_USER or $USER)"),
    commit: str = typer.Option("", help="the commit you reviewed; refused if another one awaits approval"),
    as_json: bool = typer.Option(False, "--json"),
) -> int:
    """Approve a request that waits for approval; Honk merges it."""
    return await _decide(request_id, "approve", by, comment, as_json, commit)


@app.command("request-changes")
@command
async def request_changes(
    request_id: str = typer.Argument(..., metavar="ID"),
    text: str = typer.Argument(..., help="what should change"),
    by: str | None = typer.Option(None),
    as_json: bool = typer.Option(False, "--json"),
) -> int:
    """Request changes: the agent takes another round (queued if it is working now)."""
    return await _decide(request_id, "request_changes", by, text, as_json)


# The command's earlier name, kept so existing scripts keep working.
app.command("revise", hidden=True)(request_changes)


@app.command()
@command
async def cancel(
    request_id: str = typer.Argument(..., metavar="ID"),
    reason: str = typer.Option("", "--reason"),
    by: str | None = typer.Option(None),
    as_json: bool = typer.Option(False, "--json"),
) -> int:
    """Cancel a request at any stage before merging; its work branch is removed."""
    return await _decide(request_id, "cancel", by, reason, as_json)


@app.command()
@command
async def status(
    request_id: str = typer.Argument(..., metavar="ID"),
    as_json: bool = typer.Option(False, "--json"),
) -> int:
    """Show a request: stage, round, links, usage, timeline."""
    client = await connect(settings())
    current = await get_status(client, request_id)
    if as_json:
        print_json(current.model_dump(mode="json"))
    else:
        render_status(out, current)
    return 0


@app.command("list")
@command
async def list_(
    stage: str | None = typer.Option(None, help="e.g. AWAITING_APPROVAL"),
    repo: str | None = typer.Option(None),
    limit: int = typer.Option(50, min=1, max=1000),
    as_json: bool = typer.Option(False, "--json"),
) -> int:
    """List requests (a visibility query on HonkStage / HonkRepo)."""
    client = await connect(settings())
    rows = await list_requests(client, stage=stage, repo=repo, limit=limit)
    if as_json:
        print_json([row.__dict__ for row in rows])
        return 0
    table = Table("request", "repository", "stage", "requester", "started")
    for row in rows:
        table.add_row(
            row.request_id, row.repo, row.stage, row.requester, f"{row.started:%Y-%m-%d %H:%M}" if row.started else ""
        )
    out.print(table if rows else "No requests match.")
    return 0


@app.command()
@command
async def watch(
    request_id: str = typer.Argument(..., metavar="ID"),
    as_json: bool = typer.Option(False, "--json"),
) -> int:
    """Follow a request live until it ends."""
    client = await connect(settings())
    return await _follow(client, request_id, as_json=as_json, until_waiting=False)


@app.command()
@command
async def worker(
    queue: list[str] = typer.Option([], "--queue", "-q", help="task queue(s) to serve (default: HONK_TASK_QUEUE)"),
) -> int:
    """Run a worker: the workflow and all activities."""
    from honk.logs import configure_logging
    from honk.workers.main import build_workers, run_workers

    s = settings()
    configure_logging(s.log_level)
    client = await connect(s, service="honk-worker")
    await run_workers(build_workers(client, s, queue))
    return 0


@app.command()
@command
async def dev(
    worker: bool = typer.Option(True, "--worker/--no-worker", help="also run a worker in this process"),
) -> int:
    """Run the embedded stack: Temporal dev server (UI on :8233), artifact web server, worker."""
    from honk.cli.devstack import run_dev

    await run_dev(settings(), with_worker=worker)
    return 0


@app.command("codec-server")
@command
async def codec_server(
    host: str | None = typer.Option(None, help="address to listen on (default: HONK_CODEC_HOST)"),
    port: int | None = typer.Option(None, min=0, max=65535, help="port (default: HONK_CODEC_PORT)"),
) -> int:
    """Serve Temporal's remote codec protocol (/encode, /decode) with HONK_ENCRYPTION_KEYS,
    so the Temporal UI and CLI show decrypted payloads. Point the UI at it with its codec
    endpoint setting (`temporal server start-dev --ui-codec-endpoint URL`)."""
    import asyncio as _asyncio
    import signal as _signal

    from honk.cli.codec_server import from_settings
    from honk.logs import configure_logging

    s = settings()
    configure_logging(s.log_level)
    server = from_settings(s, host=host, port=port)
    try:
        await server.start()
    except OSError as exc:
        raise SettingsError(f"HONK_CODEC_PORT: cannot listen on {server.host}:{server.port}: {exc.strerror}") from None
    err.print(
        f"Codec server on {server.url} (/decode, /encode) for UI origins "
        f"{', '.join(s.codec_origins)}{'; bearer token required' if s.codec_auth_token else ''}",
        highlight=False,
    )
    stop = _asyncio.Event()
    loop = _asyncio.get_running_loop()
    for sig in (_signal.SIGINT, _signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()
    return 0


@app.command("encryption-key")
def encryption_key(
    key_id: str | None = typer.Argument(None, help="key id (default: a random one)"),
) -> None:
    """Print a new AES-256 key as `key-id:base64` for HONK_ENCRYPTION_KEYS (put it first to
    rotate; keep the older keys after it to read older histories)."""
    from honk.codec import KeyConfigError, new_key

    try:
        out.print(new_key(key_id), highlight=False, soft_wrap=True)
    except KeyConfigError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None


async def _is_running(client, request_id: str) -> bool:
    """Whether the request's workflow runs now; an unknown id does not."""
    from temporalio.client import WorkflowExecutionStatus
    from temporalio.service import RPCError, RPCStatusCode

    try:
        described = await client.get_workflow_handle(request_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return described.status == WorkflowExecutionStatus.RUNNING


@app.command()
@command
async def janitor(
    older_than: str = typer.Option(
        "3d", "--older-than", help="age before something counts as orphaned: 90m, 12h, 3d, 1w"
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="only report what would be removed"),
    as_json: bool = typer.Option(False, "--json"),
) -> int:
    """Remove workspaces on this host and remote honk/* branches of requests that no longer run."""
    from honk.janitor import parse_duration, sweep

    try:
        age = parse_duration(older_than)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--older-than") from None
    s = settings()
    registry = load_registry(s.registry, s.data_dir)
    client = await connect(s)
    loop = asyncio.get_running_loop()

    def is_running(request_id: str) -> bool:
        # The sweep runs git in a thread; Temporal answers on this loop.
        return asyncio.run_coroutine_threadsafe(_is_running(client, request_id), loop).result(timeout=60)

    report = await asyncio.to_thread(sweep, s, registry, is_running, age, dry_run)
    if as_json:
        print_json(report.as_dict())
        return 1 if report.errors else 0
    verb = "Would remove" if dry_run else "Removed"
    for item in report.removed:
        age_h = item.age_s / 3600
        out.print(f"{verb} {item.kind} {item.name} ({item.request_id or '-'}, {age_h:.1f} h old)", highlight=False)
    out.print(
        f"{verb} {len(report.removed)}; kept {report.kept_running} of running requests, {report.kept_recent} recent.",
        highlight=False,
    )
    for problem in report.errors:
        err.print(f"[yellow]warning:[/] {problem}", highlight=False)
    return 1 if report.errors else 0


@app.command()
@command
async def chat(
    socket: bool = typer.Option(False, "--socket", help="Socket Mode (no public URL needed; HONK_SLACK_APP_TOKEN)"),
    host: str | None = typer.Option(None, help="HTTP mode: address to listen on (default: HONK_CHAT_HOST)"),
    port: int | None = typer.Option(None, min=1, max=65535, help="HTTP mode: port (default: HONK_CHAT_PORT)"),
) -> int:
    """Run the Slack chat service: HTTP mode (POST /slack/events, /slack/commands,
    /slack/interactivity; GET /healthz) or Socket Mode with --socket."""
    from honk.chat.server import run_chat
    from honk.logs import configure_logging

    s = settings()
    configure_logging(s.log_level)
    await run_chat(s, socket_mode=socket, host=host, port=port)
    return 0


@app.command()
@command
async def replay(
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> int:
    """Replay every running request on this code (run before a deploy); exit 1 if one would break."""
    from honk.workers.replay import check_running

    s = settings()
    verdicts = await check_running(await connect(s), s)
    if as_json:
        print_json([v.__dict__ for v in verdicts])
    else:
        for v in verdicts:
            verdict = "compatible" if v.compatible else f"INCOMPATIBLE: {v.problem}"
            out.print(f"{v.request_id}  {verdict}", highlight=False, soft_wrap=True)
        broken = sum(not v.compatible for v in verdicts)
        out.print(f"{len(verdicts)} running request(s) replayed; {broken} incompatible.", highlight=False)
    return 1 if any(not v.compatible for v in verdicts) else 0


@app.command()
@command
async def demo() -> int:
    """End to end on the sample Android app with the scripted model; exit 0 only if merged."""
    from honk.cli.demo import run_demo

    return await run_demo(settings())


app.command("setup")(command(honk_setup.setup))
app.command("serve")(command(honk_serve.serve))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
