"""Service settings, read once from the environment (prefix ``HONK_``).

Every process (CLI, worker, dev stack, chat service) uses this one object. A missing or
malformed value fails at start with a message that names the variable to fix.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the environment variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HONK_", extra="ignore")

    temporal_address: str = Field("localhost:7233", description="Temporal frontend host:port")
    temporal_namespace: str = "default"
    task_queue: str = Field("honk", description="queue for the workflow and default activities")
    data_dir: Path = Field(Path(".honk"), description="workspaces, artifacts, dev-server state")
    registry: Path = Field(Path("honk.toml"), description="repository registry file")
    user: str = Field(
        default_factory=lambda: os.environ.get("USER") or "cli",
        description="identity used as 'by'/'requester' by the CLI",
    )
    agent_backend: Literal["scripted"] = "scripted"
    agent_script: Path | None = Field(None, description="scripted model's replies (JSON)")
    max_concurrent_activities: int = Field(4, ge=1, le=256)
    public_url: str | None = Field(None, description="base URL that serves the artifact store")
    ui_port: int = Field(8233, ge=1, le=65535)
    log_level: str = "INFO"

    @field_validator("data_dir", "registry", "agent_script", mode="after")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return value.expanduser().absolute() if value is not None else None

    @field_validator("temporal_address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"expected host:port, got {value!r}")
        return value

    @property
    def workspaces_dir(self) -> Path:
        return self.data_dir / "workspaces"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "store"


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; overrides win. Errors name the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            problems.append(f"HONK_{field.upper()}: {err['msg']}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
