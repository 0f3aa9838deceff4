"""A local fake of the Slack Web API (and Socket Mode), for tests and benchmarks.

A real HTTP server on 127.0.0.1 (aiohttp, its own thread and event loop) that the real
`slack_sdk` / `slack_bolt` clients talk to through `base_url`. It reads arguments from the
query string, form bodies (urlencoded and multipart) and JSON bodies alike, checks the bearer
token, records every call, keeps the messages it was asked to post (with their metadata, so
`conversations.replies` can return them), and can be told to answer 429 (with Retry-After)
or 500 — the latter optionally *after* doing the work, like a response lost on the way back.

Methods: auth.test, chat.postMessage, chat.update, chat.postEphemeral, views.open,
reactions.add, conversations.replies, files.getUploadURLExternal, the upload URL itself,
files.completeUploadExternal, apps.connections.open (+ a WebSocket that speaks Socket Mode),
and `response_url` targets.

Also here: `signed_headers` and the payload builders tests use to play Slack's side.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from slack_sdk.signature import SignatureVerifier

TEAM = "T0HONK"
BOT_USER = "U0HONKBOT"
BOT_ID = "B0HONKBOT"
APP_ID = "A0HONK"
BOT_TOKEN = "xoxb-test-bot-token-0123456789"
APP_TOKEN = "xapp-test-app-token-0123456789"
SIGNING_SECRET = "test-signing-secret-0123456789abcdef"

# Arguments Slack accepts as JSON text inside a form or query string.
_JSON_ARGS = {"blocks", "attachments", "metadata", "files", "view"}
_APP_TOKEN_METHODS = {"apps.connections.open"}


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    status: int
    content_type: str
    at: float = field(default_factory=time.monotonic)
    response: dict[str, Any] | None = None


@dataclass
class Fault:
    method: str
    status: int
    times: int = 1
    retry_after: int | None = None
    apply: bool = False  # do the work, then answer with `status` anyway


class SlackFake:
    def __init__(self, *, bot_token: str = BOT_TOKEN, app_token: str = APP_TOKEN) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.calls: list[Call] = []
        self.messages: list[dict[str, Any]] = []  # everything posted or uploaded, in order
        self.ephemerals: list[dict[str, Any]] = []
        self.views: list[dict[str, Any]] = []
        self.uploads: dict[str, dict[str, Any]] = {}  # file id -> {name, length, data, title}
        self.responses: list[dict[str, Any]] = []  # what was POSTed to response_url targets
        self.socket_acks: list[dict[str, Any]] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._ts = itertools.count(1)
        self._files = itertools.count(1)
        self._ts_base = int(time.time())
        self._sockets: list[web.WebSocketResponse] = []
        self._socket_connected = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="slack-fake", daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> SlackFake:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> SlackFake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"  # trailing slash: slack_sdk appends method names

    def response_url(self) -> str:
        return f"{self.base_url}/response/{uuid.uuid4().hex[:12]}"

    async def _serve(self) -> None:
        app = web.Application(client_max_size=20 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_post("/response/{key}", self._response_url)
        app.router.add_get("/socket", self._socket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def _shutdown(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        assert self._runner is not None
        await self._runner.cleanup()

    # ------------------------------------------------------------------ test controls

    def fail(
        self, method: str, status: int = 500, *, times: int = 1, retry_after: int | None = None, apply: bool = False
    ) -> None:
        """The next `times` calls of `method` answer `status` (429 carries Retry-After)."""
        with self._lock:
            self._faults.append(Fault(method, status, times, retry_after, apply))

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def thread(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """Messages in a thread (the root if the fake has it, then replies), oldest first."""
        with self._lock:
            found = [
                m
                for m in self.messages
                if m["channel"] == channel and (m["ts"] == thread_ts or m.get("thread_ts") == thread_ts)
            ]
        return sorted(found, key=lambda m: float(m["ts"]))

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        with self._lock:
            return next((m for m in self.messages if m["channel"] == channel and m["ts"] == ts), None)

    def add_user_message(self, channel: str, user: str, text: str, thread_ts: str | None = None) -> str:
        """A message a person wrote (Slack would also send its event); returns its ts."""
        with self._lock:
            ts = self._next_ts()
            self.messages.append(
                {
                    "type": "message",
                    "channel": channel,
                    "ts": ts,
                    "user": user,
                    "text": text,
                    **({"thread_ts": thread_ts} if thread_ts else {}),
                }
            )
        return ts

    # ------------------------------------------------------------------ Socket Mode

    def wait_socket(self, timeout: float = 10) -> bool:
        return self._socket_connected.wait(timeout)

    def send_envelope(self, kind: str, payload: dict[str, Any], *, retry_attempt: int = 0) -> str:
        """Push an envelope to the connected Socket Mode client; returns its envelope_id."""
        envelope_id = uuid.uuid4().hex
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind != "events_api",
            "retry_attempt": retry_attempt,
            "retry_reason": "timeout" if retry_attempt else "",
        }

        async def push() -> None:
            if not self._sockets:
                raise RuntimeError("no Socket Mode client is connected")
            await self._sockets[-1].send_str(json.dumps(envelope))

        asyncio.run_coroutine_threadsafe(push(), self._loop).result(10)
        return envelope_id

    def acked(self, envelope_id: str) -> bool:
        with self._lock:
            return any(a.get("envelope_id") == envelope_id for a in self.socket_acks)

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_str(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": 1,
                    "connection_info": {"app_id": APP_ID},
                    "debug_info": {"host": "fake"},
                }
            )
        )
        self._socket_connected.set()
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    with self._lock:
                        self.socket_acks.append(json.loads(msg.data))
        finally:
            self._sockets.remove(ws)
        return ws

    # ------------------------------------------------------------------ HTTP

    async def _arguments(self, request: web.Request) -> dict[str, Any]:
        args: dict[str, Any] = dict(request.query)
        ctype = request.content_type
        if ctype == "application/json":
            body = await request.read()
            if body:
                args.update(json.loads(body))
        elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            for key, value in form.items():
                args[key] = value if isinstance(value, str) else value.file.read()  # type: ignore[union-attr]
        for key in _JSON_ARGS & set(args):
            if isinstance(args[key], str):
                try:
                    args[key] = json.loads(args[key])
                except ValueError:
                    pass
        return args

    def _take_fault(self, method: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.method == method and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await self._arguments(request)
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else args.get("token")
        fault = self._take_fault(method)
        if fault is not None and not fault.apply:
            return self._record(
                method, args, request, fault.status, {"ok": False, "error": "fault"}, retry_after=fault.retry_after
            )
        expected = self.app_token if method in _APP_TOKEN_METHODS else self.bot_token
        if token != expected:
            return self._record(method, args, request, 200, {"ok": False, "error": "invalid_auth"})
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return self._record(method, args, request, 200, {"ok": False, "error": "unknown_method"})
        with self._lock:
            body = handler(args)
        if fault is not None:  # the work is done; the answer is "lost"
            return self._record(
                method, args, request, fault.status, {"ok": False, "error": "fault"}, retry_after=fault.retry_after
            )
        return self._record(method, args, request, 200, body)

    def _record(
        self,
        method: str,
        args: dict[str, Any],
        request: web.Request,
        status: int,
        body: dict[str, Any],
        retry_after: int | None = None,
    ) -> web.Response:
        with self._lock:
            self.calls.append(Call(method, args, status, request.content_type, response=body))
        headers = {"Retry-After": str(retry_after)} if status == 429 else {}
        if status >= 500:
            return web.Response(status=status, text="internal error", headers=headers)
        return web.json_response(body, status=status, headers=headers)

    async def _upload(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        data = await request.read()
        with self._lock:
            entry = self.uploads.get(file_id)
            if entry is None:
                return web.Response(status=404, text="unknown upload")
            entry["data"] = data
            self.calls.append(Call("upload", {"file_id": file_id, "bytes": len(data)}, 200, request.content_type))
        return web.Response(text=f"OK - {len(data)}")

    async def _response_url(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self._lock:
            self.responses.append({"key": request.match_info["key"], **body})
            self.calls.append(Call("response_url", body, 200, request.content_type))
        return web.Response(text="ok")

    # ------------------------------------------------------------------ methods (under the lock)

    def _next_ts(self) -> str:
        return f"{self._ts_base}.{next(self._ts):06d}"

    def _m_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://honk-test.slack.com/",
            "team": "Honk Test",
            "user": "honk",
            "team_id": TEAM,
            "user_id": BOT_USER,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _m_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        if not (args.get("text") or args.get("blocks")):
            return {"ok": False, "error": "no_text"}
        message = {
            "type": "message",
            "channel": args["channel"],
            "ts": self._next_ts(),
            "user": BOT_USER,
            "bot_id": BOT_ID,
            "text": args.get("text", ""),
            "blocks": args.get("blocks") or [],
        }
        if args.get("thread_ts"):
            message["thread_ts"] = args["thread_ts"]
        if args.get("metadata"):
            message["metadata"] = args["metadata"]
        self.messages.append(message)
        return {"ok": True, "channel": args["channel"], "ts": message["ts"], "message": message}

    def _m_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        message = next(
            (m for m in self.messages if m["channel"] == args.get("channel") and m["ts"] == args.get("ts")), None
        )
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        message.setdefault("edits", 0)
        message["edits"] += 1
        for key in ("text", "blocks", "metadata"):
            if key in args:
                message[key] = args[key]
        return {"ok": True, "channel": args["channel"], "ts": args["ts"], "text": message["text"]}

    def _m_chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("channel") or not args.get("user"):
            return {"ok": False, "error": "invalid_arguments"}
        self.ephemerals.append({k: args.get(k) for k in ("channel", "user", "text", "blocks", "thread_ts")})
        return {"ok": True, "message_ts": self._next_ts()}

    def _m_views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("trigger_id") or not isinstance(args.get("view"), dict):
            return {"ok": False, "error": "invalid_arguments"}
        view = {"id": f"V{len(self.views) + 1:06d}", **args["view"]}
        self.views.append(view)
        return {"ok": True, "view": view}

    def _m_reactions_add(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True}

    def _m_conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        root = args.get("ts")
        found = sorted(
            (
                m
                for m in self.messages
                if m["channel"] == args.get("channel") and (m["ts"] == root or m.get("thread_ts") == root)
            ),
            key=lambda m: float(m["ts"]),
        )
        with_metadata = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        start = int(args.get("cursor") or 0)
        limit = int(args.get("limit") or 100)
        page = found[start : start + limit]
        more = start + limit < len(found)
        out = [{k: v for k, v in m.items() if k != "metadata" or with_metadata} for m in page]
        return {
            "ok": True,
            "messages": out,
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def _m_files_getUploadURLExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("filename") or not str(args.get("length", "")).isdigit():
            return {"ok": False, "error": "invalid_arguments"}
        file_id = f"F{next(self._files):08d}"
        self.uploads[file_id] = {"name": args["filename"], "length": int(args["length"]), "data": None}
        return {"ok": True, "upload_url": f"{self.base_url}/upload/{file_id}", "file_id": file_id}

    def _m_files_completeUploadExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        files = args.get("files")
        if not isinstance(files, list) or not files:
            return {"ok": False, "error": "invalid_arguments"}
        shared = []
        for item in files:
            entry = self.uploads.get(item.get("id"))
            if entry is None or entry["data"] is None or len(entry["data"]) != entry["length"]:
                return {"ok": False, "error": "file_not_found"}
            entry["title"] = item.get("title") or entry["name"]
            shared.append(
                {
                    "id": item["id"],
                    "name": entry["name"],
                    "title": entry["title"],
                    "mimetype": "image/png" if entry["name"].endswith(".png") else "application/octet-stream",
                    "size": entry["length"],
                }
            )
        if args.get("channel_id"):
            message = {
                "type": "message",
                "channel": args["channel_id"],
                "ts": self._next_ts(),
                "user": BOT_USER,
                "bot_id": BOT_ID,
                "text": args.get("initial_comment", ""),
                "files": shared,
                "upload": True,
            }
            if args.get("thread_ts"):
                message["thread_ts"] = args["thread_ts"]
            self.messages.append(message)
        return {"ok": True, "files": shared}

    def _m_apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/socket?ticket={uuid.uuid4().hex}"}


# --------------------------------------------------------------------------- Slack's side


def signed_headers(
    body: bytes,
    *,
    secret: str = SIGNING_SECRET,
    timestamp: int | None = None,
    content_type: str = "application/json",
    retry: int | None = None,
) -> dict[str, str]:
    """Headers Slack would send with `body`: timestamp and v0 HMAC signature."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    headers = {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": SignatureVerifier(secret).generate_signature(timestamp=ts, body=body),
    }
    if retry:
        headers["X-Slack-Retry-Num"] = str(retry)
        headers["X-Slack-Retry-Reason"] = "http_timeout"
    return headers


