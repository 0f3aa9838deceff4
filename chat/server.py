"""Running the chat service: HTTP mode (FastAPI + uvicorn; Slack posts to us) or Socket Mode
(we open a WebSocket to Slack; for installations without a public URL).

HTTP endpoints — point the Slack app's Event Subscriptions, Slash Commands and Interactivity
request URLs at them (one URL for all three works too):

    POST /slack/events          events (mentions, messages)
    POST /slack/commands        the slash command
    POST /slack/interactivity   buttons and the modal
    GET  /healthz               liveness: 200 with the bot's user id
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient
from temporalio.client import Client

from honk.chat.app import create_app, replay_pending
from honk.chat.service import ChatService
from honk.config.registry import Registry, load_registry
from honk.config.settings import Settings, SettingsError
from honk.redact import RedactingFilter, remember_secrets, secret_values
from honk.slack.client import web_client

log = logging.getLogger("honk.chat")

SLACK_PATHS = ("/slack/events", "/slack/commands", "/slack/interactivity")


def require_slack_settings(settings: Settings, *, socket_mode: bool) -> None:
    """Fail at start, naming every missing variable."""

    def unset(value: Any) -> bool:
        return value is None or not value.get_secret_value()

    missing = []
    if unset(settings.slack_bot_token):
        missing.append("HONK_SLACK_BOT_TOKEN (the bot token, xoxb-..., from OAuth & Permissions)")
    if socket_mode and unset(settings.slack_app_token):
        missing.append("HONK_SLACK_APP_TOKEN (an app-level token, xapp-..., with connections:write)")
    if not socket_mode and unset(settings.slack_signing_secret):
        missing.append("HONK_SLACK_SIGNING_SECRET (Basic Information → Signing Secret)")
    if missing:
        raise SettingsError("`honk chat` needs " + "; ".join(missing))


def hide_secrets(settings: Settings) -> None:
    """Whatever a library logs, the tokens and the signing secret come out masked (the
    process-wide redactor; `configure_logging` puts its filter on the handler)."""
    remember_secrets(secret_values(settings))
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


class Chat:
    """The service, its Bolt app and (for HTTP mode) its FastAPI app, wired together.
    Tests build one with their own Temporal client, registry and Slack base URL."""

    def __init__(
        self,
        settings: Settings,
        temporal: Client,
        *,
        registry: Registry | None = None,
        slack: AsyncWebClient | None = None,
    ) -> None:
        self.settings = settings
        self.service = ChatService(settings, temporal, slack or web_client(settings), registry)
        secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
        self.bolt: AsyncApp = create_app(self.service, signing_secret=secret)
        self.api = create_api(self.bolt, self.service)

    def http_server(self, host: str, port: int) -> uvicorn.Server:
        config = uvicorn.Config(
            self.api,
            host=host,
            port=port,
            lifespan="on",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=25,
        )
        return _Server(config)

    async def serve_http(self, host: str, port: int, *, sock: socket.socket | None = None) -> None:
        """Serve until SIGINT/SIGTERM; then finish in-flight requests and background work."""
        server = self.http_server(host, port)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, server.handle_exit, sig, None)
        log.info("chat listening", extra={"host": host, "port": port, "paths": list(SLACK_PATHS)})
        await server.serve(sockets=[sock] if sock else None)

    @contextlib.asynccontextmanager
    async def socket_mode(self) -> AsyncIterator[AsyncSocketModeHandler]:
        """Connected to Slack over Socket Mode while inside the block."""
        token = self.settings.slack_app_token
        if token is None or not token.get_secret_value():
            raise SettingsError("HONK_SLACK_APP_TOKEN is not set (an app-level token, xapp-...)")
        await self.service.connect_slack()
        handler = AsyncSocketModeHandler(self.bolt, app_token=token.get_secret_value(), web_client=self.service.slack)
        await handler.connect_async()
        log.info("chat connected over socket mode")
        await replay_pending(self.bolt, self.service)
        try:
            yield handler
        finally:
            await handler.close_async()
            await self.service.close()

    async def serve_socket(self, stop: asyncio.Event) -> None:
        async with self.socket_mode():
            await stop.wait()


class _Server(uvicorn.Server):
    """uvicorn, minus its own signal handling: it re-raises SIGTERM after shutting down (the
    process then dies by the signal); `serve_http` stops it cleanly instead, exit code 0."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def create_api(bolt: AsyncApp, service: ChatService) -> FastAPI:
    handler = AsyncSlackRequestHandler(bolt)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if service.bot_user is None:  # `run_chat` connects first; tests may not
            await service.connect_slack()
        await replay_pending(bolt, service)  # events acknowledged before a crash
        yield
        await service.close()

    api = FastAPI(title="Honk chat", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    async def from_slack(request: Request) -> Response:
        # Bolt verifies the signature, acknowledges, and leaves the work running behind.
        return await handler.handle(request)

    for path in SLACK_PATHS:
        api.add_api_route(path, from_slack, methods=["POST"], include_in_schema=False)

    @api.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "bot_user": service.bot_user, "inflight": len(service.inflight)}

    return api


async def run_chat(settings: Settings, *, socket_mode: bool, host: str | None = None, port: int | None = None) -> None:
    """`honk chat`: connect to Temporal, then serve until SIGINT/SIGTERM."""
    from honk.workers.temporal import connect

    require_slack_settings(settings, socket_mode=socket_mode)
    hide_secrets(settings)
    load_registry(settings.registry, settings.data_dir)  # a missing or invalid registry fails now, by name
    chat = Chat(settings, await connect(settings, service="honk-chat"))
    if not socket_mode:
        await chat.service.connect_slack()  # a wrong token fails here, at start, not on the first event
        await chat.serve_http(host or settings.chat_host, port or settings.chat_port)
        return
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await chat.serve_socket(stop)
