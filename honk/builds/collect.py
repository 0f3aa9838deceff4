"""Collect what a build produced: copy the files matching the target's globs out of the
checkout, hash them on the way and describe them from their content."""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

from honk.builds.artifacts import describe
from honk.config.repository import BuildSpec
from honk.errors import permanent
from honk.liveness import beat
from honk.workflows.contract import ArtifactInfo

log = logging.getLogger(__name__)

_CHUNK = 1024 * 1024


def collect_artifacts(root: Path, spec: BuildSpec, dest: Path, patterns: list[str] | None = None) -> list[ArtifactInfo]:
    """Copy the files matching the globs into `dest` (emptied first, so a retried build
    leaves no stale files) and describe them from their content."""
    patterns = patterns or list(spec.artifacts or [])
    matches = match_artifacts(root, patterns)
    if not matches:
        raise permanent(f"build {spec.name!r} produced no file matching {', '.join(patterns)}", "NoArtifacts")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    artifacts = []
    for source in matches:
        name = _unique_name(source, root, dest)
        beat({"collecting": name})
        sha256, size = copy_and_hash(source, dest / name)
        artifacts.append(
            ArtifactInfo(
                target=spec.name,
                name=name,
                path=str(dest / name),
                sha256=sha256,
                size=size,
                **describe(dest / name),
            )
        )
    return artifacts


def match_artifacts(root: Path, patterns: list[str]) -> list[Path]:
    """Regular files under `root` matching any glob, once each, in a stable order.

    Matches are resolved, and anything that leads outside the workspace (a symlink to
    /etc or the worker's home) is skipped: the artifact gets published.
    """
    root = root.resolve()
    found: dict[Path, None] = {}
    for pattern in patterns:
        for path in sorted(root.glob(pattern)):
            real = path.resolve()
            if not real.is_relative_to(root):
                log.warning("artifact outside the workspace skipped", extra={"path": str(path)})
                continue
            if real.is_file():
                found.setdefault(real)
    return list(found)


def _unique_name(source: Path, root: Path, dest: Path) -> str:
    """The file name, or its workspace-relative path flattened when two files share a name."""
    if not (dest / source.name).exists():
        return source.name
    return "_".join(source.relative_to(root.resolve()).parts)


def copy_and_hash(source: Path, target: Path) -> tuple[str, int]:
    """Copy in chunks, hashing on the way: one read of a possibly large file."""
    digest = hashlib.sha256()
    size = 0
    with open(source, "rb") as src, open(target, "wb") as out:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
    shutil.copystat(source, target)
    return digest.hexdigest(), size


def sha256_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
