"""The agent's narrow tool set, confined to the workspace.

Every path the model names, and every file `list_files` and `search` visit, is resolved
(symlinks included) and must stay inside the workspace and outside `.git/`; symlinks that
leave it and special files (fifos, devices, sockets) are refused or skipped, never read.
`search` uses RE2 (linear time: no pattern can freeze the worker) with bounded output.
There is no shell, no network and no push here.
"""

from __future__ import annotations

import fnmatch
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import re2

from honk.redact import redact

MAX_READ_LINES = 400
MAX_READ_CHARS = 40_000
MAX_WRITE_BYTES = 1_000_000
MAX_LIST = 500
MAX_MATCHES = 100
MAX_SEARCH_FILE_BYTES = 2_000_000  # bigger files are data, not code worth grepping
SEARCH_SECONDS = 10.0  # a search over a huge tree stops with what it found
OUTPUT_LIMIT = 4000  # characters of check output that reach the model


class ToolError(Exception):
    """The model asked for something it may not or cannot do; it is told why."""


@dataclass
class ToolResult:
    text: str
    is_error: bool = False
    finished: str | None = None  # the summary, when the model called `finish`


def protected_refusal(path: str) -> str:
    return (
        f"{path} is protected: the team's checks, builds, CI and agent instructions are not the "
        "agent's to change. Leave it as it is and solve the task without it; if the change is "
        "really needed, say so in your summary (the requester can allow protected changes)."
    )


def _walk(base: Path):
    """Entries below `base` in a stable order, never descending into .git or symlinked dirs
    (the caller still confines each entry: a file may be a symlink to anywhere)."""
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        for name in sorted(filenames):
            yield Path(dirpath) / name


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def _compile(pattern: str):
    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ToolError(
            f"invalid regular expression: {reason} (RE2 syntax: no lookarounds or backreferences)"
        ) from None


def _schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


_PATH = {"type": "string", "description": "path relative to the repository root"}

DEFINITIONS: list[dict[str, Any]] = [
    {
        "name": "list_files",
        "description": "List files under a directory of the repository (recursive).",
        "input_schema": _schema(
            {
                "path": {**_PATH, "default": "."},
                "pattern": {"type": "string", "description": "glob on the file name, e.g. *.xml"},
            },
            [],
        ),
    },
    {
        "name": "read_file",
        "description": f"Read a text file with line numbers (at most {MAX_READ_LINES} lines a call).",
        "input_schema": _schema(
            {
                "path": _PATH,
                "start_line": {"type": "integer", "minimum": 1},
                "end_line": {"type": "integer", "minimum": 1},
            },
            ["path"],
        ),
    },
    {
        "name": "search",
        "description": "Search the repository's text files for a regular expression.",
        "input_schema": _schema(
            {"pattern": {"type": "string"}, "path": {**_PATH, "default": "."}, "glob": {"type": "string"}}, ["pattern"]
        ),
    },
    {
        "name": "edit_file",
        "description": "Replace exactly one occurrence of old_text with new_text in a file.",
        "input_schema": _schema(
            {"path": _PATH, "old_text": {"type": "string"}, "new_text": {"type": "string"}},
            ["path", "old_text", "new_text"],
        ),
    },
    {
        "name": "write_file",
        "description": "Create or overwrite a file with the given content.",
        "input_schema": _schema({"path": _PATH, "content": {"type": "string"}}, ["path", "content"]),
    },
    {"name": "delete_file", "description": "Delete a file.", "input_schema": _schema({"path": _PATH}, ["path"])},
    {
        "name": "run_checks",
        "description": "Run the repository's checks on the current files and report failures.",
        "input_schema": _schema({}, []),
    },
    {
        "name": "finish",
        "description": "Call when the change is complete, with a short summary for the reviewer.",
        "input_schema": _schema({"summary": {"type": "string"}}, ["summary"]),
    },
]


