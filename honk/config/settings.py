"""Service settings, read once from the environment (prefix ``HONK_``).

Every process (CLI, worker, dev stack, chat service) uses this one object. A missing or
malformed value fails at start with a message that names the variable to fix.
"""

from __future__ import annotations

import os
import pwd
import re
import subprocess
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the environment variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HONK_", extra="ignore", populate_by_name=True)

    temporal_address: str = Field("localhost:7233", description="Temporal frontend host:port")
    temporal_namespace: str = Field("default", description="Temporal namespace of the requests")
    # Any Temporal (honk/config/temporal_connection.py): TLS with the system's roots or a private
    # CA, mutual TLS with a client certificate, or a Temporal Cloud API key (implies TLS).
    temporal_tls: bool = Field(False, description="TLS to the frontend (implied by any other TLS setting)")
    temporal_tls_ca: Path | None = Field(None, description="PEM CA of the server (default: system roots)")
    temporal_tls_cert: Path | None = Field(None, description="PEM client certificate (mutual TLS)")
    temporal_tls_key: Path | None = Field(None, description="PEM key of the client certificate")
    temporal_tls_server_name: str | None = Field(None, description="name to verify in the server's certificate")
    temporal_api_key: SecretStr | None = Field(None, description="Temporal Cloud API key")
    temporal_api_key_file: Path | None = Field(None, description="file holding the API key (e.g. a mounted secret)")
    task_queue: str = Field("honk", description="queue for the workflow and default activities")
    data_dir: Path = Field(Path(".honk"), description="workspaces, artifacts, dev-server state")
    registry: Path = Field(Path("honk.toml"), description="repository registry file")
    user: str = Field(
        default_factory=lambda: _default_user(),
        description="identity used as 'by'/'requester' by the CLI",
        json_schema_extra={"doc_default": "`$USER`"},
    )
    agent_backend: Literal["messages", "claude-code"] = Field(
        "messages", description="tool-use loop on the Messages API, or Claude Code"
    )
    anthropic_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("HONK_ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY"),
        description="key for the Messages API",
        json_schema_extra={"doc_default": "unset: the dev stack serves the scripted model"},
    )
    anthropic_base_url: str | None = Field(
        None,
        validation_alias=AliasChoices("HONK_ANTHROPIC_BASE_URL", "ANTHROPIC_BASE_URL"),
        description="another Messages-API endpoint",
        json_schema_extra={"doc_default": "Anthropic's"},
    )
    model: str = Field("claude-sonnet-4-5", description="model for the agent and the judge")
    model_timeout_s: float = Field(600, gt=0, description="one model call")
    agent_max_turns: int = Field(40, ge=1, le=1000, description="model turns per agent run")
    agent_max_tokens: int = Field(2_000_000, ge=1000, description="input + output tokens per run")
    agent_max_dollars: float = Field(5.0, gt=0, description="spend per agent run (USD)")
    agent_max_minutes: float = Field(30, gt=0, description="wall time per agent run")
    judge: bool = Field(True, description="review each diff against the request before checks")
    agent_script: Path | None = Field(None, description="the scripted model's replies (JSON), offline mode")
    sandbox: Literal["auto", "bwrap", "none"] = Field(
        "auto", description="box repository commands with bubblewrap (auto: when it works here)"
    )
    sandbox_network: bool = Field(False, description="let sandboxed commands reach the network")
    sandbox_writable: list[Path] = Field(
        default_factory=list, description="extra paths sandboxed commands may write (operator's choice)"
    )
    sandbox_tools: list[Path] = Field(
        default_factory=list,
        description="directories sandboxed commands may read besides the system's (a prebuilt virtualenv, an SDK)",
    )
    sandbox_uid: int = Field(65534, ge=1, description="unprivileged uid (and gid) commands run as in the box")
    limit_processes: int = Field(1024, ge=16, description="processes and threads one repository command may run")
    limit_memory_mb: int = Field(8192, ge=64, description="address space of each process of a repository command")
    limit_file_size_mb: int = Field(2048, ge=1, description="largest file a repository command may write")
    limit_open_files: int = Field(4096, ge=64, description="open files per process of a repository command")
    check_log_max_mb: int = Field(20, ge=1, description="a command's log is cut (and the command stopped) beyond this")
    max_concurrent_activities: int = Field(
        4, ge=1, le=256, description="per worker; blocking work runs on a thread pool of this size"
    )
    max_cached_workflows: int = Field(
        100,
        ge=0,
        description="requests a worker keeps in memory; others (most wait days for approval) are replayed when needed",
    )
    public_url: str | None = Field(
        None, description="base URL a phone reaches the artifact web service at; default http://artifact_host:port"
    )
    artifact_host: str = Field("127.0.0.1", description="address the artifact web service listens on")
    artifact_port: int = Field(8234, ge=0, le=65535, description="port of the artifact web service (0: any free)")
    # Where builds and install pages are published (activities/store.py). Links expire:
    # SigV4 presigned URLs live 7 days at most, and local links follow the same rule.
    artifact_store: Literal["local", "s3"] = Field("local", description="local or s3")
    link_expiry_seconds: int = Field(
        7 * 24 * 3600, ge=60, le=7 * 24 * 3600, description="lifetime of published links (max 7 days)"
    )
    # Retention of what ended requests leave on this host (`honk janitor`). Published copies
    # are kept at least as long as their links live (the janitor clamps, and says so).
    retain_artifacts_seconds: int = Field(14 * 86400, ge=3600, description="build outputs of ended requests")
    retain_logs_seconds: int = Field(30 * 86400, ge=3600, description="check and build logs of ended requests")
    retain_published_seconds: int = Field(8 * 86400, ge=3600, description="local published copies (≥ link expiry)")
    retain_chat_state_seconds: int = Field(30 * 86400, ge=3600, description="chat and notification state")
    link_signing_key: SecretStr | None = Field(
        None, description="HMAC key of local store links; default: generated once in data_dir"
    )
    s3_bucket: str | None = Field(None, validate_default=True, description="bucket for artifact_store=s3")
    s3_prefix: str = Field("", description="key prefix inside the bucket, e.g. honk/")
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, R2, ...)")
    s3_region: str | None = Field(None, description="region; default: the AWS SDK's configuration")
    s3_access_key_id: SecretStr | None = Field(None, description="default: the AWS SDK's chain")
    s3_secret_access_key: SecretStr | None = Field(None, description="needs HONK_S3_ACCESS_KEY_ID (never logged)")
    s3_session_token: SecretStr | None = Field(None, description="temporary credentials' session token")
    s3_addressing_style: Literal["auto", "path", "virtual"] = Field(
        "auto", description="path for most self-hosted S3 servers"
    )
    s3_part_size_mb: int = Field(8, ge=5, le=512, description="multipart upload part size")
    s3_concurrency: int = Field(4, ge=1, le=16, description="parts uploaded at once")
    ui_port: int = Field(8233, ge=1, le=65535, description="port of the Temporal UI that `honk dev` starts")
    log_level: str = Field("INFO", description="logs are JSON lines; DEBUG, INFO, WARNING, ERROR")
    workspace_pool_size: int = Field(
        4,
        ge=0,
        le=256,
        description="idle checked-out workspaces kept per repository for reuse (0: none)",
    )
    # Credentials for https remotes, handed to git per command through GIT_ASKPASS (see
    # activities/workspace.py); never written to a file, a URL or a command line.
    git_username: str | None = Field(None, description="username for https git remotes")
    git_password: SecretStr | None = Field(None, description="password or token for https git remotes")
    git_host: str | None = Field(None, description="only answer credential prompts of this host (host or host:port)")
    # Slack: the chat service (`honk chat`) and the notify activity. Tokens and the signing
    # secret are SecretStr, so neither repr() nor a validation error ever prints them.
    slack_bot_token: SecretStr | None = Field(None, description="bot token (xoxb-...)")
    slack_signing_secret: SecretStr | None = Field(
        None, description="verifies that HTTP requests come from Slack (HTTP mode)"
    )
    slack_app_token: SecretStr | None = Field(None, description="app-level token (xapp-...) for Socket Mode")
    slack_api_url: str = Field("https://slack.com/api/", description="Slack Web API base URL")
    slack_command: str = Field("/honk", description="the slash command configured in the Slack app")
    chat_host: str = Field("127.0.0.1", description="address `honk chat` listens on (HTTP mode)")
    chat_port: int = Field(3000, ge=1, le=65535, description="port `honk chat` listens on (HTTP mode)")
    # Observability (honk/telemetry.py). Traces go over OTLP when the standard
    # OTEL_EXPORTER_OTLP_ENDPOINT is set; metrics are served for Prometheus on this port.
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="Prometheus endpoint of this process (/metrics); unset or 0: off"
    )
    metrics_host: str = Field("0.0.0.0", description="address the Prometheus endpoint listens on")
    # Payload encryption (honk/codec.py) and the codec server for the Temporal UI.
    encryption_keys: SecretStr | None = Field(
        None, description="'key-id:base64-key,...' (AES-GCM); the first encrypts, all decrypt"
    )
    codec_host: str = Field("127.0.0.1", description="address `honk codec-server` listens on")
    codec_port: int = Field(8235, ge=1, le=65535, description="port of `honk codec-server`")
    codec_url: str | None = Field(
        None, description="codec server URL as the UI's browser reaches it; default http://codec_host:codec_port"
    )
    codec_cors_origins: str = Field(
        "", description="comma-separated UI origins allowed to call the codec server; default: the dev UI"
    )
    codec_auth_token: SecretStr | None = Field(
        None, description="when set, the codec server requires 'Authorization: Bearer <token>'"
    )

    @field_validator(
        "data_dir",
        "registry",
        "agent_script",
        "temporal_tls_ca",
        "temporal_tls_cert",
        "temporal_tls_key",
        "temporal_api_key_file",
        mode="after",
    )
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return value.expanduser().absolute() if value is not None else None

    @field_validator("git_password")
    @classmethod
    def _password_needs_username(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None and value.get_secret_value() and not info.data.get("git_username"):
            raise ValueError("set HONK_GIT_USERNAME too (e.g. x-access-token for a GitHub token)")
        return value

    @property
    def offline_model(self) -> bool:
        """No API key and no endpoint: the embedded stack serves the scripted model."""
        return self.anthropic_api_key is None and self.anthropic_base_url is None

    @field_validator("s3_bucket")
    @classmethod
    def _bucket_for_s3(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("artifact_store") == "s3" and not value:
            raise ValueError("required when HONK_ARTIFACT_STORE=s3")
        return value

    @field_validator("s3_secret_access_key")
    @classmethod
    def _secret_needs_key_id(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None and not info.data.get("s3_access_key_id"):
            raise ValueError("set HONK_S3_ACCESS_KEY_ID too")
        return value

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value() and not value.get_secret_value().startswith("xox"):
            raise ValueError("expected a Slack bot token starting with xoxb- (OAuth & Permissions page)")
        return value

    @field_validator("slack_app_token")
    @classmethod
    def _app_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value() and not value.get_secret_value().startswith("xapp-"):
            raise ValueError("expected an app-level token starting with xapp- (Basic Information page)")
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http(s) URL, got {value!r}")
        return value if value.endswith("/") else value + "/"  # slack_sdk joins method names to it

    @field_validator("slack_command")
    @classmethod
    def _command(cls, value: str) -> str:
        if not value.startswith("/") or " " in value:
            raise ValueError(f"expected a slash command like /honk, got {value!r}")
        return value

    @field_validator("encryption_keys")
    @classmethod
    def _encryption_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        from honk.codec import parse_keys

        parse_keys(value.get_secret_value())  # raises with a message that shows no key material
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http(s) URL a phone can open, got {value!r}")
        return value.rstrip("/") if value else value

    @field_validator("codec_url")
    @classmethod
    def _codec_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http(s) URL, got {value!r}")
        return value.rstrip("/") if value else value

    @field_validator("temporal_address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"expected host:port, got {value!r}")
        return value

    @property
    def encryption(self) -> bool:
        """Payloads are encrypted (HONK_ENCRYPTION_KEYS is set)."""
        return self.encryption_keys is not None

    @property
    def codec_endpoint(self) -> str:
        """Where the Temporal UI (in an operator's browser) reaches the codec server."""
        host = "127.0.0.1" if self.codec_host in ("0.0.0.0", "::") else self.codec_host
        return self.codec_url or f"http://{host}:{self.codec_port}"

    @property
    def codec_origins(self) -> list[str]:
        """UI origins the codec server answers (CORS)."""
        listed = [o.strip().rstrip("/") for o in self.codec_cors_origins.split(",") if o.strip()]
        return listed or [f"http://localhost:{self.ui_port}", f"http://127.0.0.1:{self.ui_port}"]

    @property
    def workspaces_dir(self) -> Path:
        return self.data_dir / "workspaces"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def pool_dir(self) -> Path:
        return self.data_dir / "pool"

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "store"


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; overrides win. A malformed value fails with one
    line naming the variable and the form it expects (never echoing a secret)."""
    from pydantic_settings import SettingsError as SourceError

    from honk.config.settings_doc import expected_form

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except SourceError as exc:
        # A complex value (a list) that is not JSON fails before validation.
        found = re.search(r'field "(\w+)"', str(exc))
        name = found.group(1) if found else "?"
        raise SettingsError(f"HONK_{name.upper()}: expected {expected_form(name)}") from None
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            variable = field.upper() if field.upper().startswith(("HONK_", "ANTHROPIC_")) else f"HONK_{field.upper()}"
            if err["type"] == "value_error":
                problems.append(f"{variable}: {err['msg'].removeprefix('Value error, ')}")
                continue
            got = err.get("input")
            shown = "" if "secret" in field or "key" in field or "token" in field or got is None else f", got {got!r}"
            problems.append(f"{variable}: expected {expected_form(field.lower().removeprefix('honk_'))}{shown}")
        raise SettingsError("; ".join(problems)) from None


def _default_user() -> str:
    """Who runs the CLI when HONK_USER is not set: $USER, git's user.name, the account name."""
    if os.environ.get("USER"):
        return os.environ["USER"]
    try:
        name = subprocess.run(
            ["git", "config", "--get", "user.name"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        name = ""
    if name:
        return name
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return "cli"
