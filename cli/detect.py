"""`honk detect PATH`: what Honk would run for a repository, as a `.honk.toml` to commit."""

from __future__ import annotations

from pathlib import Path

import typer

from honk.config.detection import snippet
from honk.config.repository import CONFIG_FILE, RepoConfigError, load_repo_config


def detect(path: Path = typer.Argument(Path("."), help="a checkout of the repository")) -> None:
    """Print the checks and environment Honk uses for PATH (detected when it has no .honk.toml)."""
    try:
        config = load_repo_config(path)
    except RepoConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    origin = f"# detected: no {CONFIG_FILE}" if config.detected else f"# from {path / CONFIG_FILE}"
    typer.echo(origin + "\n" + snippet(config), nl=False)
