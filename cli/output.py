"""Where the CLI's words go: the consoles, JSON output, and one shape for every error.

Under `--json` an error is one JSON object on stdout, `{"error": {"kind": ..., "message": ...}}`
(kinds in ERROR_KINDS), so scripts never parse prose; otherwise it is one line on stderr.
Either way the exit status is 2.
"""

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
from rich.markup import escape

from honk.changes import Refused, RequestError
from honk.cli.devstack import DevStackError
from honk.config.registry import RegistryError
from honk.config.settings import SettingsError
from honk.telemetry import MetricsUnavailable
from honk.workers.temporal import TemporalUnavailable

out = Console()
err = Console(stderr=True)

# Most specific first: Refused is a RequestError.
ERROR_KINDS: tuple[tuple[type[Exception], str], ...] = (
    (SettingsError, "settings"),
    (TemporalUnavailable, "unavailable"),
    (Refused, "refused"),
    (RequestError, "request"),
    (RegistryError, "registry"),
    (DevStackError, "dev_stack"),
    (MetricsUnavailable, "metrics"),
)
USER_ERRORS = tuple(cls for cls, _ in ERROR_KINDS)


def error_kind(exc: Exception) -> str:
    return next(kind for cls, kind in ERROR_KINDS if isinstance(exc, cls))


def error_object(kind: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"kind": kind, "message": message, **extra}}


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_json_line(data: Any) -> None:
    """One JSON Lines record, flushed at once so a reader sees it while the command runs."""
    sys.stdout.write(json.dumps(data, default=str, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def print_link(label: str, url: str) -> None:
    """A link whole on its own line: never cut or wrapped inside, whatever the width."""
    out.print(f"{label}: {url}", highlight=False, soft_wrap=True, markup=False)


def command(fn: Callable[..., Coroutine[Any, Any, int | None]]) -> Callable[..., None]:
    """Run an async command; user errors print one clear line (or one JSON object) and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            code = asyncio.run(fn(*args, **kwargs))
        except USER_ERRORS as exc:
            if kwargs.get("as_json"):
                print_json(error_object(error_kind(exc), str(exc)))
            else:
                err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
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
