"""The one fake of the Anthropic Messages API for tests: the product's scripted model server
(real HTTP, JSON and SSE) plus what tests need — a record of every request, checked API keys
(x-api-key or Authorization: Bearer), and injectable faults (429/529/500 with retry-after,
slow replies)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from honk.cli.scripted_model import MessagesHandler, ScriptedModel, ScriptedModelServer

API_KEY = "sk-ant-test-4f9c2e7d1b"

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass
class Fault:
    status: int
    retry_after: float | None = None
    delay: float = 0.0


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    status: int


@dataclass
class FakeState:
    key: str = API_KEY
    faults: list[Fault] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    hellos: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(MessagesHandler):
    def do_HEAD(self) -> None:  # noqa: N802
        with self.server.state.lock:  # type: ignore[attr-defined]
            self.server.state.hellos += 1  # type: ignore[attr-defined]
        super().do_HEAD()

    def before_reply(self, body: dict[str, Any]) -> bool:
        state: FakeState = self.server.state  # type: ignore[attr-defined]
        headers = {k.lower(): v for k, v in self.headers.items()}
        presented = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
        with state.lock:
            fault = state.faults.pop(0) if state.faults else None
        status = 401 if presented != state.key else (fault.status if fault else 200)
        with state.lock:
            state.requests.append(Recorded(self.path, headers, body, status))
        if fault and fault.delay:
            time.sleep(fault.delay)
        if status == 200:
            return False
        extra = {"retry-after": str(fault.retry_after)} if fault and fault.retry_after is not None else {}
        message = "invalid x-api-key" if status == 401 else f"injected {status}"
        self.send_json(
            status,
            {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message}},
            extra,
        )
        return True


class FakeAnthropic:
    def __init__(self, script: dict[str, Any]) -> None:
        self.state = FakeState()
        self.server = ScriptedModelServer(ScriptedModel(script), handler=_Handler)
        self.server.state = self.state  # type: ignore[attr-defined]
        self.url = self.server.url

    def __enter__(self) -> FakeAnthropic:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    def start(self) -> FakeAnthropic:
        return self.__enter__()

    def stop(self) -> None:
        self.__exit__()

    def inject(self, *faults: Fault) -> None:
        with self.state.lock:
            self.state.faults.extend(faults)

    @property
    def requests(self) -> list[Recorded]:
        return list(self.state.requests)

    def message_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith("/v1/messages") and r.status == 200]

    def tool_results(self) -> list[dict[str, Any]]:
        """Every tool_result block of the longest conversation (the agent's, not the judge's)."""
        conversations = [r.body["messages"] for r in self.message_requests()]
        out = []
        for message in max(conversations, key=len, default=[]):
            if message["role"] == "user" and isinstance(message["content"], list):
                out += [b for b in message["content"] if b.get("type") == "tool_result"]
        return out

    def dump(self) -> str:
        return json.dumps([r.body for r in self.requests])
