"""Retention: what ended requests leave on this host is removed after configurable ages, and
the host's mirrors are repacked.

Per request (directory or file named `safe_name(request_id)`), removed when the request is
not running and nothing in it changed for the configured age:

    artifacts/<request>/ (except logs/)   HONK_RETAIN_ARTIFACTS_SECONDS
    artifacts/<request>/logs/             HONK_RETAIN_LOGS_SECONDS
    store/<request>/                      HONK_RETAIN_PUBLISHED_SECONDS, never below the link
                                          expiry: a published link never outlives its file
    notifications/<request>.jsonl,        HONK_RETAIN_CHAT_STATE_SECONDS
    slack/<request>/

Objects in an S3 store are left to the bucket's lifecycle rule (keep it ≥ the link expiry).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import git

from honk.config.settings import Settings
from honk.git.runner import GitError, run_git
from honk.workspace.paths import delete_tree

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Expired:
    kind: str  # "artifacts", "logs", "published", "chat-state"
    path: Path
    request_id: str
    age_s: int
    size_bytes: int


def retention_ages(settings: Settings) -> tuple[dict[str, int], list[str]]:
    """Age limits by kind, and notes on limits that were raised to stay safe."""
    notes = []
    published = settings.retain_published_seconds
    if settings.artifact_store == "local" and published < settings.link_expiry_seconds:
        notes.append(
            f"HONK_RETAIN_PUBLISHED_SECONDS ({published}) is shorter than HONK_LINK_EXPIRY_SECONDS "
            f"({settings.link_expiry_seconds}): keeping published copies {settings.link_expiry_seconds} s "
            "so no install link outlives its file; raise the retention or shorten the link expiry"
        )
        published = settings.link_expiry_seconds
    return {
        "artifacts": settings.retain_artifacts_seconds,
        "logs": settings.retain_logs_seconds,
        "published": published,
        "chat-state": settings.retain_chat_state_seconds,
    }, notes


def _places(settings: Settings) -> Iterator[tuple[str, Path, str]]:
    """(kind, path, request id) of every per-request item on this host."""
    for kind, root in (
        ("artifacts", settings.artifacts_dir),
        ("published", settings.store_dir),
        ("chat-state", settings.data_dir / "slack"),
        ("chat-state", settings.data_dir / "notifications"),
    ):
        if not root.is_dir():
            continue
        for path in sorted(root.iterdir()):
            if path.name.startswith("."):
                continue
            request_id = path.name.removesuffix(".jsonl")
            if kind == "artifacts" and path.is_dir():
                if (path / "logs").is_dir():
                    yield "logs", path / "logs", request_id
                if any(child.name != "logs" for child in path.iterdir()):
                    yield "artifacts", path, request_id
            else:
                yield kind, path, request_id


def _walk(path: Path, skip: Path | None = None) -> tuple[float, int]:
    """Newest mtime and total size of a file or tree (without `skip`)."""
    newest, size = 0.0, 0
    for base, dirs, files in os.walk(path) if path.is_dir() else [(str(path.parent), [], [path.name])]:
        if skip is not None:
            dirs[:] = [d for d in dirs if Path(base, d) != skip]
        with contextlib.suppress(OSError):
            newest = max(newest, os.stat(base).st_mtime)
        for name in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(base, name))
                newest, size = max(newest, st.st_mtime), size + st.st_size
    return newest, size


def tree_size(path: Path) -> int:
    return _walk(path)[1]


def expired(
    settings: Settings, running: Callable[[str], bool], now: float, ages: dict[str, int]
) -> tuple[list[Expired], int, int]:
    """What is past its age and belongs to no running request; (items, kept running, kept recent)."""
    found, kept_running, kept_recent = [], 0, 0
    for kind, path, request_id in _places(settings):
        newest, size = _walk(path, skip=path / "logs" if kind == "artifacts" else None)
        if now - newest < ages[kind]:
            kept_recent += 1
            continue
        if running(request_id):
            kept_running += 1
            continue
        found.append(Expired(kind, path, request_id, int(now - newest), size))
    return found, kept_running, kept_recent


def remove(item: Expired) -> None:
    if item.kind == "artifacts":
        # The logs inside have their own age and were judged separately.
        for child in item.path.iterdir():
            if child.name != "logs":
                delete_tree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        with contextlib.suppress(OSError):
            item.path.rmdir()  # only once the logs are gone too
    elif item.path.is_dir() and not item.path.is_symlink():
        delete_tree(item.path)
        if item.kind == "logs":
            with contextlib.suppress(OSError):
                item.path.parent.rmdir()  # the request's artifacts went earlier
    else:
        item.path.unlink(missing_ok=True)
    log.info("retention removed", extra={"kind": item.kind, "path": str(item.path), "request_id": item.request_id})


def repack_mirrors(settings: Settings, dry_run: bool) -> tuple[list[tuple[str, int, int]], list[str]]:
    """`git gc` every mirror (with the hardened runner); (mirror, bytes before, after), errors."""
    root = settings.data_dir / "mirrors"
    done, errors = [], []
    for mirror in sorted(root.glob("*.git")) if root.is_dir() else []:
        before = _walk(mirror)[1]
        if dry_run:
            done.append((str(mirror), before, before))
            continue
        try:
            # Default prune grace: objects a concurrent fetch just wrote are kept.
            run_git(git.Git(str(mirror)), "gc", "--quiet")
        except GitError as exc:
            errors.append(f"repacking {mirror.name}: {exc}")
            continue
        done.append((str(mirror), before, _walk(mirror)[1]))
    return done, errors
