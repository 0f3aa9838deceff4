"""The scripted model: a local server that speaks the Anthropic Messages API (JSON and SSE)
and replays recorded tool calls instead of thinking.

The offline demo points the real `anthropic` client at it, so the agent loop, tools, budgets,
caching and usage accounting all run for real; only the model's choices are recorded. Every
reply says `"model": "scripted-model"` so nobody mistakes it for Claude.

A script is JSON: ``{"replies": [reply, ...]}``. The first reply whose conditions match the
request is used; ``turns[n]`` answers the n-th model call of the conversation:

    {"when": "greeting",            regular expression searched in the <request> section
     "round": 1, "attempt": 1,      optional, from the prompt's <round>/<attempt> markers
     "feedback": "subtitle",        optional, searched in the <feedback> section
     "summary": "...",
     "edits": [{"path": ..., "replace": ..., "with": ...} | {"path", "write"} | {"path", "delete": true}],
     "turns": [{"text": "...", "tools": [{"name": "read_file", "input": {...}}]}, ...],
     "repeat_last_turn": false,     for a model that never finishes
     "verdict": {"approve": false, "reason": "..."}}   the diff reviewer's answer

`edits` is shorthand for turns that apply them with the edit tools, run the checks and finish.
When the request offers Claude Code's tools (`Edit`, `Write`, ... plus Honk's MCP tools such as
`mcp__honk__run_checks`), the same shorthand is played with those: `Read` the files to be
edited (Claude Code edits only files it has read), `Edit`/`Write` with absolute `file_path`s in
the working directory the CLI reports, the MCP `delete_file`, the MCP `run_checks`, then the
summary as plain text (`end_turn`), which is how a Claude Code session ends.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import threading
import uuid
from pathlib import Path
from typing import Any

from honk.cli.scripted_failures import finish_saying_why

MODEL_NAME = "scripted-model"
DEFAULT_SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "scripted-model.json"
JUDGE_MARKER = "You review a code change"  # the judge's system prompt starts with this


def _section(text: str, tag: str) -> str:
    match = re.search(rf"<{tag}>\n?(.*?)\n?</{tag}>", text, re.DOTALL)
    return match.group(1) if match else ""


def _tokens(value: Any) -> int:
    """A rough, deterministic token count (about four characters a token)."""
    return max(1, len(json.dumps(value, sort_keys=True)) // 4)


def _flatten(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")


def claude_code_tools(body: dict[str, Any]) -> dict[str, str] | None:
    """Claude Code's tool names in this request (`Edit` is offered), keyed by what they do;
    None for any other client (the default backend offers edit_file, run_checks, ...)."""
    names = [t.get("name", "") for t in body.get("tools", []) if isinstance(t, dict)]
    if "Edit" not in names:
        return None
    found = {"read": "Read", "edit": "Edit", "write": "Write"}
    for name in names:
        for short in ("run_checks", "delete_file", "finish"):
            if name.startswith("mcp__") and name.endswith(f"__{short}"):
                found[short] = name
    return found


def _working_directory(messages: list[dict[str, Any]]) -> str | None:
    """The directory Claude Code says it works in (its environment block), if any."""
    for message in messages:
        match = re.search(r"Primary working directory: (\S+)", _flatten(message.get("content", "")))
        if match:
            return match.group(1)
    return None


class ScriptedModel:
    """Chooses the reply to a Messages API request from a script."""

    def __init__(self, script: dict[str, Any]) -> None:
        self.replies = script.get("replies", [])
        self._cached: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: Path) -> ScriptedModel:
        return cls(json.loads(path.read_text(encoding="utf-8")))

    def match(self, prompt: str) -> dict[str, Any] | None:
        request, feedback = _section(prompt, "request"), _section(prompt, "feedback")
        numbers = {k: _section(prompt, k) for k in ("round", "attempt")}
        for reply in self.replies:
            if not re.search(reply.get("when", ""), request, re.IGNORECASE):
                continue
            if any(k in reply and str(reply[k]) != numbers[k] for k in numbers):
                continue
            if "feedback" in reply and not re.search(reply["feedback"], feedback, re.IGNORECASE):
                continue
            return reply
        return None

    def respond(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body.get("messages", [])
        system = _flatten(body.get("system", ""))
        prompt = _flatten(messages[0]["content"]) if messages else ""
        reply = self.match(prompt)
        if JUDGE_MARKER in system:
            verdict = (reply or {}).get("verdict", {"approve": True, "reason": "The change does what was asked."})
            call = [{"type": "tool_use", "id": self._id("toolu"), "name": "verdict", "input": verdict}]
            return self._message(body, call, "tool_use")
        turn = sum(1 for m in messages if m.get("role") == "assistant")
        claude_code = claude_code_tools(body)
        turns = (
            self._claude_code_turns(reply, claude_code, _working_directory(messages))
            if claude_code is not None
            else self._turns(reply)
        )
        if turn >= len(turns) and reply and reply.get("repeat_last_turn"):
            turn = len(turns) - 1
        if turn >= len(turns):
            text = "[scripted model] I have no recorded reply for this." if reply is None else "[scripted model] Done."
            return self._message(body, [{"type": "text", "text": text}], "end_turn")
        step = turns[turn]
        if claude_code is None and reply and "edits" in reply and turn == len(turns) - 1:
            step = finish_saying_why(reply, messages) or step
        content: list[dict[str, Any]] = []
        if step.get("text"):
            content.append({"type": "text", "text": step["text"]})
        for call in step.get("tools", []):
            content.append(
                {"type": "tool_use", "id": self._id("toolu"), "name": call["name"], "input": call.get("input", {})}
            )
        return self._message(body, content, "tool_use" if step.get("tools") else "end_turn")

    @staticmethod
    def _turns(reply: dict[str, Any] | None) -> list[dict[str, Any]]:
        if reply is None:
            return []
        if "turns" in reply:
            return reply["turns"]
        calls = []
        for edit in reply.get("edits", []):
            if "replace" in edit:
                calls.append(
                    {
                        "name": "edit_file",
                        "input": {"path": edit["path"], "old_text": edit["replace"], "new_text": edit["with"]},
                    }
                )
            elif "write" in edit:
                calls.append({"name": "write_file", "input": {"path": edit["path"], "content": edit["write"]}})
            elif edit.get("delete"):
                calls.append({"name": "delete_file", "input": {"path": edit["path"]}})
        summary = reply.get("summary", "Done.")
        return [
            {"text": "[scripted model] Applying the recorded change.", "tools": calls},
            {"tools": [{"name": "run_checks", "input": {}}]},
            {"tools": [{"name": "finish", "input": {"summary": f"[scripted model] {summary}"}}]},
        ]

    @staticmethod
    def _claude_code_turns(
        reply: dict[str, Any] | None, names: dict[str, str], cwd: str | None
    ) -> list[dict[str, Any]]:
        """The `edits` shorthand with Claude Code's tools; explicit `turns` are played as given."""
        if reply is None:
            return []
        if "turns" in reply:
            return reply["turns"]

        def where(path: str) -> str:
            return f"{cwd.rstrip('/')}/{path}" if cwd and not path.startswith("/") else path

        reads, calls = [], []
        for edit in reply.get("edits", []):
            if "replace" in edit:
                read = {"name": names["read"], "input": {"file_path": where(edit["path"])}}
                if read not in reads:
                    reads.append(read)
                calls.append(
                    {
                        "name": names["edit"],
                        "input": {
                            "file_path": where(edit["path"]),
                            "old_string": edit["replace"],
                            "new_string": edit["with"],
                        },
                    }
                )
            elif "write" in edit:
                calls.append(
                    {"name": names["write"], "input": {"file_path": where(edit["path"]), "content": edit["write"]}}
                )
            elif edit.get("delete") and "delete_file" in names:
                calls.append({"name": names["delete_file"], "input": {"path": edit["path"]}})
        summary = reply.get("summary", "Done.")
        steps = [{"text": "[scripted model] Reading the files to change.", "tools": reads}] if reads else []
        if calls:
            steps.append({"text": "[scripted model] Applying the recorded change.", "tools": calls})
        if "run_checks" in names:
            steps.append({"tools": [{"name": names["run_checks"], "input": {}}]})
        steps.append({"text": f"[scripted model] {summary}"})
        return steps

    def _message(self, body: dict[str, Any], content: list[dict[str, Any]], stop: str) -> dict[str, Any]:
        usage = self._usage(body)
        usage["output_tokens"] = _tokens(content)
        return {
            "id": self._id("msg"),
            "type": "message",
            "role": "assistant",
            "model": MODEL_NAME,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }

    def _usage(self, body: dict[str, Any]) -> dict[str, int]:
        """Input tokens, with the cache-marked prefix (tools + system) written once, then read."""
        prefix = {"tools": body.get("tools", []), "system": body.get("system", "")}
        total = _tokens({**prefix, "messages": body.get("messages", [])})
        marked = "cache_control" in json.dumps(prefix)
        if not marked:
            return {"input_tokens": total, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        cached = _tokens(prefix)
        key = hashlib.sha256(json.dumps(prefix, sort_keys=True).encode()).hexdigest()
        with self._lock:
            hit = key in self._cached
            self._cached.add(key)
        return {
            "input_tokens": max(1, total - cached),
            "cache_creation_input_tokens": 0 if hit else cached,
            "cache_read_input_tokens": cached if hit else 0,
        }

    @staticmethod
    def _id(prefix: str) -> str:
        return f"{prefix}_{uuid.uuid4().hex[:20]}"


def sse_events(message: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The Messages API streaming events for a complete message."""
    start = {**message, "content": [], "stop_reason": None, "usage": {**message["usage"], "output_tokens": 1}}
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            events.append(
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
                )
            )
            events.append(
                (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "text_delta", "text": block["text"]},
                    },
                )
            )
        else:
            events.append(
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": {**block, "input": {}}},
                )
            )
            events.append(
                (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])},
                    },
                )
            )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": message["usage"]["output_tokens"]},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


class MessagesHandler(http.server.BaseHTTPRequestHandler):
    """`POST /v1/messages` (JSON or SSE), `HEAD|GET /api/hello`; subclasses add faults."""

    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes: without this, Nagle holds the body until
    # the client's delayed ACK (40 ms per model call on a keep-alive connection).
    disable_nagle_algorithm = True
    server: ScriptedModelServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_HEAD(self) -> None:  # noqa: N802
        self._empty(200 if self.path.startswith("/api/hello") else 404)

    def do_GET(self) -> None:  # noqa: N802
        self.do_HEAD()

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        if self.path.split("?")[0] == "/v1/messages/count_tokens":
            try:
                counted = _tokens(json.loads(raw or b"{}"))
            except ValueError:
                counted = 1
            return self.send_json(200, {"input_tokens": counted})
        if self.path.split("?")[0] != "/v1/messages":
            return self.send_json(404, {"type": "error", "error": {"type": "not_found_error", "message": self.path}})
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return self.send_json(
                400, {"type": "error", "error": {"type": "invalid_request_error", "message": "body is not JSON"}}
            )
        if self.before_reply(body):
            return None
        message = self.server.model.respond(body)
        if body.get("stream"):
            self.send_sse(message)
        else:
            self.send_json(200, message)
        return None

    def before_reply(self, body: dict[str, Any]) -> bool:
        """Hook for tests: answer the request here (an error, a delay) and return True."""
        return False

    def _empty(self, status: int) -> None:
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", f"req_{uuid.uuid4().hex[:16]}")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def send_sse(self, message: dict[str, Any]) -> None:
        chunks = b"".join(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in sse_events(message))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("content-length", str(len(chunks)))
        self.end_headers()
        self.wfile.write(chunks)


class ScriptedModelServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        model: ScriptedModel,
        host: str = "127.0.0.1",
        port: int = 0,
        handler: type[MessagesHandler] = MessagesHandler,
    ) -> None:
        super().__init__((host, port), handler)
        self.model = model
        self.url = f"http://{host}:{self.server_address[1]}"
        self._thread = threading.Thread(target=self.serve_forever, name="scripted-model", daemon=True)

    def start(self) -> ScriptedModelServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
