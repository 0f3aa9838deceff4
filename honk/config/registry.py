"""The repository registry (`honk.toml`): which repositories Honk may change, where they
live, and who may request and approve changes to them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from honk.git.credentials import split_credentials
from honk.git.refs import valid_branch

REPO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
MAX_REGISTRY_BYTES = 1024 * 1024


class RegistryError(Exception):
    """The registry is missing or invalid, or a repository or person is not allowed."""


class RepoEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = ""
    remote: str
    base_branch: str = "main"
    channels: list[str] = Field(default_factory=list)
    requesters: list[str] = Field(default_factory=lambda: ["*"])
    approvers: list[str] = Field(min_length=1)
    merge_strategy: Literal["squash", "merge", "rebase"] = "squash"
    # The repository's web page (e.g. https://github.com/org/app): branch links in the UI card.
    web_url: str | None = Field(None, pattern=r"^https?://\S+$")
    # Approval policy (see README "Approvals"): carried into each request's ChangeRequest.policy.
    allow_self_approval: bool = True
    min_approvers: int = Field(1, ge=1, le=10)
    protected_paths: list[str] = Field(default_factory=list)
    protected_approvers: list[str] = Field(default_factory=list)
    # Userinfo found in `remote`, kept in memory only: a private attribute is never part of
    # a dump, a repr or the workflow input (which gets the cleaned `remote`).
    _credentials: tuple[str | None, str | None] | None = PrivateAttr(default=None)

    @property
    def credentials(self) -> tuple[str | None, str | None] | None:
        """(username, password) from the registry's remote URL, or None."""
        return self._credentials

    def may_request(self, who: str) -> bool:
        return "*" in self.requesters or who in self.requesters


class Registry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    repos: dict[str, RepoEntry]
    source: str = ""

    def get(self, name: str) -> RepoEntry:
        try:
            return self.repos[name]
        except KeyError:
            known = ", ".join(sorted(self.repos)) or "none"
            raise RegistryError(f"unknown repository {name!r}; repositories in {self.source}: {known}") from None

    def for_channel(self, channel: str) -> RepoEntry | None:
        return next((r for r in self.repos.values() if channel in r.channels), None)


def load_registry(path: Path, data_dir: Path) -> Registry:
    """Read the registry; `{data_dir}` in a remote expands to Honk's data directory and a
    relative path is taken relative to the registry file."""
    if not path.exists():
        raise RegistryError(f"repository registry {path} does not exist (set HONK_REGISTRY)")
    if path.stat().st_size > MAX_REGISTRY_BYTES:
        raise RegistryError(f"{path} is larger than {MAX_REGISTRY_BYTES} bytes")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        registry = Registry.model_validate({"repos": raw.get("repos", {}), "source": str(path)})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{path} is not valid TOML: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise RegistryError(f"{path}: {problems}") from None
    for name, entry in registry.repos.items():
        if not REPO_NAME.match(name):
            raise RegistryError(f"{path}: repository name {name!r} may use letters, digits, '.', '_' and '-'")
        entry.name = name
        if not valid_branch(entry.base_branch):
            raise RegistryError(f"{path}: repos.{name}.base_branch {entry.base_branch!r} is not a valid branch name")
        remote = entry.remote.replace("{data_dir}", str(data_dir))
        if "://" not in remote and not re.match(r"^[\w.-]+@[\w.-]+:", remote):
            remote = str((path.parent / remote).resolve()) if not Path(remote).is_absolute() else remote
        # Credentials never travel with the remote: the workflow (whose history is stored and
        # shown) gets the clean URL; workers authenticate with HONK_GIT_* or their own git.
        remote, username, password = split_credentials(remote)
        entry.remote = remote
        if username is not None or password is not None:
            entry._credentials = (username, password)
    return registry
