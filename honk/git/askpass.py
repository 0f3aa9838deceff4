#!/usr/bin/env python3
"""GIT_ASKPASS helper: answers git's username/password prompts from this process's environment.

Honk runs network git commands with ``GIT_ASKPASS`` pointing here and, when it has
credentials, ``HONK_GIT_USERNAME`` / ``HONK_GIT_PASSWORD`` in that one command's environment.
That way a credential is never an argument (visible in ``ps``), never in a config file and
never in a URL that git could print or store.

git calls ``askpass.py "Username for 'https://host': "`` and then
``askpass.py "Password for 'https://user@host': "``; the answer goes to stdout. Any other
prompt (an ssh passphrase, a host-key question) or a missing value exits 1, so git reports
a clear "could not read ..." instead of hanging. With ``HONK_GIT_HOST`` set, only prompts
for that host (``host`` or ``host:port``) are answered: a remote elsewhere never sees the token.

Standard library only: it runs under whatever python3 the worker has.
"""

from __future__ import annotations

import os
import re
import sys
from urllib.parse import urlsplit

_QUOTED_URL = re.compile(r"'([^']*)'")


def prompt_host(prompt: str) -> tuple[str, str]:
    """(hostname, host[:port]) of the URL quoted in git's prompt, lower-cased; empty if none."""
    match = _QUOTED_URL.search(prompt)
    if not match:
        return "", ""
    try:
        parts = urlsplit(match.group(1))
        hostname = (parts.hostname or "").lower()
        netloc = parts.netloc.rpartition("@")[2].lower()
    except ValueError:
        return "", ""
    return hostname, netloc


def answer(prompt: str, env: dict[str, str]) -> str | None:
    """What to print for `prompt`, or None to decline."""
    wanted_host = env.get("HONK_GIT_HOST", "").strip().lower()
    if wanted_host:
        hostname, netloc = prompt_host(prompt)
        if wanted_host not in (hostname, netloc):
            return None
    kind = prompt.strip().lower()
    if kind.startswith("username"):
        return env.get("HONK_GIT_USERNAME") or None
    if kind.startswith("password"):
        return env.get("HONK_GIT_PASSWORD") or None
    return None


def main(argv: list[str]) -> int:
    reply = answer(argv[1] if len(argv) > 1 else "", dict(os.environ))
    if reply is None:
        return 1
    sys.stdout.write(reply + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
