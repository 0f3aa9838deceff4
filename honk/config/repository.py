"""The target repository's own `.honk.toml`: its checks and build targets.

When the file is absent, checks are detected from the repository's content so a plain
repository still gets verified.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

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


BuildDriverName = Literal["command", "gradle", "xcodebuild", "fastlane", "expo"]

# Settings that only make sense for one driver; naming one under another driver is a mistake
# worth reporting (a `scheme` under `gradle` would otherwise be silently ignored).
_DRIVER_FIELDS: dict[str, tuple[str, ...]] = {
    "command": ("run",),
    "gradle": ("task",),
    "xcodebuild": ("scheme", "workspace", "project", "configuration", "export_options", "destination"),
    "fastlane": ("platform", "lane"),
    "expo": ("platforms",),
}
_REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "command": ("run", "artifacts"),
    "xcodebuild": ("scheme", "export_options"),
    "fastlane": ("platform", "lane"),
}


def _inside(value: str, what: str) -> str:
    if value.startswith("/") or ".." in Path(value).parts:
        raise ValueError(f"{what} {value!r} must stay inside the repository")
    return value


class BuildSpec(_Strict):
    """One build target. `command` runs `run` as given; the presets (`gradle`, `xcodebuild`,
    `fastlane`, `expo`) build their command lines from the fields below and know where their
    tool puts its outputs, so `artifacts` is optional for them."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    driver: BuildDriverName = "command"
    run: list[str] | None = Field(None, min_length=1, description="command: the argv")
    artifacts: list[str] | None = Field(
        None, min_length=1, description="globs relative to the repository (presets have defaults)"
    )
    timeout_seconds: int = Field(1800, ge=1, le=12 * 3600)
    env: dict[str, str] = Field(default_factory=dict)
    task_queue: str | None = None
    project_dir: str = Field(".", description="where the tool runs, relative to the repository")
    args: list[str] = Field(default_factory=list, description="presets: extra arguments")
    # gradle
    task: str | None = Field(None, description="gradle task (default assembleDebug)")
    # xcodebuild (paths relative to project_dir, as on the command line)
    scheme: str | None = None
    workspace: str | None = Field(None, description="the .xcworkspace")
    project: str | None = Field(None, description="the .xcodeproj (when there is no workspace)")
    configuration: str | None = Field(None, description="default Release")
    export_options: str | None = Field(None, description="ExportOptions.plist for -exportArchive")
    destination: str | None = Field(None, description="default generic/platform=iOS")
    # fastlane
    platform: Literal["ios", "android"] | None = None
    lane: str | None = None
    # expo
    platforms: list[Literal["android", "ios"]] | None = Field(None, min_length=1)

    @field_validator("artifacts")
    @classmethod
    def _relative(cls, globs: list[str] | None) -> list[str] | None:
        for pattern in globs or []:
            _inside(pattern, "artifact glob")
        return globs

    @field_validator("project_dir", "workspace", "project", "export_options")
    @classmethod
    def _relative_path(cls, value: str | None) -> str | None:
        return None if value is None else _inside(value, "path")

    @field_validator("task", "scheme", "configuration", "lane")
    @classmethod
    def _not_an_option(cls, value: str | None) -> str | None:
        # These become arguments of the tool: a leading "-" would be read as an option.
        if value is not None and (not value.strip() or value.startswith("-")):
            raise ValueError(f"{value!r} is not a valid name")
        return value

    @model_validator(mode="after")
    def _fits_driver(self) -> BuildSpec:
        own = _DRIVER_FIELDS[self.driver]
        for driver, fields in _DRIVER_FIELDS.items():
            for field in fields:
                if driver != self.driver and field not in own and getattr(self, field) is not None:
                    raise ValueError(f"`{field}` is a setting of the {driver} driver, not {self.driver}")
        missing = [f for f in _REQUIRED_FIELDS.get(self.driver, ()) if getattr(self, f) is None]
        if missing:
            raise ValueError(f"the {self.driver} driver needs {', '.join(missing)}")
        if self.driver == "xcodebuild" and self.workspace and self.project:
            raise ValueError("set either `workspace` or `project`, not both")
        if self.driver == "command" and self.args:
            raise ValueError("`args` is for the preset drivers; put arguments in `run`")
        return self


class AgentSpec(_Strict):
    """Per-repository agent limits; they can lower the service's limits, never raise them."""

    max_turns: int | None = Field(None, ge=1, le=1000)
    max_tokens: int | None = Field(None, ge=1000)
    max_dollars: float | None = Field(None, gt=0)
    max_minutes: float | None = Field(None, gt=0)
    instructions_file: str | None = Field(None, description="default: AGENTS.md, then CLAUDE.md")
    judge: bool | None = None


