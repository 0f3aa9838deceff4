"""How requests look in a terminal (CLI and demo)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from honk.workflows.contract import RequestStatus, Stage, TimelineEntry

STAGE_STYLE = {
    Stage.MERGED: "bold green",
    Stage.FAILED: "bold red",
    Stage.CANCELLED: "yellow",
    Stage.EXPIRED: "yellow",
    Stage.AWAITING_APPROVAL: "bold cyan",
}


def timeline_line(entry: TimelineEntry) -> str:
    style = "red" if entry.kind in ("refused", "error") else ""
    message = escape(entry.message)  # messages are user and agent text, never markup
    return f"[dim]{entry.at:%H:%M:%S}[/] [bold]{entry.stage.value:<17}[/] " + (
        f"[{style}]{message}[/]" if style else message
    )


def render_status(out: Console, status: RequestStatus, *, timeline: int = 15) -> None:
    style = STAGE_STYLE.get(status.stage, "bold")
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="dim", no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row("request", status.request_id)
    table.add_row("repository", status.repo)
    table.add_row("stage", f"[{style}]{status.stage.value}[/]")
    table.add_row("instruction", escape(status.instruction))
    table.add_row("requester", status.requester)
    table.add_row("round / attempt", f"{status.round} / {status.attempt}")
    u = status.usage
    table.add_row(
        "tokens",
        f"{u.input_tokens} in, {u.output_tokens} out, "
        f"{u.cache_read_tokens} cache read, {u.cache_write_tokens} cache write · ${u.cost_usd:.4f}",
    )
    if status.pending_feedback:
        table.add_row("queued feedback", escape("\n".join(f"{f.by}: {f.text}" for f in status.pending_feedback)))
    if status.last_error:
        table.add_row("last error", f"[red]{escape(status.last_error)}[/]")
    out.print(table)
    # Links whole, each on its own line: a table cell would cut or fold them mid-URL.
    for label, value in status.links.model_dump().items():
        if value:
            out.print(f"[dim]{label.replace('_', ' ')}:[/] {escape(str(value))}", highlight=False, soft_wrap=True)
    if timeline and status.timeline:
        out.print()
        for entry in status.timeline[-timeline:]:
            out.print(timeline_line(entry), highlight=False, soft_wrap=True)
