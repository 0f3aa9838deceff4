"""The target repository's own `.honk.toml`: its checks and build targets.

When the file is absent, checks are detected from the repository's content so a plain
repository still gets verified.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

CONFIG_FILE = ".honk.toml"
MAX_CONFIG_BYTES = 256 * 1024


class RepoConfigError(ValueError):
    """`.honk.toml` is unreadable or invalid; the message says where and what to fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CheckSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    run: list[str] = Field(min_length=1)
    timeout_seconds: int = Field(900, ge=1, le=6 * 3600)
    env: dict[str, str] = Field(default_factory=dict)


class BuildSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    driver: Literal["command"] = "command"
    run: list[str] = Field(min_length=1)
    artifacts: list[str] = Field(min_length=1, description="globs relative to the repository")
    timeout_seconds: int = Field(1800, ge=1, le=12 * 3600)
    env: dict[str, str] = Field(default_factory=dict)
    task_queue: str | None = None

    @field_validator("artifacts")
    @classmethod
    def _relative(cls, globs: list[str]) -> list[str]:
        for pattern in globs:
            if pattern.startswith("/") or ".." in Path(pattern).parts:
                raise ValueError(f"artifact glob {pattern!r} must stay inside the repository")
        return globs


class RepoConfig(_Strict):
    checks: list[CheckSpec] = Field(default_factory=list)
    build: list[BuildSpec] = Field(default_factory=list)
    detected: bool = Field(False, exclude=True)

    def target(self, name: str) -> BuildSpec:
        for spec in self.build:
            if spec.name == name:
                return spec
        known = ", ".join(s.name for s in self.build) or "none"
        raise RepoConfigError(f"{CONFIG_FILE}: no build target named {name!r} (known: {known})")


def load_repo_config(root: Path) -> RepoConfig:
    path = root / CONFIG_FILE
    if not path.exists():
        return detect_repo_config(root)
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise RepoConfigError(f"{CONFIG_FILE} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RepoConfigError(f"{CONFIG_FILE} is not valid TOML: {exc}") from None
    try:
        config = RepoConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise RepoConfigError(f"{CONFIG_FILE}: {problems}") from None
    names = [c.name for c in config.checks] + [f"build:{b.name}" for b in config.build]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RepoConfigError(f"{CONFIG_FILE}: duplicate names {', '.join(duplicates)}")
    return config


def detect_repo_config(root: Path) -> RepoConfig:
    """Guess checks from the repository's content when it has no `.honk.toml`."""
    checks: list[CheckSpec] = []
    if (root / "Makefile").exists() and "test:" in (root / "Makefile").read_text(errors="replace"):
        checks.append(CheckSpec(name="make-test", run=["make", "test"]))
    elif (root / "package.json").exists():
        checks.append(CheckSpec(name="npm-test", run=["npm", "test", "--silent"]))
    elif any((root / f).exists() for f in ("pyproject.toml", "setup.py", "pytest.ini")) or (
        root / "tests"
    ).is_dir():
        checks.append(CheckSpec(name="pytest", run=["python3", "-m", "pytest", "-q"]))
    return RepoConfig(checks=checks, detected=True)
