"""How requests look in a terminal (CLI and demo)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from honk.workflows.contract import RequestStatus, Stage, TimelineEntry, protected_changes_text
from honk.workflows.contract_review import first_files, short_stat

if TYPE_CHECKING:  # the janitor loads GitPython; the CLI loads it only to sweep
    from honk.janitor import Report

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
    if status.changed_files:
        shown, more = first_files(status.changed_files)
        table.add_row("changed files", escape("\n".join(shown) + (f"\nand {more} more" if more else "")))
    if status.protected_changes:
        table.add_row("protected", f"[yellow]{escape(protected_changes_text(status.protected_changes))}[/]")
    if status.last_error:
        table.add_row("last error", f"[red]{escape(status.last_error)}[/]")
    out.print(table)
    # Links whole, each on its own line: a table cell would cut or fold them mid-URL.
    for label, value in status.links.model_dump().items():
        if value:
            out.print(f"[dim]{label.replace('_', ' ')}:[/] {escape(str(value))}", highlight=False, soft_wrap=True)
    if status.diff_stat:  # as git prints it: the columns line up outside a table
        out.print(escape(short_stat(status.diff_stat)), highlight=False, soft_wrap=True)
    if timeline and status.timeline:
        out.print()
        for entry in status.timeline[-timeline:]:
            out.print(timeline_line(entry), highlight=False, soft_wrap=True)


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 2**10:.1f} KiB"


def render_janitor(out: Console, err: Console, report: Report) -> None:
    """What `honk janitor` removed (or, with --dry-run, would remove), with sizes."""
    verb = "Would remove" if report.dry_run else "Removed"
    for item in report.removed:
        size = f", {_mib(item.size_bytes)}" if item.size_bytes is not None else ""
        out.print(
            f"{verb} {item.kind} {item.name} ({item.request_id or '-'}, {item.age_s / 3600:.1f} h old{size})",
            highlight=False,
        )
    for mirror in report.repacked:
        what = "Would repack" if report.dry_run else "Repacked"
        after = "" if report.dry_run else f" -> {_mib(mirror['bytes_after'])}"
        out.print(f"{what} mirror {mirror['mirror']} ({_mib(mirror['bytes_before'])}{after})", highlight=False)
    out.print(
        f"{verb} {len(report.removed)} ({_mib(report.removed_bytes)}); kept {report.kept_running} of running "
        f"requests, {report.kept_recent} recent.",
        highlight=False,
    )
    for note in report.notes:
        err.print(f"[yellow]note:[/] {note}", highlight=False)
