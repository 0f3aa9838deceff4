"""The `honk` command line."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from honk.changes import (
    RequestError,
    decide,
    follow,
    get_status,
    list_requests,
    start_request,
)
from honk.cli import detect as honk_detect
from honk.cli import operations
from honk.cli import serve as honk_serve
from honk.cli import setup as honk_setup
from honk.cli.display import render_status, timeline_line
from honk.cli.output import command, error_object, out, print_json, print_json_line, print_link
from honk.config.registry import load_registry
from honk.config.settings import Settings, SettingsError, load_settings
from honk.workers.temporal import connect
from honk.workflows.contract import Action, RequestStatus, Stage


def _ui_port() -> int:
    """The Temporal UI port as set (HONK_UI_PORT), for the help texts."""
    try:
        return load_settings().ui_port
    except SettingsError:
        return Settings.model_fields["ui_port"].default


UI_PORT = _ui_port()
app = typer.Typer(
    help="Honk: a chat message becomes a merged, tested, built and installed change. "
    f"`honk dev` serves the Temporal UI on http://localhost:{UI_PORT} (HONK_UI_PORT).",
    no_args_is_help=True,
    add_completion=False,
)


def settings() -> Settings:
    return load_settings()


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
            out.print(f"Started [bold]{handle.id}[/]. Follow it with `honk watch {handle.id}`.", soft_wrap=True)
        return 0
    if not as_json:
        # The id first, whatever happens next: the one thing needed to look again.
        out.print(f"Started [bold]{handle.id}[/]", soft_wrap=True)
    try:
        last = await _follow(client, handle.id, as_json=False, quiet=as_json, until_waiting=True)
    except RequestError as exc:
        if not as_json:
            raise
        print_json(error_object("request", str(exc), request_id=handle.id))
        return 2
    if as_json and last is not None:
        print_json(last.model_dump(mode="json"))
    return _verdict(last)


def _verdict(last: RequestStatus | None) -> int:
    return 0 if last is not None and last.stage in (Stage.MERGED, Stage.AWAITING_APPROVAL) else 1


async def _follow(
    client, request_id: str, *, as_json: bool, until_waiting: bool, quiet: bool = False
) -> RequestStatus | None:
    """Show each new timeline entry as it happens: a line of text, or under `as_json` one JSON
    object per event (JSON Lines). Returns the last status seen."""
    shown = 0
    last: RequestStatus | None = None
    async for status in follow(client, request_id):
        if as_json:
            if last is None or status.stage != last.stage:
                print_json_line({"event": "stage", "request_id": request_id, "stage": status.stage.value})
            for entry in status.timeline[shown:]:
                print_json_line({"event": "timeline", "request_id": request_id, **entry.model_dump(mode="json")})
        elif not quiet:
            for entry in status.timeline[shown:]:
                out.print(timeline_line(entry), highlight=False, soft_wrap=True)
        last = status
        shown = len(status.timeline)
        # Queued feedback means another round is about to start: not waiting for a decision.
        if until_waiting and status.stage == Stage.AWAITING_APPROVAL and not status.pending_feedback:
            break
    if last is not None and not as_json and not quiet:
        if last.stage == Stage.AWAITING_APPROVAL:
            out.print("\nWaiting for approval.")
            if last.links.install_page or not last.links.summary_page:
                print_link("Install page", str(last.links.install_page or "-"))
            else:
                print_link("Summary page", last.links.summary_page)
            if last.links.compare:
                print_link("Compare", last.links.compare)
            if last.diff_stat:
                out.print(escape(last.diff_stat), highlight=False, soft_wrap=True)
            out.print(f"Approve with `honk approve {request_id}`.", soft_wrap=True, highlight=False)
        elif last.stage == Stage.FAILED and last.last_error:
            out.print(f"[bold red]FAILED:[/] {escape(last.last_error)}", soft_wrap=True, highlight=False)
    return last


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
    if not rows:
        out.print("No requests match.")
        return 0
    # Ids never wrap or shrink (they are copied into the next command); the instruction wraps.
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("request", no_wrap=True, min_width=max(len(r.request_id) for r in rows))
    table.add_column("stage", no_wrap=True, min_width=max(len(r.stage) for r in rows))
    table.add_column("instruction · repository · requester · started", overflow="fold", ratio=1)
    for row in rows:
        started = f"{row.started:%Y-%m-%d %H:%M}" if row.started else ""
        table.add_row(
            row.request_id,
            row.stage,
            f"{escape(row.instruction)}\n[dim]{escape(row.repo)} · {escape(row.requester)} · {started}[/]",
        )
    out.print(table)
    return 0


@app.command()
@command
async def watch(
    request_id: str = typer.Argument(..., metavar="ID"),
    until_decision: bool = typer.Option(
        False, "--until-decision", help="stop when the request waits for approval (or ends)"
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> int:
    """Follow a request live until it ends. With --json: one JSON object per line and event
    (`{"event": "stage", ...}` on each stage change, `{"event": "timeline", ...}` per entry)."""
    client = await connect(settings())
    return _verdict(await _follow(client, request_id, as_json=as_json, until_waiting=until_decision))


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


@app.command(
    help=f"Run the embedded stack: Temporal dev server (UI on http://localhost:{UI_PORT}), artifact web server, worker."
)
@command
async def dev(
    worker: bool = typer.Option(True, "--worker/--no-worker", help="also run a worker in this process"),
) -> int:
    from honk.cli.devstack import run_dev

    await run_dev(settings(), with_worker=worker)
    return 0


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
async def demo() -> int:
    """End to end on the sample Android app with the scripted model; exit 0 only if merged."""
    from honk.cli.demo import run_demo

    return await run_demo(settings())


operations.register(app)
app.command("setup")(command(honk_setup.setup))
app.command("serve")(command(honk_serve.serve))
app.command("detect")(honk_detect.detect)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