def event_callback(event: dict[str, Any], *, team: str = TEAM, event_id: str | None = None) -> dict[str, Any]:
    return {
        "token": "unused-verification-token",
        "team_id": team,
        "api_app_id": APP_ID,
        "event": {"event_ts": event.get("ts", ""), **event},
        "type": "event_callback",
        "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
        "event_time": int(time.time()),
        "authorizations": [{"team_id": team, "user_id": BOT_USER, "is_bot": True}],
    }


def mention(
    text: str,
    *,
    user: str,
    channel: str,
    ts: str,
    thread_ts: str | None = None,
    team: str = TEAM,
    event_id: str | None = None,
) -> dict[str, Any]:
    event = {
        "type": "app_mention",
        "user": user,
        "text": f"<@{BOT_USER}> {text}",
        "ts": ts,
        "channel": channel,
        "team": team,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event_callback(event, team=team, event_id=event_id)


def message_event(
    text: str,
    *,
    user: str,
    channel: str,
    ts: str,
    thread_ts: str | None = None,
    channel_type: str = "channel",
    team: str = TEAM,
) -> dict[str, Any]:
    event = {
        "type": "message",
        "user": user,
        "text": text,
        "ts": ts,
        "channel": channel,
        "channel_type": channel_type,
        "team": team,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event_callback(event, team=team)


def block_action(
    action_id: str, value: str, *, user: str, channel: str, message: dict[str, Any], response_url: str, team: str = TEAM
) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "team": {"id": team, "domain": "honk-test"},
        "user": {"id": user, "username": user.lower(), "team_id": team},
        "api_app_id": APP_ID,
        "token": "unused",
        "trigger_id": f"trig.{uuid.uuid4().hex[:8]}",
        "container": {
            "type": "message",
            "message_ts": message["ts"],
            "channel_id": channel,
            "is_ephemeral": False,
            "thread_ts": message.get("thread_ts"),
        },
        "channel": {"id": channel, "name": "mobile"},
        "message": message,
        "response_url": response_url,
        "actions": [
            {
                "action_id": action_id,
                "block_id": "honk_decision",
                "value": value,
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def view_submission(
    callback_id: str, private_metadata: str, values: dict[str, Any], *, user: str, team: str = TEAM
) -> dict[str, Any]:
    return {
        "type": "view_submission",
        "team": {"id": team, "domain": "honk-test"},
        "user": {"id": user, "username": user.lower(), "team_id": team},
        "api_app_id": APP_ID,
        "token": "unused",
        "trigger_id": f"trig.{uuid.uuid4().hex[:8]}",
        "view": {
            "id": "V000001",
            "type": "modal",
            "callback_id": callback_id,
            "private_metadata": private_metadata,
            "state": {"values": values},
        },
    }


def slash_command(
    text: str, *, user: str, channel: str, response_url: str, command: str = "/honk", team: str = TEAM
) -> dict[str, str]:
    return {
        "token": "unused",
        "team_id": team,
        "team_domain": "honk-test",
        "channel_id": channel,
        "channel_name": "mobile",
        "user_id": user,
        "user_name": user.lower(),
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "response_url": response_url,
        "trigger_id": f"trig.{uuid.uuid4().hex[:8]}",
    }


def form_body(fields: dict[str, str]) -> bytes:
    return urllib.parse.urlencode(fields).encode()


def interactive_body(payload: dict[str, Any]) -> bytes:
    return form_body({"payload": json.dumps(payload)})
