"""Shared fixtures: the Temporal servers come from the installed PyPI packages (never
downloaded), and every test gets its own task queue and data directory."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import sys
import threading
import uuid
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from honk.config.settings import Settings
from honk.workers.temporal import HonkPlugin
from honk.workflows.contract import SEARCH_ATTRIBUTES

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]

# The suite's checks run this interpreter (sys.executable), which the sandbox's system view
# does not show: configure it as a read-only tool directory, as an operator would a prebuilt
# virtualenv (the worker's own interpreter is never shown by accident).
os.environ.setdefault("HONK_SANDBOX_TOOLS", json.dumps(sorted({sys.prefix, sys.base_prefix})))


def honk_plugin(**settings: object) -> HonkPlugin:
    """Honk's one Temporal configuration (converter, codec, interceptors, sandbox), as every
    client and worker in the tests uses it; unencrypted unless keys are given."""
    return HonkPlugin(Settings(**{"encryption_keys": None, **settings}))  # type: ignore[arg-type]


async def start_time_skipping() -> WorkflowEnvironment:
    """The time-skipping test server, with Honk's search attributes registered."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(BIN / "temporal-test-server"),
        plugins=[honk_plugin()],
    )
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={k.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for k in SEARCH_ATTRIBUTES},
        )
    )
    return env


@pytest.fixture(scope="session")
async def time_env():
    """The time-skipping test server shared by the workflow tests."""
    env = await start_time_skipping()
    yield env
    await env.shutdown()


@pytest.fixture
async def own_time_env():
    """A time-skipping test server of the test's own (its clock moves for it alone)."""
    env = await start_time_skipping()
    yield env
    await env.shutdown()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def listener():
    """A TCP server on loopback that counts the connections it gets."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list[object] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(conn)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1], accepted
    server.close()


@pytest.fixture(scope="session")
def ui_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
async def dev_env(ui_port):
    """A real Temporal dev server (in memory) with the search attributes and the UI."""
    env = await WorkflowEnvironment.start_local(
        ui_port=ui_port,
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
        plugins=[honk_plugin()],
        ui=True,
        dev_server_log_level="error",
    )
    yield env
    await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4().hex[:8]}"


async def eventually(probe, *, timeout: float = 20.0, every: float = 0.1, what: str = "condition"):
    """Await `probe()` until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(every)


def readable_history(history_json: str) -> str:
    """The history with every payload's data decoded, as an operator would see it."""
    return "\n".join([history_json, *payload_texts(json.loads(history_json))])


def payload_texts(node: object) -> list[str]:
    """The decoded data of every payload in a JSON document (a history, the UI's API, the
    CLI's output), where payload data travels base64-encoded."""
    found: list[str] = []
    if isinstance(node, dict):
        if isinstance(node.get("data"), str) and isinstance(node.get("metadata"), dict):
            found.append(base64.b64decode(node["data"]).decode("utf-8", "replace"))
        for value in node.values():
            found += payload_texts(value)
    elif isinstance(node, list):
        for value in node:
            found += payload_texts(value)
    return found


HISTORIES = ROOT / "tests" / "workflow" / "histories"


async def record_history(handle, name: str) -> Path:
    """Save a workflow's history as a replay fixture; the file name says which path it took."""
    history = await handle.fetch_history()
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in name.removeprefix("test_")).strip("-")
    # HONK_RECORD_HISTORIES=<tag> (e.g. the new patch id) records beside the existing ones.
    tag = os.environ.get("HONK_RECORD_HISTORIES", "1")
    path = HISTORIES / (f"{safe}.json" if tag == "1" else f"{safe}@{tag}.json")
    if path.exists():
        return path  # never re-record: running requests of that code may still exist
    HISTORIES.mkdir(exist_ok=True)
    path.write_text(history.to_json() + "\n", encoding="utf-8")
    return path