class ProtectSpec(_Strict):
    """Paths the agent may not change (on top of `honk.config.protect.DEFAULT_PROTECTED` and
    the files the checks and builds run); globs relative to the repository, `**` spans
    directories."""

    paths: list[str] = Field(default_factory=list)


class EnvironmentSpec(_Strict):
    """How checks and builds get their toolchain and dependencies: `setup` runs once per key
    (the `inputs`' contents and this table) in a directory outside the workspace, with the
    network when `network` says so; checks and builds then see it read-only, offline."""

    setup: list[str | list[str]] = Field(
        default_factory=list, description="commands run in $HONK_ENV; a string runs with sh -c"
    )
    inputs: list[str] = Field(default_factory=list, description="globs of files that key the environment")
    network: bool = Field(True, description="whether setup may reach the network (checks never do)")
    paths: list[str] = Field(default_factory=list, description="directories of $HONK_ENV put first on PATH")
    env: dict[str, str] = Field(
        default_factory=dict,
        description="variables for setup, checks and builds; ${HONK_ENV}, ${HONK_WORKSPACE} expand",
    )
    workspace_mounts: list[str] = Field(
        default_factory=list, description="directories of $HONK_ENV shown at the same place in the workspace"
    )
    timeout_seconds: int = Field(1800, ge=1, le=6 * 3600)

    @field_validator("inputs", "paths", "workspace_mounts")
    @classmethod
    def _relative(cls, values: list[str]) -> list[str]:
        for value in values:
            _inside(value, "path")
        return values

    @field_validator("setup")
    @classmethod
    def _commands(cls, commands: list[str | list[str]]) -> list[str | list[str]]:
        for command in commands:
            if not command:
                raise ValueError("an empty setup command")
        return commands

    def argvs(self) -> list[list[str]]:
        return [["sh", "-c", c] if isinstance(c, str) else list(c) for c in self.setup]

    @property
    def empty(self) -> bool:
        return not (self.setup or self.paths or self.env or self.workspace_mounts)


class RepoConfig(_Strict):
    checks: list[CheckSpec] = Field(default_factory=list)
    environment: EnvironmentSpec = Field(default_factory=EnvironmentSpec)
    build: list[BuildSpec] = Field(default_factory=list)
    agent: AgentSpec = Field(default_factory=AgentSpec)
    protect: ProtectSpec = Field(default_factory=ProtectSpec)
    detected: bool = Field(False, exclude=True)

    def target(self, name: str) -> BuildSpec:
        for spec in self.build:
            if spec.name == name:
                return spec
        known = ", ".join(s.name for s in self.build) or "none"
        raise RepoConfigError(f"{CONFIG_FILE}: no build target named {name!r} (known: {known})")


# How the configuration is read: from a directory (the CLI, tests) or from a commit of the
# base branch (`honk.workspace.base_config`), which is what requests use: the verifier
# belongs to the team, not to the work tree the agent edits.
Exists = Callable[[str], bool]
ReadText = Callable[[str], "str | None"]


def load_repo_config(root: Path) -> RepoConfig:
    """The configuration of the files in `root` (not of a request: see `Workspaces.repo_config`)."""

    def read(rel: str) -> str | None:
        path = root / rel
        if not path.is_file():
            return None
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise RepoConfigError(f"{rel} is larger than {MAX_CONFIG_BYTES} bytes")
        return path.read_text(encoding="utf-8", errors="replace")

    from honk.config.detection import detect_repo_config

    return repo_config_from(read, lambda: detect_repo_config(root))


def repo_config_from(read: ReadText, detect: Callable[[], RepoConfig]) -> RepoConfig:
    """`.honk.toml` as `read` returns it, or the configuration `detect` guesses from the
    content when there is none."""
    text = read(CONFIG_FILE)
    if text is None:
        return detect()
    if len(text.encode("utf-8", "replace")) > MAX_CONFIG_BYTES:
        raise RepoConfigError(f"{CONFIG_FILE} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RepoConfigError(f"{CONFIG_FILE} is not valid TOML: {exc}") from None
    try:
        config = RepoConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise RepoConfigError(f"{CONFIG_FILE}: {problems}") from None
    names = [c.name for c in config.checks] + [f"build:{b.name}" for b in config.build]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise RepoConfigError(f"{CONFIG_FILE}: duplicate names {', '.join(duplicates)}")
    return config
