"""The one branch-name validator: the registry's base branches and every request's base and
work branch are checked by it before they become git arguments."""

from __future__ import annotations

import re

MAX_BRANCH = 200

# git check-ref-format: no control characters, space, `~ ^ : ? * [ \` anywhere.
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def valid_branch(name: str) -> bool:
    """git check-ref-format's rules for `refs/heads/<name>`, checked without running git,
    and nothing git could read as an option (a leading `-`)."""
    if not 0 < len(name) <= MAX_BRANCH or name == "@":
        return False
    if name.startswith(("-", "/")) or name.endswith(("/", ".")):
        return False
    if ".." in name or "@{" in name or _FORBIDDEN.search(name):
        return False
    # Per component: not empty (`//`), not starting with a dot, not ending with `.lock`.
    return all(part and not part.startswith(".") and not part.endswith(".lock") for part in name.split("/"))
