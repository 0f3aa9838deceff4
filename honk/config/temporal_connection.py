"""How to reach any Temporal: the dev server (plain), a self-hosted cluster behind TLS or
mutual TLS, or Temporal Cloud (API key). Files are read once, at start, so a missing
certificate or key fails with one line naming the setting instead of a TLS error later."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from temporalio.service import TLSConfig

from honk.config.settings import Settings, SettingsError


def _read(setting: str, path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SettingsError(f"HONK_{setting.upper()}: cannot read {path}: {exc.strerror}") from None
    if not data.strip():
        raise SettingsError(f"HONK_{setting.upper()}: {path} is empty")
    return data


def connection_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `Client.connect`: namespace, tls and api_key."""
    options: dict[str, Any] = {"namespace": settings.temporal_namespace}
    files = {
        name: _read(name, path)
        for name in ("temporal_tls_ca", "temporal_tls_cert", "temporal_tls_key")
        if (path := getattr(settings, name)) is not None
    }
    if ("temporal_tls_cert" in files) != ("temporal_tls_key" in files):
        missing = "HONK_TEMPORAL_TLS_KEY" if "temporal_tls_cert" in files else "HONK_TEMPORAL_TLS_CERT"
        raise SettingsError(f"{missing}: mutual TLS needs both the client certificate and its key")
    if files or settings.temporal_tls_server_name:
        options["tls"] = TLSConfig(
            server_root_ca_cert=files.get("temporal_tls_ca"),
            client_cert=files.get("temporal_tls_cert"),
            client_private_key=files.get("temporal_tls_key"),
            domain=settings.temporal_tls_server_name,
        )
    elif settings.temporal_tls:
        options["tls"] = True
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    if settings.temporal_api_key_file is not None:
        api_key = _read("temporal_api_key_file", settings.temporal_api_key_file).decode().strip()
    if api_key:
        options["api_key"] = api_key
        options.setdefault("tls", True)  # the key is a bearer secret: never send it in the clear
    return options
