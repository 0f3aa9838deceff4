"""`honk codec-server`: Temporal's remote codec protocol over HTTP, so the Temporal UI and
the `temporal` CLI show decrypted payloads to operators without holding the keys.

    POST /decode   {"payloads": [{"metadata": {"encoding": "<base64>", ...}, "data": "<base64>"}]}
    POST /encode   the same shape, the other way (the UI encodes signal input this way)
    GET  /healthz

The browser running the UI calls these endpoints directly, so the server answers CORS
preflights for the configured UI origins only (HONK_CODEC_CORS_ORIGINS, default the dev
UI). With HONK_CODEC_AUTH_TOKEN set, every call needs `Authorization: Bearer <token>`
(the CLI: `temporal workflow show --codec-endpoint URL --codec-auth "Bearer <token>"`).
Bodies are limited in size; payloads that cannot be decrypted fail the call with a clear
message (never with key material).
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
from collections.abc import Sequence

from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from honk.codec import DecryptionError, EncryptionCodec

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024 * 1024
ALLOWED_HEADERS = "Content-Type, X-Namespace, Authorization"


def _cors_headers(request: web.Request, origins: Sequence[str]) -> dict[str, str]:
    origin = request.headers.get("Origin")
    if not origin or ("*" not in origins and origin.rstrip("/") not in origins):
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": ALLOWED_HEADERS,
        "Access-Control-Allow-Credentials": "true",
        "Access-Control-Max-Age": "600",
        "Vary": "Origin",
    }


def make_app(
    codec: EncryptionCodec, *, cors_origins: Sequence[str] = (), auth_token: str | None = None
) -> web.Application:
    origins = [o.rstrip("/") for o in cors_origins]

    @web.middleware
    async def cors_and_auth(request: web.Request, handler):
        cors = _cors_headers(request, origins)
        if request.method == "OPTIONS":
            # A preflight from an origin we do not serve gets no CORS headers: the browser refuses.
            return web.Response(status=204 if cors else 403, headers=cors)
        if auth_token and request.path != "/healthz":
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {auth_token}".encode()):
                return web.json_response(
                    {"error": "missing or wrong Authorization bearer token"}, status=401, headers=cors
                )
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers.update(cors)
            raise
        response.headers.update(cors)
        return response

    async def transform(request: web.Request, decode: bool) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY:
            return web.json_response({"error": f"body larger than {MAX_BODY} bytes"}, status=413)
        try:
            payloads = json_format.Parse(await request.text(), Payloads(), ignore_unknown_fields=True)
        except (json_format.ParseError, UnicodeDecodeError, ValueError) as exc:
            return web.json_response({"error": f'expected {{"payloads": [...]}}: {exc}'[:300]}, status=400)
        try:
            done = await (codec.decode(payloads.payloads) if decode else codec.encode(payloads.payloads))
        except DecryptionError as exc:
            log.warning(
                "codec server could not decode",
                extra={"error": str(exc), "namespace": request.headers.get("X-Namespace")},
            )
            return web.json_response({"error": str(exc)}, status=400)
        # Empty `data` is still sent: the UI reads it from every payload.
        body = json.dumps(
            {"payloads": [{**json_format.MessageToDict(p), "data": base64.b64encode(p.data).decode()} for p in done]}
        )
        return web.Response(text=body, content_type="application/json")

    async def decode(request: web.Request) -> web.Response:
        return await transform(request, decode=True)

    async def encode(request: web.Request) -> web.Response:
        return await transform(request, decode=False)

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text=json.dumps({"ok": True, "keys": len(codec.key_ids)}), content_type="application/json")

    app = web.Application(middlewares=[cors_and_auth], client_max_size=MAX_BODY)
    app.router.add_post("/decode", decode)
    app.router.add_post("/encode", encode)
    app.router.add_get("/healthz", healthz)
    # Preflights reach the middleware only for routed paths.
    app.router.add_route("OPTIONS", "/decode", healthz)
    app.router.add_route("OPTIONS", "/encode", healthz)
    return app


class CodecServer:
    """The codec server on the running event loop (for `honk dev` and tests)."""

    def __init__(
        self,
        codec: EncryptionCodec,
        host: str,
        port: int,
        *,
        cors_origins: Sequence[str] = (),
        auth_token: str | None = None,
    ) -> None:
        self.app = make_app(codec, cors_origins=cors_origins, auth_token=auth_token)
        self.host, self.port = host, port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> CodecServer:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:  # an ephemeral port: learn which
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info("codec server listening", extra={"url": self.url})
        return self

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
            self._runner = None


def from_settings(settings, *, port: int | None = None, host: str | None = None) -> CodecServer:
    from honk.config.settings import SettingsError

    if not settings.encryption_keys:
        raise SettingsError(
            "HONK_ENCRYPTION_KEYS: not set; the codec server needs the keys (create one with `honk encryption-key`)"
        )
    return CodecServer(
        EncryptionCodec.from_value(settings.encryption_keys.get_secret_value()),
        host or settings.codec_host,
        settings.codec_port if port is None else port,
        cors_origins=settings.codec_origins,
        auth_token=settings.codec_auth_token.get_secret_value() if settings.codec_auth_token else None,
    )
