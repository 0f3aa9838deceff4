"""The operator's commands: codec server, encryption keys, janitor, replay check, settings table."""

from __future__ import annotations

import asyncio

import typer

from honk.cli.output import command, err, out, print_json
from honk.config.registry import load_registry
from honk.config.settings import SettingsError, load_settings
from honk.workers.temporal import connect

app = typer.Typer()


def settings():
    return load_settings()


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
    """Remove workspaces on this host and remote honk/* branches of requests that no longer run,
    their artifacts, logs, published copies and chat state past HONK_RETAIN_*; repack mirrors."""
    from honk.cli.display import render_janitor
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
    render_janitor(out, err, report)
    for problem in report.errors:
        err.print(f"[yellow]warning:[/] {problem}", highlight=False)
    return 1 if report.errors else 0


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


@app.command("settings-table")
def settings_table() -> None:
    """Print README's settings table (markdown), generated from the settings model."""
    from honk.config.settings_doc import readme_block

    print(readme_block())


def register(main: typer.Typer) -> None:
    """Add these commands to the `honk` app."""
    for info in app.registered_commands:
        main.registered_commands.append(info)
