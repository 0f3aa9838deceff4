"""Names and trees on the host's disk: directory names derived from request and repository
names, and deleting what a build may have left read-only."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import stat
from pathlib import Path
from typing import Any


def safe_name(value: str) -> str:
    """A file name derived from `value`; unsafe or altered names get a hash to stay unique."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", value).strip(".-")[:80]
    if cleaned == value:
        return cleaned
    digest = hashlib.sha256(value.encode()).hexdigest()[:10]
    return f"{cleaned or 'x'}-{digest}"


def delete_tree(path: Path) -> None:
    """Delete a tree even when a build left read-only directories in it."""

    def make_writable_and_retry(func: Any, failed: str, _exc: Any) -> None:
        parent = os.path.dirname(failed)
        os.chmod(parent, os.stat(parent).st_mode | stat.S_IWUSR | stat.S_IXUSR)
        with contextlib.suppress(FileNotFoundError):
            func(failed)

    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path, onerror=make_writable_and_retry)