@dataclass
class WorkspaceTools:
    root: Path
    run_checks: Callable[[], str]
    # Paths the team's configuration protects (its verifier, CI, the agent's instructions).
    protected: Callable[[str], bool] = lambda _path: False
    changed: bool = False
    calls: list[str] = field(default_factory=list)
    # Exactly what the agent edited, wrote or deleted: the only paths Honk commits.
    changed_paths: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.root = self.root.resolve()

    # ------------------------------------------------------------------ confinement

    def resolve(self, relative: Any, *, must_exist: bool = False) -> Path:
        if not isinstance(relative, str) or not relative.strip():
            raise ToolError("a path is required")
        if "\0" in relative:
            raise ToolError("the path contains a NUL byte")
        raw = Path(relative)
        if raw.is_absolute():
            raise ToolError(f"{relative!r} is an absolute path; use a path relative to the repository root")
        if ".git" in raw.parts:
            raise ToolError(f"{relative!r} is inside .git, which the agent may not touch")
        candidate = (self.root / raw).resolve()
        if not candidate.is_relative_to(self.root):
            raise ToolError(f"{relative!r} is outside the repository")
        if ".git" in candidate.relative_to(self.root).parts:
            raise ToolError(f"{relative!r} leads into .git, which the agent may not touch")
        if must_exist and not candidate.exists():
            raise ToolError(f"{relative} does not exist")
        return candidate

    def files(self, base: Path):
        """The regular files below `base` (or `base` itself) that are inside the workspace:
        as (resolved path, name as the model sees it); everything else is skipped silently."""
        for entry in [base] if not base.is_dir() else _walk(base):
            real = entry.resolve()
            if not real.is_relative_to(self.root) or ".git" in real.relative_to(self.root).parts:
                continue
            if _is_regular(real):
                yield real, entry.relative_to(self.root).as_posix()

    def regular_file(self, relative: Any) -> Path:
        target = self.resolve(relative, must_exist=True)
        if not _is_regular(target):
            raise ToolError(f"{relative} is not a regular file")
        return target

    def mark_changed(self, path: Path) -> None:
        self.changed = True
        self.changed_paths.add(self.shown(path))

    def shown(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix() or "."

    def changeable(self, relative: Any, target: Path) -> None:
        """Refuse a change to a protected path (as named, or where a symlink leads)."""
        for name in {str(relative).removeprefix("./"), self.shown(target)}:
            if self.protected(name):
                raise ToolError(protected_refusal(name))

    # ------------------------------------------------------------------ dispatch

    def call(self, name: str, args: dict[str, Any]) -> ToolResult:
        self.calls.append(name)
        handler = getattr(self, f"tool_{name}", None)
        if handler is None or name not in {d["name"] for d in DEFINITIONS}:
            return ToolResult(f"unknown tool {name!r}", is_error=True)
        try:
            result = handler(**(args or {}))
            result.text = redact(result.text)  # a secret in a file or a log never reaches the model
            return result
        except ToolError as exc:
            return ToolResult(str(exc), is_error=True)
        except TypeError as exc:  # wrong or missing arguments
            return ToolResult(f"bad arguments for {name}: {exc}", is_error=True)
        except (OSError, UnicodeDecodeError) as exc:
            return ToolResult(f"{name} failed: {exc}", is_error=True)

    # ------------------------------------------------------------------ tools

    def tool_list_files(self, path: str = ".", pattern: str | None = None) -> ToolResult:
        base = self.resolve(path, must_exist=True)
        found: list[str] = []
        for _, name in self.files(base):
            if pattern is None or fnmatch.fnmatch(name.rsplit("/", 1)[-1], pattern):
                found.append(name)
                if len(found) >= MAX_LIST:
                    return ToolResult("\n".join(found) + f"\n[… stopped at {MAX_LIST} files …]")
        return ToolResult("\n".join(found) or "(no files)")

    def tool_read_file(self, path: str, start_line: int = 1, end_line: int | None = None) -> ToolResult:
        target = self.regular_file(path)
        lines = target.read_text(encoding="utf-8", errors="replace").splitlines()
        start = max(1, start_line)
        end = min(len(lines), end_line or start + MAX_READ_LINES - 1, start + MAX_READ_LINES - 1)
        body = "\n".join(f"{n:>5}  {lines[n - 1]}" for n in range(start, end + 1))
        if len(body) > MAX_READ_CHARS:
            body = body[:MAX_READ_CHARS] + "\n[… truncated …]"
        more = f"\n[… {len(lines) - end} more lines; read from line {end + 1} …]" if end < len(lines) else ""
        return ToolResult(f"{self.shown(target)} ({len(lines)} lines)\n{body}{more}")

    def tool_search(self, pattern: str, path: str = ".", glob: str | None = None) -> ToolResult:
        if not isinstance(pattern, str) or not pattern:
            raise ToolError("a pattern is required")
        regex = _compile(pattern)
        base = self.resolve(path, must_exist=True)
        hits: list[str] = []
        deadline = time.monotonic() + SEARCH_SECONDS
        for file, name in self.files(base):
            if glob and not fnmatch.fnmatch(name.rsplit("/", 1)[-1], glob):
                continue
            if time.monotonic() > deadline:
                return ToolResult("\n".join(hits) + f"\n[… search stopped after {SEARCH_SECONDS:g}s …]")
            try:
                if file.stat().st_size > MAX_SEARCH_FILE_BYTES:
                    continue
                text = file.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            for number, line in enumerate(text.splitlines(), 1):
                if regex.search(line):
                    hits.append(f"{name}:{number}: {line.strip()[:200]}")
                    if len(hits) >= MAX_MATCHES:
                        return ToolResult("\n".join(hits) + "\n[… more matches not shown …]")
        return ToolResult("\n".join(hits) or "no matches")

    def tool_edit_file(self, path: str, old_text: str, new_text: str) -> ToolResult:
        target = self.regular_file(path)
        self.changeable(path, target)
        text = target.read_text(encoding="utf-8")
        count = text.count(old_text) if old_text else 0
        if count != 1:
            raise ToolError(
                f"old_text occurs {count} times in {path}; it must match exactly once (include more surrounding lines)"
                if count
                else f"old_text was not found in {path}"
            )
        target.write_text(text.replace(old_text, new_text, 1), encoding="utf-8")
        self.mark_changed(target)
        return ToolResult(f"edited {self.shown(target)}")

    def tool_write_file(self, path: str, content: str) -> ToolResult:
        if len(content.encode("utf-8")) > MAX_WRITE_BYTES:
            raise ToolError(f"content is larger than {MAX_WRITE_BYTES} bytes")
        target = self.resolve(path)
        self.changeable(path, target)
        if target.is_dir():
            raise ToolError(f"{path} is a directory")
        if target.exists() and not _is_regular(target):
            raise ToolError(f"{path} is not a regular file")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
        self.mark_changed(target)
        return ToolResult(f"wrote {self.shown(target)} ({len(content)} characters)")

    def tool_delete_file(self, path: str) -> ToolResult:
        target = self.regular_file(path)
        self.changeable(path, target)
        target.unlink()
        self.mark_changed(target)
        return ToolResult(f"deleted {self.shown(target)}")

    def tool_run_checks(self) -> ToolResult:
        report = self.run_checks()
        if len(report) > OUTPUT_LIMIT:  # keep the start (which check) and the end (the verdict)
            marker = "\n[… check output trimmed …]\n"
            head = OUTPUT_LIMIT // 4
            report = report[:head] + marker + report[-(OUTPUT_LIMIT - head - len(marker) - 16) :]
        return ToolResult(report)

    def tool_finish(self, summary: str) -> ToolResult:
        return ToolResult("finished", finished=summary.strip() or "Done.")
