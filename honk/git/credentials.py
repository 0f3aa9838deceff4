"""Credentials for git remotes, in memory only.

Remotes are stored and passed without userinfo; a network git command gets the username and
password in its own environment, answered through GIT_ASKPASS (`honk/git/askpass.py`), so a
credential is never an argument, a URL git could print or a config entry.

No GitPython here: the registry uses `split_credentials` and must not load it.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import sys
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from honk.redact import remember_secrets

if TYPE_CHECKING:  # the registry imports this module; settings need not load with it
    from honk.config.settings import Settings


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """`url` without its credentials, plus the (decoded) username and password it carried.

    For http(s) the whole userinfo is a credential and goes. For other schemes
    (`ssh://git@host/r.git`) the user name is part of the address and stays; only a
    password is taken out. Paths and scp-like `git@host:r.git` come back unchanged.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme or "/" in scheme:
        return url, None, None
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    userinfo, at, hostport = authority.rpartition("@")
    if not at:
        return url, None, None
    raw_user, colon, raw_password = userinfo.partition(":")
    user = urllib.parse.unquote(raw_user) or None
    password = urllib.parse.unquote(raw_password) if colon else None
    remember_secrets([password])
    if scheme.lower() in ("http", "https"):
        return f"{scheme}://{hostport}{tail}", user, password
    if password is None:
        return url, None, None
    kept = f"{raw_user}@" if raw_user else ""
    return f"{scheme}://{kept}{hostport}{tail}", user, password


def url_host(url: str) -> str | None:
    """`host[:port]` of a URL, lower-cased; None for paths and scp-like addresses."""
    _scheme, sep, rest = url.partition("://")
    if not sep:
        return None
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    return authority.rpartition("@")[2].lower() or None


@dataclass(frozen=True)
class GitCredentials:
    """A username and password (or token) for https remotes. In memory only: git gets them
    per command through GIT_ASKPASS, never as an argument, a URL or a config entry."""

    username: str
    password: str | None = field(default=None, repr=False)
    host: str | None = None  # answer prompts of this host[:port] only; None: any host

    def __post_init__(self) -> None:
        remember_secrets([self.password])

    @classmethod
    def from_settings(cls, settings: Settings) -> GitCredentials | None:
        if not settings.git_username:
            return None
        password = settings.git_password.get_secret_value() if settings.git_password else None
        return cls(settings.git_username, password or None, settings.git_host or None)

    @classmethod
    def from_environment(cls) -> GitCredentials | None:
        """The worker's HONK_GIT_* variables, for git commands run without a Settings at
        hand (they are the same variables Settings reads)."""
        username = os.environ.get("HONK_GIT_USERNAME")
        if not username:
            return None
        return cls(username, os.environ.get("HONK_GIT_PASSWORD") or None, os.environ.get("HONK_GIT_HOST") or None)

    def env(self) -> dict[str, str]:
        """What a network git command needs in its environment to authenticate with these."""
        # Only our askpass may answer: a credential helper the worker configured would be
        # asked to *store* the credentials after a successful request, so the helper list
        # is reset for this one command (environment config, not `-c`, which `ps` shows).
        inherited = os.environ.get("GIT_CONFIG_COUNT", "")
        index = int(inherited) if inherited.isdigit() else 0
        return {
            "HONK_GIT_USERNAME": self.username,
            "HONK_GIT_PASSWORD": self.password or "",
            "HONK_GIT_HOST": self.host or "",
            "GIT_CONFIG_COUNT": str(index + 1),
            f"GIT_CONFIG_KEY_{index}": "credential.helper",
            f"GIT_CONFIG_VALUE_{index}": "",
        }


@functools.cache
def askpass_program() -> str:
    """Path of the GIT_ASKPASS program. The shipped script when it can run as is; otherwise
    (an install that dropped its executable bit, no python3 on PATH) a copy run by this
    interpreter in a private temporary directory. It holds no secret either way."""
    script = Path(__file__).with_name("askpass.py")
    if os.access(script, os.X_OK) and shutil.which("python3"):
        return str(script)
    shim = Path(tempfile.mkdtemp(prefix="honk-askpass-")) / "git-askpass"
    shim.write_text(f"#!{sys.executable}\n" + script.read_text(encoding="utf-8"), encoding="utf-8")
    shim.chmod(0o700)
    return str(shim)


def askpass_env(credentials: GitCredentials | None) -> dict[str, str]:
    """The environment a network git command authenticates with: `credentials`, else the
    worker's HONK_GIT_* variables, else nothing (the worker's own helper or ssh keys)."""
    env = {"GIT_ASKPASS": askpass_program()}
    credentials = credentials or GitCredentials.from_environment()
    if credentials is not None:
        env.update(credentials.env())
    return env
