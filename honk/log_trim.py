"""Reduce a command's log to the few kilobytes that matter for fixing a failure: the lines
that name errors and failing tests, and the tail, without colour codes or endless lines.
The full log stays on disk; only this excerpt reaches the model and the chat thread."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from pathlib import Path

# Lines worth showing a coding agent: test failures, assertions, tracebacks, compiler errors.
_INTERESTING = re.compile(
    r"error:|Error|ERROR|FAILED|FAIL\b|failed|assert|Assert|Traceback|panicked|Exception"
    r"|^E {2,}"  # pytest's assertion detail lines
    r"|^\s*File \".*\", line \d+"  # Python traceback frames
    r"|^\s*[\w./\\-]*\w\.\w+:\d+(?::\d+)?:"  # path/to/file.ext:line[:col]: (compilers, linters)
)
_ANSI = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]")
_MAX_LINE = 400  # characters kept of one line; minified JS or base64 blobs are not helpful
_TAIL_LINES = 200


def trim_output(log_path: Path, limit: int = 4000) -> str:
    """At most `limit` characters of `log_path` that matter for fixing a failure.

    The log is read line by line (a multi-GB log costs a few hundred KB of memory): the
    first error-looking lines are kept (the first error is usually the cause), plus the last
    lines (where test runners print their summary), in log order, with markers such as
    ``[… 12345 lines omitted …]`` where lines were left out.
    """
    try:
        lines = _read_lines(log_path)
        total, errors, tail = _select(lines, limit)
    except FileNotFoundError:
        return ""
    return _assemble(total, errors, tail, limit)


def _read_lines(path: Path) -> Iterator[str]:
    """Lines of the log without newlines, each cut to `_MAX_LINE` characters, without ever
    reading a whole (possibly gigantic) line into memory."""
    with open(path, "rb") as f:
        while True:
            chunk = f.readline(_MAX_LINE * 4)
            if not chunk:
                return
            if not chunk.endswith(b"\n"):
                # Over-long line: keep its start, skip the rest in bounded reads.
                while (more := f.readline(64 * 1024)) and not more.endswith(b"\n"):
                    pass
            yield _clean(chunk)


def _clean(raw: bytes) -> str:
    raw = _ANSI.sub(b"", raw.rstrip(b"\r\n"))
    raw = raw.rsplit(b"\r", 1)[-1]  # progress bars redraw with \r: keep the final state
    text = raw.decode("utf-8", errors="replace").rstrip()
    if len(text) > _MAX_LINE:
        text = text[:_MAX_LINE] + " […]"
    return text


def _select(lines: Iterator[str], limit: int) -> tuple[int, list[tuple[int, str]], deque[tuple[int, str]]]:
    """One pass: count lines, keep the first interesting ones (up to `limit` characters,
    duplicates once) and the last `_TAIL_LINES` lines."""
    errors: list[tuple[int, str]] = []
    seen: set[str] = set()
    budget = limit
    tail: deque[tuple[int, str]] = deque(maxlen=_TAIL_LINES)
    total = 0
    for number, line in enumerate(lines):
        total = number + 1
        tail.append((number, line))
        if budget > 0 and line not in seen and _INTERESTING.search(line):
            seen.add(line)
            errors.append((number, line))
            budget -= len(line) + 1
    return total, errors, tail


def _assemble(total: int, errors: list[tuple[int, str]], tail: deque[tuple[int, str]], limit: int) -> str:
    # The tail gets up to half the room when there are errors to show, all of it otherwise.
    tail_room = limit // 2 if errors else limit
    kept_tail: list[tuple[int, str]] = []
    used = 0
    for number, line in reversed(tail):
        if used + len(line) + 1 > tail_room and kept_tail:
            break
        kept_tail.append((number, line))
        used += len(line) + 1
    kept_tail.reverse()
    first_tail = kept_tail[0][0] if kept_tail else total

    chosen = dict(kept_tail)
    # Earliest errors first, in the room the tail left (markers cost ~40 characters each).
    room = limit - used
    for number, line in errors:
        if number >= first_tail:
            break
        cost = len(line) + 1 + 40
        if cost > room:
            break
        chosen[number] = line
        room -= cost

    out: list[str] = []
    previous = -1
    for number in sorted(chosen):
        if number > previous + 1:
            out.append(_omitted(number - previous - 1))
        out.append(chosen[number])
        previous = number
    if total > previous + 1:
        out.append(_omitted(total - previous - 1))
    text = "\n".join(out)
    if len(text) > limit:  # only when a single line is longer than the whole limit
        text = "[…]" + text[-(limit - 3) :]
    return text


def _omitted(count: int) -> str:
    return f"[… {count} line{'s' if count != 1 else ''} omitted …]"
