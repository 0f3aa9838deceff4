"""`honk serve`: the artifact web service alone, for teams whose workers publish to the local
store (a shared directory) and whose phones open the links from chat. Also the one place that
decides the address a phone is given: the public URL, else the bound address, with a wildcard
bind replaced by this machine's LAN address."""

from __future__ import annotations

import asyncio
import ipaddress
import signal
import socket

import typer

from honk.config.settings import Settings, SettingsError, load_settings

WILDCARDS = ("0.0.0.0", "::", "")


def lan_address() -> str | None:
    """This machine's address on its default route, or None when it has only loopback.
    Connecting a UDP socket picks the route and sends no packet."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 9))
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if ipaddress.ip_address(address).is_loopback or address == "0.0.0.0" else address


def artifact_url(settings: Settings, port: int | None = None) -> str:
    """The base URL install pages, links and QR codes carry."""
    if settings.public_url:
        return settings.public_url
    host = settings.artifact_host
    if host in WILDCARDS:
        host = lan_address() or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.artifact_port if port is None else port}"


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def phone_hint(settings: Settings) -> str | None:
    """A line for a person whose builds only this machine can open."""
    lan = lan_address()
    if settings.public_url or not lan or not _loopback(settings.artifact_host):
        return None
    return f"phones on your network: HONK_ARTIFACT_HOST=0.0.0.0 serves builds at http://{lan}:{settings.artifact_port}"


def start_store(settings: Settings):
    """The artifact web service on HONK_ARTIFACT_HOST:HONK_ARTIFACT_PORT, and the settings
    whose public URL points at it."""
    from honk.publish import links as signed_links
    from honk.publish.server import StoreServer

    try:
        server = StoreServer(
            settings.store_dir,
            signed_links.signing_key(settings),
            host=settings.artifact_host,
            port=settings.artifact_port,
        )
    except OSError as exc:
        raise SettingsError(
            f"HONK_ARTIFACT_PORT: cannot listen on {settings.artifact_host}:{settings.artifact_port}: {exc.strerror}"
        ) from None
    server.url = artifact_url(settings, server.httpd.server_address[1])
    return server.start(), settings.model_copy(update={"public_url": server.url})


async def serve(
    host: str | None = typer.Option(None, help="address to listen on (default: HONK_ARTIFACT_HOST)"),
    port: int | None = typer.Option(None, min=0, max=65535, help="port (default: HONK_ARTIFACT_PORT)"),
) -> int:
    """Serve the local artifact store (install pages and builds behind signed links) on
    HONK_ARTIFACT_HOST:HONK_ARTIFACT_PORT; links carry HONK_PUBLIC_URL when set."""
    from rich.console import Console

    from honk.logs import configure_logging

    overrides = {k: v for k, v in (("artifact_host", host), ("artifact_port", port)) if v is not None}
    settings = load_settings(**overrides)
    configure_logging(settings.log_level)
    server, _ = start_store(settings)
    console = Console(stderr=True)
    console.print(f"Artifact web service on {server.url} ({settings.store_dir})", highlight=False)
    if hint := phone_hint(settings):
        console.print(hint, highlight=False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        server.stop()
    return 0
